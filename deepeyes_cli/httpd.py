"""What our HTTP servers (``sandbox serve``, ``serve``) share: the loopback test, the bearer
token check and the listening socket.

No FastAPI import here: the token check takes the header value, so this module stays at the
bottom floor and cheap to import.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: addresses only this machine can reach."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def bearer_ok(authorization: str, token: str, fallback: str = "") -> bool:
    """Whether ``Authorization: Bearer <token>`` (or, when the header is absent, ``fallback``,
    e.g. a ``?token=`` query value) carries ``token``; compared in constant time."""
    scheme, _, value = authorization.partition(" ")
    given = value.strip() if scheme.lower() == "bearer" else fallback
    return hmac.compare_digest(given.encode(), token.encode())


def listen(host: str, port: int) -> tuple[socket.socket, str]:
    """A TCP socket bound and listening on ``host:port`` (``port=0``: any free port), and its
    URL. Listening before uvicorn starts means a client that connects at once is queued, not
    refused, and the URL printed is the real one. Raises ``OSError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off only on sockets whose proto says TCP, and Nagle
    # plus delayed ACKs adds 40 ms to every keep-alive request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    url = f"http://{f'[{host}]' if family == socket.AF_INET6 else host}:{sock.getsockname()[1]}"
    return sock, url
