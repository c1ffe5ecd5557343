"""SearchCache, leases, budgets, prune, import/export (including the original release's layout)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from deepeyes_cli.errors import InputError
from deepeyes_cli.search.budget import Budget, BudgetSpent
from deepeyes_cli.search.cache import CacheEntry, SearchCache
from deepeyes_cli.search.config import BudgetConfig
from deepeyes_cli.search.flight import Leases
from deepeyes_cli.search.transfer import export_jsonl, import_jsonl, import_original, sniff_format
from deepeyes_cli.search.types import Hit, cache_key, sample_cache_key, sha256_bytes


def _entry(query: str, created: float | None = None, thumb: str | None = None, backend: str = "serpapi") -> CacheEntry:
    key = cache_key(backend, "text", query, {"engine": "google"})
    return CacheEntry(key, backend, "text", query, {"engine": "google"},
                      [Hit("t", "https://x.example", snippet="s", thumbnail=thumb)], "shown",
                      created or time.time(), 1.0, 0.2, raw={"organic_results": [{"title": "t"}]})


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buf, format="JPEG")
    return buf.getvalue()


def test_round_trip_and_wal(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    thumb = _jpeg((1, 2, 3))
    entry = _entry("q", thumb=sha256_bytes(thumb))
    cache.put(entry, {sha256_bytes(thumb): thumb})
    got = cache.get(entry.key)
    assert got is not None and got.hits == entry.hits and got.params == {"engine": "google"} and got.cost == 1.0
    assert cache.get_blobs([sha256_bytes(thumb)]) == {sha256_bytes(thumb): thumb}
    assert cache.get("missing") is None
    assert cache.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cache.close()
    again = SearchCache(tmp_path / "c.sqlite")  # reopening an existing file keeps its answers
    assert again.get(entry.key) is not None and again.integrity_ok()


def test_lease_has_one_owner_and_ends_with_its_process(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    leases, other = Leases(cache, ttl_s=60), Leases(SearchCache(tmp_path / "c.sqlite"), ttl_s=60)
    assert leases.try_acquire("k", "a")
    assert not other.try_acquire("k", "b") and other.claimed_by_other("k", "b")
    leases.release("k", "a")
    assert other.try_acquire("k", "b")
    lapsing = Leases(cache, ttl_s=-1)
    assert lapsing.try_acquire("expired", "a") and other.try_acquire("expired", "b")
    # A lease whose holder died (same host) is free at once, long before it expires.
    proc = subprocess.run([sys.executable, "-c", (
        "import sys; from deepeyes_cli.search.cache import SearchCache; from deepeyes_cli.search.flight import Leases; "
        f"assert Leases(SearchCache({str(tmp_path / 'c.sqlite')!r}), 3600).try_acquire('dead', 'gone')")],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert leases.held("dead") and not leases.claimed_by_other("dead", "c")
    assert leases.try_acquire("dead", "c")
    for holder in (leases, other, lapsing):
        holder.close()


def test_a_held_lease_is_renewed_while_its_call_runs(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    leases = Leases(cache, ttl_s=0.4)  # renewed every 0.1 s by the keeper thread
    assert leases.try_acquire("slow", "leader")
    expiry = cache.connection().execute("SELECT expires FROM leases").fetchone()[0]
    deadline = time.monotonic() + 30
    while cache.connection().execute("SELECT expires FROM leases").fetchone()[0] == expiry:
        assert time.monotonic() < deadline, "the keeper never renewed the lease"
        time.sleep(0.05)
    assert leases.renew() == 1  # and by hand: one claim held
    other = Leases(SearchCache(tmp_path / "c.sqlite"), ttl_s=60)
    assert not other.try_acquire("slow", "follower")  # renewed, so still the leader's
    leases.release("slow", "leader")
    assert leases.renew() == 0 and other.try_acquire("slow", "follower")
    leases.close()
    other.close()


def test_run_budget_counts_successes_and_is_shared(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    budget = Budget(cache, BudgetConfig(max_calls_per_run=2), "run-a")
    first = budget.reserve("serpapi", "k1")
    budget.settle(first, "error", cost=0.0)  # a failed call is not billed
    for key in ("k2", "k3"):
        budget.settle(budget.reserve("serpapi", key), "ok", cost=1.0)
    other_worker = Budget(SearchCache(tmp_path / "c.sqlite"), BudgetConfig(max_calls_per_run=2), "run-a")
    with pytest.raises(BudgetSpent, match="2 of 2"):
        other_worker.reserve("serpapi", "k4")
    Budget(cache, BudgetConfig(max_calls_per_run=2), "run-b").reserve("serpapi", "k4")  # another run is unaffected
    assert budget.used() == {"paid_calls": 2, "cost": 2.0}


def test_per_minute_limit_waits_then_refuses(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    budget = Budget(cache, BudgetConfig(max_calls_per_minute=2, max_wait_s=0.3), "r")
    budget.reserve("serpapi", "a")
    budget.reserve("serpapi", "b")
    start = time.monotonic()
    with pytest.raises(BudgetSpent, match="per minute"):
        budget.reserve("serpapi", "c")
    assert 0.2 < time.monotonic() - start < 5
    # Slots older than a minute free up: age the ledger and try again.
    with cache.write() as conn:
        conn.execute("UPDATE calls SET ts = ts - 61")
    budget.reserve("serpapi", "c")


def test_prune_by_age_and_orphan_thumbnails(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    old_thumb, new_thumb = _jpeg((9, 9, 9)), _jpeg((200, 0, 0))
    cache.put(_entry("old", created=time.time() - 10 * 86400, thumb=sha256_bytes(old_thumb)),
              {sha256_bytes(old_thumb): old_thumb})
    cache.put(_entry("new", thumb=sha256_bytes(new_thumb)), {sha256_bytes(new_thumb): new_thumb})
    assert cache.prune(ledger_older_than_s=3600)["entries"] == 0  # no answer filter: answers stay
    counts = cache.prune(older_than_s=86400)
    assert counts["entries"] == 1 and counts["blobs"] == 1
    assert cache.get(_entry("new").key) is not None and cache.get(_entry("old").key) is None
    assert cache.get_blobs([sha256_bytes(new_thumb)])
    assert cache.prune(backend="serpapi")["entries"] == 1 and cache.stats()["entries"] == 0


def test_jsonl_export_import_round_trip(tmp_path: Path) -> None:
    src = SearchCache(tmp_path / "a.sqlite")
    thumb = _jpeg((0, 128, 0))
    src.put(_entry("shared query", thumb=sha256_bytes(thumb)), {sha256_bytes(thumb): thumb})
    src.put(_entry("other", backend="local"))
    buf = io.StringIO()
    assert export_jsonl(src, buf) == 2
    dump = tmp_path / "dump.jsonl"
    dump.write_text(buf.getvalue())
    row = json.loads(buf.getvalue().splitlines()[0])
    assert row["format"] == "deepeyes-search-cache" and row["thumbnails"] and row["raw"]
    assert sniff_format(dump) == "jsonl"
    dst = SearchCache(tmp_path / "b.sqlite")
    assert import_jsonl(dst, dump) == {"imported": 2, "skipped": 0}
    assert import_jsonl(dst, dump) == {"imported": 0, "skipped": 2}
    got = dst.get(_entry("shared query").key)
    assert got is not None and got.hits[0].thumbnail == sha256_bytes(thumb)
    assert dst.get_blobs([sha256_bytes(thumb)]) == {sha256_bytes(thumb): thumb}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "text"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1"):
        import_jsonl(dst, bad)


def test_import_original_release_layout(tmp_path: Path) -> None:
    images = tmp_path / "cached_images"
    images.mkdir()
    (images / "a.jpg").write_bytes(_jpeg((255, 0, 0)))
    (images / "b.jpg").write_bytes(_jpeg((0, 0, 255)))
    original = {
        "fvqa_train_0": {"tool_returned_web_title": ["Red page", "Missing page", "Blue page"],
                         "cached_images_path": ["/abs/elsewhere/cached_images/a.jpg", None, "cached_images/b.jpg"]},
        "fvqa_train_1": {"tool_returned_web_title": [], "cached_images_path": []},
    }
    src = tmp_path / "cache.json"
    src.write_text(json.dumps(original))
    assert sniff_format(src) == "original"
    cache = SearchCache(tmp_path / "c.sqlite")
    counts = import_original(cache, src, images_root=tmp_path)
    assert counts == {"imported": 2, "skipped": 0, "missing_images": 1}
    entry = cache.get(sample_cache_key("fvqa_train_0"))
    assert entry is not None and [h.title for h in entry.hits] == ["Red page", "Missing page", "Blue page"]
    assert [h.thumbnail is not None for h in entry.hits] == [True, False, True]
    assert entry.shown.count("<image>") == 2 and "[Blue page]" in entry.shown
    # The same images inside a zip (as released: cached_images/train.zip) work too.
    with zipfile.ZipFile(tmp_path / "train.zip", "w") as z:
        z.write(images / "a.jpg", "train/a.jpg")
    zipped = SearchCache(tmp_path / "z.sqlite")
    assert import_original(zipped, src, images_root=tmp_path / "train.zip")["missing_images"] == 2


def test_run_stats_add_up_across_writers(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    cache.add_run_stats("r", {"calls": 2, "hits": 1})
    SearchCache(tmp_path / "c.sqlite").add_run_stats("r", {"calls": 3})
    assert cache.run_stats("r") == {"r": {"calls": 5.0, "hits": 1.0}}


def test_a_file_that_is_not_a_cache_is_a_clear_error(tmp_path: Path) -> None:
    from deepeyes_cli.errors import SearchError

    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(SearchError, match="not a usable search cache|cannot open search cache"):
        SearchCache(junk)


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    """A server whose worker threads come and go (anyio retires idle ones) must not pile up file handles."""
    import os
    import threading

    cache = SearchCache(tmp_path / "c.sqlite")
    cache.put(_entry("q"))

    def one_read() -> None:
        assert cache.get(_entry("q").key) is not None

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    for _ in range(3):  # warm up: the first threads open what every later one reuses
        t = threading.Thread(target=one_read)
        t.start()
        t.join()
    before = fds()
    for _ in range(40):
        t = threading.Thread(target=one_read)
        t.start()
        t.join()
    assert cache.open_connections() <= 2  # this thread's and the last worker's
    assert fds() - before <= 3
    cache.close()
    assert cache.open_connections() == 0


def test_paid_calls_left_pending_by_a_dead_worker_are_settled_as_lost(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    proc = subprocess.run([sys.executable, "-c", (
        "import os, sys; from deepeyes_cli.search.budget import Budget; "
        "from deepeyes_cli.search.cache import SearchCache; from deepeyes_cli.search.config import BudgetConfig; "
        f"Budget(SearchCache({str(path)!r}), BudgetConfig(), 'r').reserve('serpapi', 'k'); os._exit(0)")],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    cache = SearchCache(path)
    budget = Budget(cache, BudgetConfig(max_calls_per_run=2), "r")
    mine = budget.reserve("serpapi", "k2")  # in flight in this (live) process: left alone
    assert budget.settle_abandoned() == 1 and budget.settle_abandoned() == 0
    statuses = dict(cache.connection().execute("SELECT key, status FROM calls"))
    assert statuses == {"k": "lost", "k2": "pending"}
    budget.settle(mine, "interrupted", cost=0.0)  # Ctrl-C mid-call
    assert budget.used()["paid_calls"] == 2  # both may have been billed: both count
    with pytest.raises(BudgetSpent):
        budget.reserve("serpapi", "k3")
    assert cache.stats()["unsettled_calls"] == 2


def test_a_cache_from_before_the_ledger_knew_its_workers_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE calls(id INTEGER PRIMARY KEY, ts REAL NOT NULL, run_id TEXT NOT NULL, "
                     "backend TEXT, key TEXT, cost REAL NOT NULL DEFAULT 0, status TEXT NOT NULL)")
        conn.execute("INSERT INTO calls(ts, run_id, status) VALUES(1, 'r', 'ok')")
    cache = SearchCache(path)
    columns = {row[1] for row in cache.connection().execute("PRAGMA table_info(calls)")}
    assert {"pid", "host"} <= columns
    Budget(cache, BudgetConfig(), "r").reserve("serpapi", "k")
    assert cache.stats()["paid_calls"] == 2
