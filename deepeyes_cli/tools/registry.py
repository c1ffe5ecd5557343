"""Build the tool set a recipe offers (``agent.tools``), with the sandbox executor behind
the code tool. The sandbox and search packages are imported only when their tools are
asked for, and a missing one is a clear error that says how to run without it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import ToolError
from deepeyes_cli.protocol.tags import CODE_TOOL
from deepeyes_cli.suggest import closest
from deepeyes_cli.tools.base import Tool

if TYPE_CHECKING:
    from PIL.Image import Image

    from deepeyes_cli.sandbox.base import SandboxExecutor, SandboxSession

log = logging.getLogger(__name__)

SEARCH_TOOLS = ("search", "image_search")
KNOWN_TOOLS = (CODE_TOOL, *SEARCH_TOOLS)


@dataclass
class Toolbox:
    """The tools of a run, by name, and the sandbox executor sessions are opened from."""

    tools: dict[str, Tool] = field(default_factory=dict)
    executor: SandboxExecutor | None = None
    code_timeout_s: float = 60.0

    async def open_session(self, images: Sequence[Image], session_id: str) -> SandboxSession:
        if self.executor is None:
            raise ToolError("no code sandbox is configured for this run",
                            hint="add code to agent.tools and configure sandbox:")
        return await self.executor.open_session(images=images, session_id=session_id)

    @property
    def has_sandbox(self) -> bool:
        return self.executor is not None

    def summary(self) -> dict[str, Any]:
        """Run counters of the tools (search calls, cache hits, cost …) for the run's record."""
        out: dict[str, Any] = {}
        if any(n in self.tools for n in SEARCH_TOOLS):
            from deepeyes_cli.tools.search import search_summary

            found = search_summary(list(self.tools.values()))
            if found:
                out["search"] = found
        return out


def _unavailable(what: str, module: str, rest: Sequence[str], e: ImportError) -> ToolError:
    return ToolError(f"{what} is not available: cannot import {module} ({e})",
                     hint=f"run without it: agent.tools=[{','.join(rest)}]")


def _check_names(names: Sequence[str]) -> None:
    for n in names:
        if n not in KNOWN_TOOLS:
            close = closest(n, KNOWN_TOOLS)
            raise ToolError(f"unknown tool '{n}' in agent.tools",
                            hint=(f"did you mean '{close}'? " if close else "") + f"tools: {', '.join(KNOWN_TOOLS)}")


@asynccontextmanager
async def open_toolbox(recipe: Any, names: Sequence[str] | None = None) -> AsyncIterator[Toolbox]:
    """The recipe's tools, ready to use; the sandbox executor and the tools are closed on exit."""
    names = list(recipe.agent.tools if names is None else names)
    _check_names(names)
    async with AsyncExitStack() as stack:
        box = Toolbox(code_timeout_s=recipe.sandbox.timeout_s)
        if CODE_TOOL in names:
            try:
                from deepeyes_cli.sandbox.factory import make_executor
            except ImportError as e:
                rest = [n for n in names if n != CODE_TOOL]
                raise _unavailable("the code sandbox", "deepeyes_cli.sandbox.factory", rest, e) from e
            from deepeyes_cli.tools.code import CodeTool

            box.executor = await stack.enter_async_context(make_executor(recipe.sandbox))
            box.tools[CODE_TOOL] = CodeTool(recipe.sandbox.timeout_s, fix_indentation=recipe.agent.fix_indentation,
                                            show_last_expression=recipe.agent.show_last_expression,
                                            image_max_pixels=recipe.agent.image_max_pixels)
        wanted = [n for n in names if n in SEARCH_TOOLS]
        if wanted:
            try:
                from deepeyes_cli.tools.search import build_search_tools
            except ImportError as e:
                rest = [n for n in names if n not in SEARCH_TOOLS]
                raise _unavailable("web search", "deepeyes_cli.tools.search", rest, e) from e
            built = {t.name: t for t in build_search_tools(recipe)}
            for n in wanted:
                if n in built:
                    box.tools[n] = built[n]
                else:
                    log.warning("tool %s is not offered: search.backend=%s provides no such tool", n,
                                recipe.search.backend)
            for tool in built.values():
                if hasattr(tool, "aclose"):
                    stack.push_async_callback(tool.aclose)
        yield box
