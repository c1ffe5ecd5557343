"""Worker processes that open a brand-new cache file at the same moment all succeed
(switching to WAL is a lock upgrade SQLite refuses instead of waiting)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path


def _open(path: str, barrier, results) -> None:
    from deepeyes_cli.search.cache import SearchCache

    barrier.wait()
    try:
        SearchCache(path).close()
        results.put("ok")
    except Exception as e:
        results.put(f"{type(e).__name__}: {e}")


def test_many_processes_create_one_cache_at_once(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    outcomes = []
    for round_ in range(30):
        path = str(tmp_path / f"cache{round_}.sqlite")
        barrier, results = ctx.Barrier(8), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(path, barrier, results)) for _ in range(8)]
        for p in procs:
            p.start()
        outcomes += [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
    assert outcomes == ["ok"] * 240
