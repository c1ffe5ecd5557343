"""The Tool contract: the seam between the agent loop and everything a model can call.

A tool has a ``name``, a ``description`` for the system prompt, a JSON-schema of its
arguments, and an async ``__call__(args, ctx)`` returning a :class:`ToolResult` (text plus
images). A tool never raises into the loop: :func:`call_tool` turns any exception into a
short error result that is shown to the model, and the trajectory goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from deepeyes_cli.errors import DeepeyesError

if TYPE_CHECKING:
    from PIL.Image import Image

    from deepeyes_cli.sandbox.base import SandboxSession

log = logging.getLogger(__name__)


@dataclass
class ToolResult:
    """What a tool gives back: text and images for the model, or an error message for it."""

    text: str = ""
    images: list[Image] = field(default_factory=list)
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # latency, cache hit, cost … (recorded per turn)

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(cls, message: str, **metadata: Any) -> ToolResult:
        return cls(error=message, metadata=dict(metadata))


@dataclass
class ToolContext:
    """What a tool may know about the trajectory calling it."""

    trajectory_id: str
    images: list[Image] = field(default_factory=list)  # the sample's input images, original resolution
    sample: dict[str, Any] = field(default_factory=dict)  # question, data_source, metadata of the sample
    # Images the model has been shown by tools so far, in order (so image_search can target a crop).
    produced_images: list[Image] = field(default_factory=list)
    # Opens (once) and returns this trajectory's sandbox session; None when no sandbox is configured.
    open_session: Callable[[], Awaitable[SandboxSession]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    async def session(self) -> SandboxSession:
        if self.open_session is None:
            raise DeepeyesError("no code sandbox is configured for this run",
                                hint="set sandbox.isolation (bwrap, docker or none) or sandbox.url")
        return await self.open_session()


@runtime_checkable
class Tool(Protocol):
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult: ...


async def call_tool(tool: Tool, args: dict[str, Any], ctx: ToolContext, timeout: float | None = None) -> ToolResult:
    """Run a tool, never raising: errors and time-outs become a short message for the model."""
    start = time.perf_counter()
    try:
        coro = tool(args, ctx)
        result = await (asyncio.wait_for(coro, timeout) if timeout else coro)
    except asyncio.CancelledError:
        raise
    except asyncio.TimeoutError:
        result = ToolResult.failure(f"{tool.name} timed out after {timeout:g} s")
    except DeepeyesError as e:
        result = ToolResult.failure(f"{tool.name} unavailable: {e.message}")
    except Exception as e:  # a tool bug must not end the trajectory or the run
        log.exception("tool %s failed", tool.name)
        result = ToolResult.failure(f"{tool.name} failed: {type(e).__name__}: {e}")
    result.metadata.setdefault("tool_s", round(time.perf_counter() - start, 6))
    return result
