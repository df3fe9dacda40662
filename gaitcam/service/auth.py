"""Who may call the service: everyone on loopback, only bearers of the token elsewhere.

The token is read from a file or an environment variable, never from the command line (where
`ps` shows it), compared in constant time, and never logged.
"""
from __future__ import annotations

import base64
import hmac
import ipaddress
import os
from pathlib import Path

from gaitcam.errors import GaitcamError

TOKEN_ENV = "GAITCAM_TOKEN"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; anything else (0.0.0.0 included) reaches the network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def load_token(token_file: str | Path | None) -> str | None:
    """The token from `token_file` (its first line), else from $GAITCAM_TOKEN, else None."""
    if token_file is not None:
        try:
            text = Path(token_file).read_text()
        except OSError as e:
            raise GaitcamError(f"{token_file}: cannot read the token ({e.strerror})") from None
        token = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if not token:
            raise GaitcamError(f"{token_file}: the token file is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token."""
    if token is None and not is_loopback(host):
        raise GaitcamError(f"serving on {host} (beyond this machine) needs a token: "
                           f"--token-file FILE or ${TOKEN_ENV}")


# Programs send `Bearer TOKEN`; a browser, which cannot add headers to the page it opens, asks
# its user once (Basic: any user name, the token as password) and sends that with every request.
CHALLENGE = 'Bearer realm="gaitcam", Basic realm="gaitcam", charset="UTF-8"'


def authorised(header: str | None, token: str | None) -> bool:
    """Whether an `Authorization` header carries the token (always, when none is set)."""
    if token is None:
        return True
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(given.encode(), token.encode())
