"""Run an ASGI app on 127.0.0.1 in a background thread: real HTTP for tests and demos.

Used by the fake services (OpenAI-compatible judge/policy, SerpAPI) and by tests of our
own servers. The port is chosen by the kernel, so tests never collide.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

F = TypeVar("F")
S = TypeVar("S", bound="FakeService[Any]")


class BackgroundServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", log_level: str = "warning") -> None:
        import uvicorn

        # IPPROTO_TCP explicitly: asyncio turns Nagle off only when the socket says it is TCP;
        # otherwise each keep-alive request waits ~40 ms for a delayed ACK.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(app, log_level=log_level, lifespan="on", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> BackgroundServer:  # a loaded 2-core machine can take 10 s
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeService(Generic[F]):
    """Base of the fake external services (OpenAI-compatible, SerpAPI): an ASGI app served by a
    :class:`BackgroundServer`, and a queue of injected faults the next requests take in order.
    Subclasses set their own attributes, then call ``super().__init__(self._app(), faults)``."""

    def __init__(self, app: Any, faults: Iterable[F] = ()) -> None:
        self._lock = threading.Lock()
        self._faults: list[F] = list(faults)
        self._server = BackgroundServer(app)

    def add_faults(self, *faults: F) -> None:
        with self._lock:
            self._faults.extend(faults)

    def _next_fault(self) -> F | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def start(self: S) -> S:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
