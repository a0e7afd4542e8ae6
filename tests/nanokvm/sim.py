"""A NanoKVM simulator for gatehouse's power tests.

It serves the routes of the Sipeed NanoKVM firmware (sipeed/NanoKVM,
server/router/{auth,vm}.go) that a power controller uses, in the firmware's
dialect: the `{"code","msg","data"}` envelope (code 0 = success, HTTP 200 even
for failures), login at POST /api/auth/login with the password obfuscated the
way the web UI does it (CryptoJS AES-256-CBC, passphrase "nanokvm-sipeed-2024",
"Salted__" + salt, base64, URL-encoded) or in plain text, the session token as
the `nano-kvm-token` cookie (set by the login and also returned in data.token),
401 "unauthorized" without it, GET /api/vm/hardware and /api/vm/info,
GET /api/vm/gpio ({pwr, hdd}: the power and HDD LEDs) and POST /api/vm/gpio
({type: power|reset, duration: ms}: the ATX button held for that long; the
answer comes after the press, as on the device).

Behind the buttons sits a machine: a short power press turns it on (after
SIM_ON_SECS) or asks its OS to shut down (after SIM_GRACEFUL_SECS; "never" for
an OS that ignores it); a press of 5 s or more turns it off at once; reset
restarts it.

Usage: python3 sim.py PORT USERNAME PASSWORD
"""

import base64
import hashlib
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from flask import Flask, jsonify, request

PASSPHRASE = b"nanokvm-sipeed-2024"
app = Flask(__name__)
PORT, USER, PASSWORD = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ON_SECS = float(os.environ.get("SIM_ON_SECS", "1"))
GRACEFUL = os.environ.get("SIM_GRACEFUL_SECS", "2")

lock = threading.Lock()
state = {"on": False, "pending": None}  # pending: (apply_time, on)
tokens = set()
presses = []


def ok(data=None):
    return jsonify({"code": 0, "msg": "success", "data": data})


def err(code, msg):
    return jsonify({"code": code, "msg": msg, "data": None})


def settle():
    p = state["pending"]
    if p and time.time() >= p[0]:
        state["on"] = p[1]
        state["pending"] = None


def deobfuscate(text):
    """The inverse of the web UI's CryptoJS.AES.encrypt(password, passphrase)."""
    try:
        raw = base64.b64decode(urllib.parse.unquote(text), validate=True)
    except Exception:
        return None
    if len(raw) < 32 or raw[:8] != b"Salted__":
        return None
    salt, body = raw[8:16], raw[16:]
    derived, block = b"", b""
    while len(derived) < 48:
        block = hashlib.md5(block + PASSPHRASE + salt).digest()
        derived += block
    dec = Cipher(algorithms.AES256(derived[:32]), modes.CBC(derived[32:48])).decryptor()
    try:
        padded = dec.update(body) + dec.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    except Exception:
        return None


def authed():
    return request.cookies.get("nano-kvm-token") in tokens


@app.post("/api/auth/login")
def login():
    body = request.get_json(silent=True) or request.form
    user, pw = body.get("username", ""), body.get("password", "")
    if user != USER or (deobfuscate(pw) != PASSWORD and pw != PASSWORD):
        time.sleep(0.2)
        return err(-2, "invalid username or password")
    token = secrets.token_hex(16)
    tokens.add(token)
    r = ok({"token": token})
    r.set_cookie("nano-kvm-token", token, httponly=True)
    return r


@app.before_request
def check_token():
    if request.path.startswith("/api/") and request.path != "/api/auth/login" and not authed():
        return json.dumps("unauthorized"), 401, {"Content-Type": "application/json"}


@app.get("/api/vm/hardware")
def hardware():
    return ok({"version": "Beta"})


@app.get("/api/vm/info")
def info():
    return ok({"ips": [], "mdns": "nanokvm-sim", "image": "v1.4.1", "application": "2.2.0", "deviceKey": ""})


@app.get("/api/vm/gpio")
def get_gpio():
    with lock:
        settle()
        return ok({"pwr": state["on"], "hdd": False})


@app.get("/sim/presses")
def get_presses():
    return jsonify(presses)


@app.post("/api/vm/gpio")
def set_gpio():
    body = request.get_json(silent=True) or request.form
    kind = body.get("type") or body.get("Type")
    duration = int(body.get("duration") or body.get("Duration") or 800)
    if kind not in ("power", "reset"):
        return err(-2, "invalid power event")
    presses.append({"type": kind, "duration": duration})
    time.sleep(duration / 1000)
    with lock:
        settle()
        now = time.time()
        if kind == "reset":
            if state["on"]:
                state["on"], state["pending"] = False, (now + ON_SECS, True)
        elif not state["on"]:
            state["pending"] = (now + ON_SECS, True)
        elif duration >= 5000:
            state["on"], state["pending"] = False, None
        elif GRACEFUL != "never":
            state["pending"] = (now + float(GRACEFUL), False)
    return ok()


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=PORT, threaded=True)
