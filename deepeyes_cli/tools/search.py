"""The two search tools the model calls: ``search`` (text) and ``image_search`` (Google Lens).

They are thin: parse the arguments, pick the image, ask the search service (or the
``deepeyes search serve`` server when ``search.url`` is set), and return its text and
thumbnails. The text is exactly the original's result text; the agent runtime wraps it in
``<tool_response>`` and turns each ``<image>`` into vision tokens. Failures (API down,
budget spent, replay miss) come back as ``search unavailable: …`` and the trajectory
goes on. The service is opened on the first call, so building the tools costs nothing.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import DeepeyesError
from deepeyes_cli.tools.base import Tool, ToolContext, ToolResult

log = logging.getLogger(__name__)


def open_searcher(config: Any, cache_dir: str | Path | None = None, run_id: str | None = None) -> Any:
    """A ``SearchService`` (this process owns cache and budget) or a ``RemoteSearch`` (``search.url``)."""
    if config.url:
        from deepeyes_cli.search.remote import RemoteSearch

        return RemoteSearch(config, run_id=run_id)
    from deepeyes_cli.search.service import SearchService

    return SearchService(config, cache_dir=cache_dir, run_id=run_id)


class SearchHandle:
    """Opens the searcher once, on first use, for both tools of a run."""

    def __init__(self, config: Any, cache_dir: str | Path | None) -> None:
        self.config = config
        self.cache_dir = cache_dir
        self._searcher: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._searcher is None:
                self._searcher = open_searcher(self.config, self.cache_dir)
            return self._searcher

    def summary(self) -> dict[str, Any] | None:
        return self._searcher.summary() if self._searcher is not None else None

    def close(self) -> None:
        with self._lock:
            if self._searcher is not None:
                self._searcher.close()
                self._searcher = None


def _unavailable(e: Exception) -> ToolResult:
    if isinstance(e, DeepeyesError):
        return ToolResult.failure(f"search unavailable: {e.message}", error_type=type(e).__name__)
    log.exception("search tool failed")
    return ToolResult.failure(f"search unavailable: internal error ({type(e).__name__})", error_type=type(e).__name__)


class SearchTool:
    name = "search"
    description = ("Web search (Google). Returns the top results for a text query, each with its title, link and "
                   "a snippet. Use it when you lack knowledge; one query per call.")

    def __init__(self, handle: SearchHandle) -> None:
        self.handle = handle
        self.parameters: dict[str, Any] = {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to search for, as you would type it."}},
            "required": ["query"],
        }

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        query = args.get("query")
        extra = sorted(set(args) - {"query"})
        if not isinstance(query, str) or not query.strip() or extra:
            why = f"unknown argument(s) {', '.join(extra)}" if extra else "'query' must be a non-empty string"
            return ToolResult.failure(f"Invalid search arguments: {why}. Call it as "
                                      '{"name": "search", "arguments": {"query": "..."}}.')
        try:
            outcome = await self.handle.get().asearch_text(query)
        except Exception as e:
            return _unavailable(e)
        return ToolResult(text=outcome.text, metadata=outcome.metadata())


class ImageSearchTool:
    name = "image_search"
    description = ("Reverse image search (Google Lens). Returns the best visual matches on the web, each as a "
                   "thumbnail with its page title. Without arguments it searches the input image; give "
                   "\"image\": k to search the k-th image of this conversation instead (1 = the input image, then "
                   "every image shown to you since, in order — e.g. a crop your code displayed).")

    def __init__(self, handle: SearchHandle) -> None:
        self.handle = handle
        self.parameters: dict[str, Any] = {
            "type": "object",
            "properties": {"image": {
                "type": "integer", "minimum": 1, "default": 1,
                "description": "Which image to search: 1 = the input image (default); 2, 3, … = the images shown "
                               "after it, in order (input images first, then tool outputs)."}},
            "required": [],
            "additionalProperties": False,
        }

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        pool = [*ctx.images, *ctx.produced_images]
        which = args.get("image", 1)
        extra = sorted(set(args) - {"image"})
        if isinstance(which, str) and which.strip().isdigit():
            which = int(which)
        if extra or isinstance(which, bool) or not isinstance(which, int):
            why = f"unknown argument(s) {', '.join(extra)}" if extra else "'image' must be an integer"
            return ToolResult.failure(f"Invalid image_search arguments: {why}.")
        if not pool:
            return ToolResult.failure("image_search: there is no image in this conversation to search.")
        if not 1 <= which <= len(pool):
            return ToolResult.failure(f"image_search: there is no image {which}; images 1 to {len(pool)} have "
                                      "been shown.")
        sample_index = _sample_index(ctx.sample) if which == 1 else None
        try:
            outcome = await self.handle.get().asearch_image(pool[which - 1], sample_index=sample_index)
            from deepeyes_cli.search.images import open_image

            images = [open_image(data) for data in outcome.images]
        except Exception as e:
            return _unavailable(e)
        return ToolResult(text=outcome.text, images=images, metadata={**outcome.metadata(), "image": which})


def _sample_index(sample: dict[str, Any]) -> str | None:
    """The sample's dataset index (``extra_info.index`` in the original RL data), for the imported original cache."""
    for holder in (sample, sample.get("metadata") or {}):
        if not isinstance(holder, dict):
            continue
        for candidate in (holder.get("index"), (holder.get("extra_info") or {}).get("index")):
            if candidate is not None and str(candidate) != "":
                return str(candidate)
    return None


def build_search_tools(recipe: Any) -> list[Tool]:
    """``search`` and ``image_search`` for a recipe (a ``Recipe`` or a ``ResolvedRecipe``).

    Returns no tools when search is off (``search.backend: none`` and no ``search.url``).
    Both tools share one searcher: ``search_summary(tools)`` gives the run counters and
    ``close_search_tools(tools)`` records them and closes the cache.
    """
    recipe = getattr(recipe, "recipe", recipe)
    config = recipe.search
    if config.backend == "none" and not config.url:
        return []
    handle = SearchHandle(config, recipe.run.cache_dir)
    return [SearchTool(handle), ImageSearchTool(handle)]


def _handle(tools: list[Tool]) -> SearchHandle | None:
    for tool in tools:
        handle = getattr(tool, "handle", None)
        if isinstance(handle, SearchHandle):
            return handle
    return None


def search_summary(tools: list[Tool]) -> dict[str, Any] | None:
    """Calls, hits, misses, cost, errors … of this process's searches, for the run summary."""
    handle = _handle(tools)
    return handle.summary() if handle else None


def close_search_tools(tools: list[Tool]) -> None:
    handle = _handle(tools)
    if handle:
        handle.close()
