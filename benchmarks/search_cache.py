"""Search cache speed: hit latency, hits/s from 8 concurrent workers, opening a 100k-entry cache.

Goals (issue 5): hit p50 <= 1 ms; >= 2,000 hits/s from 8 concurrent workers; a 100k-entry
cache opens in < 1 s. A "hit" is the whole path a tool call takes: key, SQLite read, JSON
decode and formatting of the text the model sees. Workers are measured both as 8 threads
of one process (one SearchService) and as 8 processes sharing the file (rollout workers).

"Opens" is measured as a worker meets it: in a fresh process (modules already imported,
timed apart), with the file's pages evicted from the OS page cache (``posix_fadvise``
DONTNEED, as after a reboot or on a node that never read it), from ``SearchService(...)``
— connection, schema check, the ledger sweep for killed workers — to the first answered
search, which reads the data and the key index. SQLite connects lazily, so timing the
constructor alone would measure nothing.

    python benchmarks/search_cache.py [--entries 100000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from deepeyes_cli.search.cache import SearchCache
from deepeyes_cli.search.config import SearchConfig
from deepeyes_cli.search.service import SearchService
from deepeyes_cli.search.types import Hit, cache_key

WORKERS = 8
HOT = 1000  # distinct cached queries the workers ask for


def _config(path: Path) -> SearchConfig:
    return SearchConfig.model_validate({"backend": "serpapi", "mode": "live", "cache": {"path": str(path)},
                                        "budget": {"run_id": "bench"}})


def fill(path: Path, n: int) -> None:
    """``n`` SerpAPI-shaped text answers (5 hits each, with the raw response), in one transaction."""
    from deepeyes_cli.search.serpapi_backend import SerpapiBackend

    params = SerpapiBackend(_config(path)).params("text")
    cache = SearchCache(path)
    now = time.time()
    rows = []
    for i in range(n):
        query = f"benchmark query number {i}"
        hits = [Hit(f"Result {j} for {query}", f"https://example.org/{i}/{j}",
                    snippet=f"A snippet of about a hundred characters describing result {j} of query {i} ..."
                    ).to_dict() for j in range(5)]
        raw = {"organic_results": hits, "search_metadata": {"id": str(i), "status": "Success"}}
        rows.append((cache_key("serpapi", "text", query, params), "serpapi", "text", query,
                     json.dumps(params, sort_keys=True), json.dumps(hits), "", json.dumps(raw), now, 1.0, 0.5))
    with cache.write() as conn:
        conn.executemany("INSERT OR REPLACE INTO entries(key, backend, kind, subject, params, hits, shown, raw, "
                         "created, cost, latency_s) VALUES(?,?,?,?,?,?,?,?,?,?,?)", rows)
    cache.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache.close()


def _hits_for(service: SearchService, seconds: float, seed: int) -> int:
    n, i = 0, seed
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        out = service.search_text(f"benchmark query number {i % HOT}")
        assert out.cache == "hit"
        n += 1
        i += 7
    return n


def _process_worker(path: str, seconds: float, seed: int, start: float, queue: mp.Queue) -> None:
    service = SearchService(_config(Path(path)))
    service.search_text("benchmark query number 0")  # connection open and warm
    time.sleep(max(0.0, start - time.time()))
    queue.put(_hits_for(service, seconds, seed))
    service.close()


OPEN_PROBE = """
import json, sys, time
from deepeyes_cli.search.config import SearchConfig
from deepeyes_cli.search.service import SearchService
config = SearchConfig.model_validate_json(sys.argv[1])
t = time.perf_counter()
service = SearchService(config)
opened = time.perf_counter() - t
out = service.search_text(sys.argv[2])
first_hit = time.perf_counter() - t
assert out.cache == "hit", out.cache
print(json.dumps({"constructor_s": opened, "first_hit_s": first_hit}))
"""


def evict_from_page_cache(path: Path) -> bool:
    """Drop the file's pages (and its WAL's) from the OS page cache; False where the OS cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if p.exists():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return True


def open_in_fresh_process(path: Path, query: str, cold: bool) -> dict[str, Any]:
    evicted = evict_from_page_cache(path) if cold else False
    probe = subprocess.run([sys.executable, "-c", OPEN_PROBE, _config(path).model_dump_json(), query],
                           capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    return {**json.loads(probe.stdout), "page_cache_evicted": evicted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cache.sqlite"
        t0 = time.perf_counter()
        fill(path, args.entries)
        fill_s = time.perf_counter() - t0
        file_mb = path.stat().st_size / 1e6

        cold = open_in_fresh_process(path, f"Benchmark Query Number {args.entries // 2}", cold=True)
        warm = open_in_fresh_process(path, f"benchmark query number {args.entries - 1}", cold=False)

        service = SearchService(_config(path))
        for i in range(200):  # warm up
            service.search_text(f"benchmark query number {i}")
        latencies = []
        for i in range(3000):
            t = time.perf_counter()
            service.search_text(f"benchmark query number {(i * 13) % HOT}")
            latencies.append(time.perf_counter() - t)
        latencies.sort()

        counts = [0] * WORKERS
        threads = [threading.Thread(target=lambda k=k: counts.__setitem__(k, _hits_for(service, args.seconds, k)))
                   for k in range(WORKERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        threads_rate = sum(counts) / args.seconds
        service.close()

        ctx = mp.get_context("spawn")
        queue: mp.Queue = ctx.Queue()
        start = time.time() + 3.0  # every worker imported and connected before the clock starts
        procs = [ctx.Process(target=_process_worker, args=(str(path), args.seconds, k, start, queue))
                 for k in range(WORKERS)]
        for p in procs:
            p.start()
        total = sum(queue.get(timeout=120) for _ in procs)
        for p in procs:
            p.join()
        procs_rate = total / args.seconds

    p50_ms = statistics.median(latencies) * 1000
    result = {
        "entries": args.entries,
        "fill_s": round(fill_s, 2),
        "open_to_first_hit_cold_s": round(cold["first_hit_s"], 4),
        "open_cold_page_cache_evicted": cold["page_cache_evicted"],
        "open_to_first_hit_warm_s": round(warm["first_hit_s"], 4),
        "file_mb": round(file_mb, 1),
        "hit_p50_ms": round(p50_ms, 3),
        "hit_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
        "hits_per_s_8_threads": round(threads_rate),
        "hits_per_s_8_processes": round(procs_rate),
        "goals": {"hit_p50_le_1ms": p50_ms <= 1.0, "open_lt_1s": cold["first_hit_s"] < 1.0,
                  "ge_2000_hits_per_s_8_workers": min(threads_rate, procs_rate) >= 2000},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
