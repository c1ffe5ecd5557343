"""SearchCache's queries field by field: listing with filters, blobs, run counters, stats and
prune (written against `make mutation` survivors)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deepeyes_cli.search.cache import CacheEntry, SearchCache
from deepeyes_cli.search.types import Hit, cache_key


def _entry(backend: str, kind: str, subject: str, created: float, cost: float = 1.0,
           thumb: str | None = None) -> CacheEntry:
    params = {"engine": "google" if kind == "text" else "google_lens"}
    return CacheEntry(cache_key(backend, kind, subject, params), backend, kind, subject, params,
                      [Hit(f"title {subject}", f"https://{subject}.example", snippet="s", thumbnail=thumb)],
                      f"shown {subject}", created, cost, 0.25, raw={"subject": subject})


@pytest.fixture
def cache(tmp_path: Path) -> SearchCache:
    c = SearchCache(tmp_path / "c.sqlite")
    now = time.time()
    c.put(_entry("serpapi", "text", "a", now - 300, cost=2.0))
    c.put(_entry("serpapi", "image", "b", now - 200, thumb="sha-b"), {"sha-b": b"B" * 10})
    c.put(_entry("local", "text", "c", now - 100, cost=0.0))
    return c


def test_entries_come_back_whole_in_creation_order(cache: SearchCache) -> None:
    entries = list(cache.iter_entries())
    assert [e.subject for e in entries] == ["a", "b", "c"]
    a = entries[0]
    expected = _entry("serpapi", "text", "a", a.created, cost=2.0)
    assert (a.key, a.backend, a.kind, a.subject, a.params) == (expected.key, "serpapi", "text", "a", expected.params)
    assert a.hits == expected.hits and a.shown == "shown a" and a.cost == 2.0 and a.latency_s == 0.25
    assert a.raw == {"subject": "a"}
    assert [e.raw for e in cache.iter_entries(with_raw=False)] == [None, None, None]


@pytest.mark.parametrize(("backend", "kind", "subjects"), [
    ("serpapi", None, ["a", "b"]), (None, "text", ["a", "c"]), ("serpapi", "text", ["a"]), ("local", "image", []),
])
def test_entries_filtered_by_backend_and_kind(cache: SearchCache, backend, kind, subjects) -> None:
    assert [e.subject for e in cache.iter_entries(backend=backend, kind=kind)] == subjects


def test_blobs_by_hash(cache: SearchCache) -> None:
    cache.put(_entry("serpapi", "image", "d", time.time(), thumb="sha-d"), {"sha-d": b"D"})
    assert cache.get_blobs(["sha-b", "sha-d", "nope", ""]) == {"sha-b": b"B" * 10, "sha-d": b"D"}
    assert cache.get_blobs([]) == {} and cache.get_blobs([""]) == {}


def test_run_counters_add_up_per_run(cache: SearchCache) -> None:
    cache.add_run_stats("r1", {"hits": 2, "misses": 1, "nothing": 0})
    cache.add_run_stats("r1", {"hits": 3})
    cache.add_run_stats("r2", {"misses": 4})
    cache.add_run_stats("r3", {"zero": 0})  # nothing to add: no row
    assert cache.run_stats("r1") == {"r1": {"hits": 5.0, "misses": 1.0}}
    assert cache.run_stats() == {"r1": {"hits": 5.0, "misses": 1.0}, "r2": {"misses": 4.0}}
    assert cache.run_stats("none") == {}


def test_stats_by_backend_and_kind(cache: SearchCache) -> None:
    stats = cache.stats()
    assert stats["by_backend"] == [{"backend": "local", "kind": "text", "entries": 1, "cost": 0.0},
                                   {"backend": "serpapi", "kind": "image", "entries": 1, "cost": 1.0},
                                   {"backend": "serpapi", "kind": "text", "entries": 1, "cost": 2.0}]
    assert stats["entries"] == 3 and stats["blobs"] == 1 and stats["blob_bytes"] == 10 and stats["bytes"] > 0


def test_prune_by_age_backend_and_kind_keeps_the_rest(cache: SearchCache) -> None:
    assert cache.prune(older_than_s=250) == {"entries": 1, "blobs": 0, "calls": 0}  # "a" only
    assert [e.subject for e in cache.iter_entries()] == ["b", "c"]
    assert cache.prune(backend="serpapi", kind="text") == {"entries": 0, "blobs": 0, "calls": 0}
    assert cache.prune(kind="image") == {"entries": 1, "blobs": 1, "calls": 0}  # and its thumbnail
    assert [e.subject for e in cache.iter_entries()] == ["c"]
    assert cache.prune() == {"entries": 0, "blobs": 0, "calls": 0}  # no filter never means "everything"
    assert cache.stats()["entries"] == 1


def test_prune_the_ledger_by_age_only(cache: SearchCache) -> None:
    with cache.write() as conn:
        for ts in (time.time() - 7200, time.time() - 10):
            conn.execute("INSERT INTO calls(run_id, backend, key, ts, status, cost, pid, host) "
                         "VALUES('r', 'serpapi', 'k', ?, 'ok', 1.0, 1, 'h')", (ts,))
    assert cache.prune(ledger_older_than_s=3600)["calls"] == 1
    assert cache.connection().execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 1
    assert cache.stats()["entries"] == 3  # answers untouched
