"""``SearchService``: backends behind the cache, with modes, single-flight, budgets and run counters.

Modes: ``live`` reads through the cache and records misses; ``replay`` answers from the
cache only (a miss is an error, or goes to ``search.fallback`` without being recorded);
``refresh`` always asks upstream and overwrites.

Single-flight guarantee (``flight.py``): identical requests (same cache key) that overlap
in time make one upstream call — across threads of a process (they wait on the leader's
future and share its answer) and across processes sharing the cache file (one holds a
lease in SQLite, renewed while its call runs; the others poll until the answer is stored).
If a leader fails, one follower (a waiting thread, or a process that takes the lease over)
tries once more, and so on, so a failing key is asked at most once at a time. A leader killed with ``kill -9`` is replaced as soon as its
pid is gone (same host) or its lease (``search.cache.lease_s``) lapses unrenewed. When
runs have their own budgets, requests of different runs do not share an in-process
flight (one run's spent budget must not refuse another's), only the lease. With
``search.cache.enabled: false`` only the in-process guarantee holds.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import SearchError
from deepeyes_cli.search.budget import Budget, BudgetSpent, default_run_id
from deepeyes_cli.search.cache import CacheEntry, SearchCache
from deepeyes_cli.search.config import SearchConfig
from deepeyes_cli.search.flight import Leases, SingleFlight
from deepeyes_cli.search.format import format_image_results, format_text_results
from deepeyes_cli.search.searcher import Searcher
from deepeyes_cli.search.types import (
    SearchOutcome,
    SearchRequest,
    image_sha256,
    normalize_query,
    sample_cache_key,
)

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)
STATS_FLUSH_S = 5.0


@dataclass
class _Answer:
    entry: CacheEntry
    blobs: dict[str, bytes] | None  # None: read them from the cache
    paid: bool  # this caller made the upstream call


def default_cache_path(config: SearchConfig, cache_dir: str | Path | None = None) -> Path:
    if config.cache.path:
        return Path(config.cache.path).expanduser()
    if cache_dir is None:
        from deepeyes_cli.models.loading import default_cache_dir

        cache_dir = default_cache_dir()
    return Path(cache_dir).expanduser() / "search" / "cache.sqlite"


def make_backend(name: str, config: SearchConfig, cache_dir: Path) -> Any:
    if name == "serpapi":
        from deepeyes_cli.search.serpapi_backend import SerpapiBackend

        return SerpapiBackend(config)
    if name == "local":
        from deepeyes_cli.search.local import LocalBackend

        return LocalBackend(config, cache_dir)
    return None


class SearchService(Searcher):
    def __init__(self, config: SearchConfig, cache_dir: str | Path | None = None, run_id: str | None = None) -> None:
        self.config = config
        self.cache = SearchCache(default_cache_path(config, cache_dir))
        self.run_id = run_id or default_run_id(config.budget.run_id)
        self.budget = Budget(self.cache, config.budget, self.run_id)
        self.leases = Leases(self.cache, config.cache.lease_s)
        try:
            self.budget.settle_abandoned()  # paid calls left pending by workers killed on this host
        except sqlite3.Error:
            log.warning("could not settle abandoned paid calls in %s", self.cache.path, exc_info=True)
        self.backend = make_backend(config.backend, config, self.cache.path.parent)
        self.fallback = make_backend(config.fallback, config, self.cache.path.parent)
        super().__init__(config.max_concurrency, "search")
        self._flight = SingleFlight()
        self._unflushed: Counter[str] = Counter()
        self._flushed_at = time.monotonic()

    # ------------------------------------------------------------------ public API

    def search_text(self, query: str, top_k: int | None = None,
                    run_id: str | None = None) -> SearchOutcome:
        if not isinstance(query, str) or not normalize_query(query):
            raise SearchError("the query is empty", hint='call search with {"query": "<words to search for>"}')
        return self._resolve(SearchRequest("text", self._backend_name(), query=query), top_k, run_id)

    def search_image(self, image: Image, top_k: int | None = None,
                     sample_index: str | None = None, run_id: str | None = None) -> SearchOutcome:
        from deepeyes_cli.search.images import to_rgb

        rgb = to_rgb(image)
        req = SearchRequest("image", self._backend_name(), image_sha256=image_sha256(rgb), sample_index=sample_index)
        return self._resolve(req, top_k, run_id, rgb)

    def summary(self) -> dict[str, Any]:
        """Counters of this process for the run summary (``cache stats --run`` sums all processes)."""
        return self._summary(self.config.backend, self.config.mode)

    def flush_stats(self) -> None:
        with self._lock:
            deltas, self._unflushed = dict(self._unflushed), Counter()
            self._flushed_at = time.monotonic()
        try:
            self.cache.add_run_stats(self.run_id, deltas)
        except Exception:  # counters are best effort; a busy or read-only cache must not fail a search
            log.warning("could not record search counters in %s", self.cache.path, exc_info=True)

    def close(self) -> None:
        self.flush_stats()
        super().close()
        self.leases.close()
        self.cache.close()

    # ------------------------------------------------------------------ internals

    def _backend_name(self) -> str:
        return self.config.backend

    def _count(self, **deltas: float) -> None:
        with self._lock:
            self._stats.update(deltas)
            self._unflushed.update(deltas)
            due = time.monotonic() - self._flushed_at > STATS_FLUSH_S
        if due:
            self.flush_stats()

    def _resolve(self, req: SearchRequest, top_k: int | None, run_id: str | None,
                 image: Image | None = None) -> SearchOutcome:
        start = time.perf_counter()
        try:
            try:
                answer, status = self._answer(req, run_id, image)
            except sqlite3.Error as e:
                raise SearchError(f"search cache {self.cache.path} failed: {e}",
                                  hint="`deepeyes search cache stats` checks it; another process may hold it") from e
        except BudgetSpent:
            self._count(calls=1, errors=1, budget_refusals=1)
            raise
        except SearchError:
            self._count(calls=1, errors=1)
            raise
        cost = answer.entry.cost if answer.paid else 0.0
        counter = {"hit": "hits", "miss": "misses", "refresh": "refreshed", "shared": "shared",
                   "fallback": "fallback", "off": "misses"}[status]
        self._count(calls=1, cost=cost, upstream_calls=int(answer.paid), **{counter: 1})
        return self._render(answer, req, status, top_k or self.config.top_k, cost, time.perf_counter() - start)

    def _answer(self, req: SearchRequest, run_id: str | None, image: Image | None) -> tuple[_Answer, str]:
        mode, use_cache = self.config.mode, self.config.cache.enabled
        if self.backend is None:
            raise SearchError("search is turned off (search.backend: none)",
                              hint="set search.backend to serpapi or local (replay needs the backend that recorded)")
        req.params = self.backend.params(req.kind)
        key = req.key
        if use_cache and mode != "refresh":
            for k in (key, sample_cache_key(req.sample_index) if req.sample_index else None):
                entry = self.cache.get(k) if k else None
                if entry is not None:
                    return _Answer(entry, None, False), "hit"
        if mode == "replay":
            if self.fallback is None:
                raise SearchError("not in the search cache (search.mode is replay)",
                                  hint="record it with search.mode=live, import a cache, or set search.fallback")
            entry, blobs = self._call_upstream(self.fallback, req, key, run_id, image, record=False)
            return _Answer(entry, blobs, False), "fallback"
        flight = key if self.config.budget.max_calls_per_run is None else f"{key}/{run_id or self.run_id}"
        answer, shared = self._flight.do(flight, lambda: self._fetch_once(req, key, run_id, image))
        if shared:
            return _Answer(answer.entry, answer.blobs, False), "shared"
        if not answer.paid:
            return answer, "shared"
        return answer, ("refresh" if mode == "refresh" else "miss" if use_cache else "off")

    def _fetch_once(self, req: SearchRequest, key: str, run_id: str | None, image: Image | None) -> _Answer:
        if not self.config.cache.enabled:
            return _Answer(*self._call_upstream(self.backend, req, key, run_id, image, record=False), True)
        owner, started = uuid.uuid4().hex, time.time()
        refresh = self.config.mode == "refresh"
        delay = 0.002
        # No deadline of our own: a live leader renews its lease until its call ends (every
        # upstream step has a time limit), and a dead one loses it (pid gone, or lease_s).
        while True:
            entry = self.cache.get(key)
            if entry is not None and (not refresh or entry.created >= started):
                return _Answer(entry, None, False)
            if self.leases.try_acquire(key, owner):
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            entry = self.cache.get(key)  # stored by a leader that released between our read and our lease
            if entry is not None and (not refresh or entry.created >= started):
                return _Answer(entry, None, False)
            return _Answer(*self._call_upstream(self.backend, req, key, run_id, image, record=True), True)
        finally:
            self.leases.release(key, owner)

    def _call_upstream(self, backend: Any, req: SearchRequest, key: str, run_id: str | None,
                       image: Image | None, record: bool) -> tuple[CacheEntry, dict[str, bytes]]:
        call_id = self.budget.reserve(backend.name, key, run_id) if backend.paid else None
        start = time.perf_counter()
        try:
            if req.kind == "text":
                result = backend.text(req.query or "")
            else:
                assert image is not None
                result = backend.image(image, req.image_sha256 or "")
        except Exception as e:
            if call_id is not None:
                self.budget.settle(call_id, "error", cost=0.0)
            if isinstance(e, SearchError):
                raise
            log.exception("search backend %s failed", backend.name)
            raise SearchError(f"{backend.name} search failed ({type(e).__name__})") from e
        except BaseException:  # Ctrl-C mid-call: it may have been billed, so it keeps counting
            if call_id is not None:
                self.budget.settle(call_id, "interrupted", cost=0.0)
            raise
        if call_id is not None:
            self.budget.settle(call_id, "ok", cost=result.cost)
        subject = normalize_query(req.query or "") if req.kind == "text" else req.image_sha256
        entry = CacheEntry(key, backend.name, req.kind, subject, req.params, result.hits, "", time.time(),
                           result.cost, time.perf_counter() - start, raw=result.raw)
        entry.shown = self._format(req, entry, result.blobs, self.config.top_k)[0]
        if record:
            self.cache.put(entry, result.blobs)
        return entry, result.blobs

    def _format(self, req: SearchRequest, entry: CacheEntry, blobs: dict[str, bytes],
                top_k: int) -> tuple[str, list[bytes]]:
        if req.kind == "text":
            return format_text_results(req.query or "", entry.hits[:top_k]), []
        limit = min(top_k, self.config.images.max_images)
        shown = [h for h in entry.hits if h.thumbnail and h.thumbnail in blobs][:limit]
        return format_image_results(shown), [blobs[h.thumbnail] for h in shown if h.thumbnail]

    def _render(self, answer: _Answer, req: SearchRequest, status: str, top_k: int, cost: float,
                latency: float) -> SearchOutcome:
        entry, blobs = answer.entry, answer.blobs
        if blobs is None:
            blobs = self.cache.get_blobs(h.thumbnail for h in entry.hits if h.thumbnail) if req.kind == "image" else {}
        text, images = self._format(req, entry, blobs, top_k)
        return SearchOutcome(kind=req.kind, hits=entry.hits[:top_k], text=text, images=images,
                             cache=status,  # type: ignore[arg-type]
                             backend=entry.backend, key=entry.key, cost=cost, latency_s=latency, query=req.query)
