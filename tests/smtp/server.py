"""An SMTP server for gatehouse's notification tests: aiosmtpd with STARTTLS
required, AUTH (PLAIN/LOGIN) required for one user, delivering to a maildir.

Usage: python3 server.py PORT CERT KEY MAILDIR USER PASSWORD
"""

import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, maildir, user, password = sys.argv[1:7]


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    return AuthResult(success=ok, handled=False)


tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)
controller = Controller(
    Mailbox(maildir),
    hostname="127.0.0.1",
    port=int(port),
    tls_context=tls,
    require_starttls=True,
    authenticator=authenticator,
    auth_required=True,
    auth_require_tls=True,
)
controller.start()
try:
    while True:
        time.sleep(3600)
finally:
    controller.stop()
