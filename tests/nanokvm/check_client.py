"""Drives the simulator with the PyPI `nanokvm` client (the library Home
Assistant's NanoKVM integration uses), so that the simulator — and gatehouse,
which the tests run against the same simulator — speak the real device's
dialect: login with the obfuscated password, hardware detection, the LED
state, a power button press, and a refused wrong password.

Usage: python3 check_client.py URL USERNAME PASSWORD
"""

import asyncio
import sys

from nanokvm.client import NanoKVMClient
from nanokvm.models import GpioType


async def main(url, user, password):
    async with NanoKVMClient(url.rstrip("/") + "/api/") as c:
        await c.authenticate(user, password)
        gpio = await c.get_gpio()
        assert gpio.pwr is False, gpio
        await c.push_button(GpioType.POWER, 200)
        for _ in range(50):
            await asyncio.sleep(0.1)
            if (await c.get_gpio()).pwr:
                break
        else:
            raise SystemExit("the power LED did not come on after a press")
        await c.push_button(GpioType.POWER, 5200)
        assert (await c.get_gpio()).pwr is False, "a long press is a hard off"
    async with NanoKVMClient(url.rstrip("/") + "/api/") as c:
        try:
            await c.authenticate(user, "wrong")
        except Exception as e:  # NanoKVMAuthenticationFailure
            assert "password" in str(e).lower(), e
        else:
            raise SystemExit("a wrong password was accepted")
    print("ok")


asyncio.run(main(*sys.argv[1:4]))
