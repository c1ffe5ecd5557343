"""The sandbox contract: one stateful Python session per trajectory.

A session is opened with the trajectory's input images (preloaded as ``image_1 … image_n``
PIL images), runs cells with ``run(code, timeout)``, and is closed when the trajectory
ends. The in-process pool and the HTTP client both implement :class:`SandboxExecutor`, so
the agent's code tool does not know which one it talks to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from PIL.Image import Image

CellStatus = Literal["ok", "error", "timeout", "crashed"]


@dataclass
class CellResult:
    status: CellStatus
    stdout: str = ""
    stderr: str = ""
    result: str | None = None  # repr of the cell's last expression, if any
    error: str | None = None  # clean traceback (no ANSI codes) when status is error/timeout/crashed
    images: list[bytes] = field(default_factory=list)  # PNG bytes of every image shown, capped per cell
    execution_time: float = 0.0
    truncated: bool = False  # stdout/stderr were cut at the output limit
    images_dropped: int = 0  # images beyond the per-cell cap
    restarted: bool = False  # the kernel had to be restarted (its state is gone)
    notes: list[str] = field(default_factory=list)  # messages for the model ("kernel restarted" …)


@runtime_checkable
class SandboxSession(Protocol):
    id: str

    async def run(self, code: str, timeout: float | None = None) -> CellResult: ...

    async def close(self) -> None: ...


@runtime_checkable
class SandboxExecutor(Protocol):
    """Opens sessions; used as ``async with make_executor(cfg) as executor`` (enter starts the
    pool or checks the server, exit closes every session it opened)."""

    async def open_session(self, images: Sequence[Image] = (), session_id: str | None = None) -> SandboxSession: ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> SandboxExecutor: ...

    async def __aexit__(self, *exc: object) -> None: ...
