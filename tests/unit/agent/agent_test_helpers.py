"""Real implementations of the contracts for the agent's tests: an in-process (unisolated)
sandbox session and executor, tools that sleep, fail or return images."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Sequence
from typing import Any

from PIL import Image

from deepeyes_cli.sandbox.base import CellResult
from deepeyes_cli.tools.base import ToolContext, ToolResult


class InProcessSession:
    """A real (unisolated) implementation of the session contract, for tests only."""

    def __init__(self, images: list[Image.Image]) -> None:
        self.id = "s"
        self.ns: dict[str, object] = {f"image_{i}": im for i, im in enumerate(images, 1)}
        self.ns["show"] = self._show
        self.shown: list[bytes] = []
        self.closed = False

    def _show(self, image: Image.Image) -> None:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        self.shown.append(buf.getvalue())

    async def run(self, code: str, timeout: float | None = None) -> CellResult:
        out = io.StringIO()
        self.shown = []
        try:
            with contextlib.redirect_stdout(out):
                exec(code, self.ns)
        except Exception as e:
            return CellResult("error", stdout=out.getvalue(), error=f"{type(e).__name__}: {e}")
        return CellResult("ok", stdout=out.getvalue(), images=list(self.shown))

    async def close(self) -> None:
        self.closed = True



class InProcessExecutor:
    """Opens in-process sessions and remembers them (to check opening and closing)."""

    def __init__(self) -> None:
        self.sessions: list[InProcessSession] = []

    async def open_session(self, images: Sequence[Image.Image] = (), session_id: str | None = None) -> InProcessSession:
        session = InProcessSession(list(images))
        self.sessions.append(session)
        return session

    async def aclose(self) -> None:
        return None


class EchoSearch:
    """A `search` tool: sleeps, then answers with the query and optional images."""

    name = "search"
    description = "Web search."
    parameters: dict[str, Any] = {"type": "object", "properties": {"query": {"type": "string"}},
                                  "required": ["query"], "additionalProperties": False}

    def __init__(self, sleep_s: float = 0.0, images: int = 0, fail: str | None = None, fatal: bool = False,
                 raises: Exception | None = None) -> None:
        self.sleep_s, self.images, self.fail, self.fatal, self.raises = sleep_s, images, fail, fatal, raises
        self.calls: list[dict[str, Any]] = []
        self.contexts: list[ToolContext] = []

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        self.calls.append(args)
        self.contexts.append(ctx)
        if self.sleep_s:
            await asyncio.sleep(self.sleep_s)
        if self.raises is not None:
            raise self.raises
        if self.fail:
            return ToolResult.failure(self.fail, fatal=self.fatal)
        imgs = [Image.new("RGB", (40 + i, 40), (i * 20 % 255, 0, 0)) for i in range(self.images)]
        entries = "\n\n".join(f"{i + 1}. <image>\n[hit {i + 1}]" for i in range(self.images))
        return ToolResult(text=f"A Google search for '{args['query']}' found {self.images} results:\n\n"
                               f"## Web Results\n{entries}", images=imgs)
