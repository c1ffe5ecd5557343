"""What the search tools talk to: ``SearchService`` (this process) or ``RemoteSearch`` (a server).

Both answer synchronously (SerpAPI's client and SQLite block); the async variants run them
on the searcher's own thread pool, so many trajectories of one event loop search at once.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

    from deepeyes_cli.search.types import SearchOutcome

COUNTERS = ("calls", "hits", "misses", "shared", "refreshed", "fallback", "errors", "budget_refusals",
            "upstream_calls")


class Searcher:
    run_id: str

    def __init__(self, max_workers: int, thread_name: str) -> None:
        self.executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_name)
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()

    def search_text(self, query: str, top_k: int | None = None) -> SearchOutcome:
        raise NotImplementedError

    def search_image(self, image: Image, top_k: int | None = None, sample_index: str | None = None) -> SearchOutcome:
        raise NotImplementedError

    async def asearch_text(self, query: str, top_k: int | None = None) -> SearchOutcome:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(self.search_text, query, top_k))

    async def asearch_image(self, image: Image, top_k: int | None = None,
                            sample_index: str | None = None) -> SearchOutcome:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor,
                                          functools.partial(self.search_image, image, top_k, sample_index))

    def _count(self, **deltas: float) -> None:
        with self._lock:
            self._stats.update(deltas)

    def _summary(self, backend: str, mode: str) -> dict[str, Any]:
        with self._lock:
            stats = dict(self._stats)
        out: dict[str, Any] = {"run_id": self.run_id, "backend": backend, "mode": mode}
        out.update({name: int(stats.get(name, 0)) for name in COUNTERS})
        out["cost"] = float(stats.get("cost", 0.0))
        return out

    def summary(self) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
