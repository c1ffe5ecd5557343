"""SearchCache corners the mutation run of ``search/cache.py`` found untested: entry fields
read back one by one, ledger statistics, errors with their hints, schema upgrades, fork, and
holders on other hosts."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepeyes_cli.errors import SearchError
from deepeyes_cli.search.cache import HOST, CacheEntry, SearchCache, holder_alive
from deepeyes_cli.search.types import Hit


def _entry(key: str = "k1", created: float = 1234.5) -> CacheEntry:
    return CacheEntry(key, "serpapi", "image", "subject-hash", {"b": 1, "a": 2},
                      [Hit("t", "https://x.example", snippet="s")], "shown", created, 0.5, 0.25,
                      raw={"answer": "中文"})


def test_get_returns_every_field_as_stored(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    cache.put(_entry())
    got = cache.get("k1")
    assert got is not None
    assert (got.key, got.backend, got.kind, got.subject, got.created) == ("k1", "serpapi", "image", "subject-hash",
                                                                            1234.5)
    assert list(got.params) == ["a", "b"]  # stored in one canonical (sorted) order


def test_listed_entries_carry_their_creation_time(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    cache.put(_entry("k1", 1000.0))
    cache.put(_entry("k2", 2000.0))
    for with_raw in (True, False):
        listed = list(cache.iter_entries(with_raw=with_raw))
        assert [(e.key, e.created) for e in listed] == [("k1", 1000.0), ("k2", 2000.0)]
        assert [e.raw for e in listed] == ([{"answer": "中文"}] * 2 if with_raw else [None, None])


def test_the_cache_can_be_used_again_after_close(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    cache.put(_entry())
    cache.close()
    assert cache.get("k1") is not None  # a fresh connection is opened on demand
    cache.close()


def test_a_cache_path_in_new_nested_folders_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.sqlite"
    SearchCache(path).put(_entry())
    assert SearchCache(path).get("k1") is not None


def test_a_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SearchError) as err:
        SearchCache(blocker / "c.sqlite")
    assert str(err.value) == f"cannot create {blocker}: File exists"
    assert err.value.hint == "set search.cache.path to a writable file"


def test_a_file_that_is_not_sqlite_is_a_clear_error_with_its_hint(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(SearchError) as err:
        SearchCache(junk)
    assert str(err.value) == f"cannot open search cache {junk}: file is not a database"
    assert err.value.hint == "check the path and permissions; `deepeyes search cache stats` inspects it"


def test_a_sqlite_file_of_another_shape_is_a_clear_error_with_its_hint(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:  # someone else's database, with an "entries" view
        conn.execute("CREATE TABLE t(x)")
        conn.execute("CREATE VIEW entries AS SELECT x AS created FROM t")
    with pytest.raises(SearchError) as err:
        SearchCache(path)
    assert str(err.value) == f"{path} is not a usable search cache: views may not be indexed"
    assert err.value.hint == "move it away, or point search.cache.path at another file"


def test_a_file_with_the_current_ledger_but_an_older_table_set_is_completed(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    SearchCache(path).add_run_stats("r", {"calls": 1})
    with sqlite3.connect(path) as conn:  # as a release from before the run counters wrote it
        conn.execute("DROP TABLE run_stats")
    cache = SearchCache(path)  # the ledger already has pid and host: nothing to add twice
    cache.add_run_stats("r", {"calls": 2})
    assert cache.run_stats() == {"r": {"calls": 2.0}}


def test_a_forked_worker_opens_its_own_connection(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    cache.put(_entry("parent"))
    pid = os.fork()
    if pid == 0:  # the child: the parent's connection must not be used, a new one works
        code = 1
        try:
            cache.put(_entry("child"))
            code = 0 if cache.get("parent") is not None else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get("child") is not None  # the parent's connection still works too


def test_holders_are_alive_unless_known_dead_on_this_host() -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead = int(proc.stdout)
    assert holder_alive(os.getpid(), HOST)
    assert not holder_alive(dead, HOST)
    assert holder_alive(dead, "another-host")  # another host's pid cannot be checked from here
    assert holder_alive(None, HOST) and holder_alive(None, None)  # a row from before pids were kept


def _ledger(cache: SearchCache, rows: list[tuple[float, float, str]]) -> None:
    with cache.write() as conn:
        conn.executemany("INSERT INTO calls(ts, run_id, backend, key, cost, status) VALUES(?, 'r', 'serpapi', 'k', ?, ?)",
                         rows)


def test_stats_of_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = SearchCache(path)
    now = time.time()
    _ledger(cache, [(now - 3600, 0.01, "ok"), (now - 60.5, 0.02, "error"), (now - 59, 0.04, "ok"),
                    (now - 1, 0.08, "pending"), (now - 3000, 0.16, "lost")])
    stats = cache.stats()
    assert stats["path"] == str(path)
    assert stats["paid_calls"] == 5 and stats["paid_cost"] == pytest.approx(0.31)
    assert stats["failed_calls"] == 1 and stats["unsettled_calls"] == 2  # pending and lost; error is settled
    assert stats["calls_last_minute"] == 2  # 59 s and 1 s ago; 60.5 s ago is out


def test_run_stats_of_every_run_and_of_one(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    cache.add_run_stats("r1", {"calls": 1})
    cache.add_run_stats("r2", {"calls": 2, "hits": 0})  # a zero is not written
    assert cache.run_stats() == {"r1": {"calls": 1.0}, "r2": {"calls": 2.0}}
    assert cache.run_stats("r2") == {"r2": {"calls": 2.0}}


def test_vacuum_keeps_the_answers_and_gives_back_pruned_space(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = SearchCache(path)
    for i in range(200):
        cache.put(CacheEntry(f"k{i}", "serpapi", "text", "q", {}, [], "x" * 2000, float(i)))
    cache.put(_entry("keep", created=time.time()))
    cache.prune(older_than_s=3600)
    cache.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = path.stat().st_size
    cache.vacuum()
    cache.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.stat().st_size < before / 2
    assert cache.get("keep") is not None and cache.integrity_ok()
