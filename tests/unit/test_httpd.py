"""The pieces our HTTP servers share: the loopback test, the bearer check, the socket."""

from __future__ import annotations

import socket

import pytest

from deepeyes_cli.httpd import bearer_ok, is_loopback, listen


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                                ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                                ("::", False), ("10.1.2.3", False), ("example.org", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_bearer_ok() -> None:
    assert bearer_ok("Bearer sk-1", "sk-1") and bearer_ok("bearer  sk-1 ", "sk-1")
    assert not bearer_ok("Bearer sk-2", "sk-1") and not bearer_ok("", "sk-1") and not bearer_ok("sk-1", "sk-1")
    assert bearer_ok("", "sk-1", fallback="sk-1")  # ?token= for clients that cannot send a header
    assert not bearer_ok("Bearer sk-2", "sk-1", fallback="sk-1")  # a wrong header is not saved by the query


def test_listen_picks_a_free_port_and_accepts_at_once() -> None:
    sock, url = listen("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert url == f"http://127.0.0.1:{port}" and port > 0
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # queued by the backlog before anyone calls accept()
        with pytest.raises(OSError):
            listen("127.0.0.1", port)
    finally:
        sock.close()
