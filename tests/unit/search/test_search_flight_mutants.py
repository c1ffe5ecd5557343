"""Leases corners the mutation run of ``search/flight.py`` found untested: the instant a
claim lapses, and a waiter that must not need the write lock to learn a key is taken."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from deepeyes_cli.search import flight
from deepeyes_cli.search.cache import SearchCache
from deepeyes_cli.search.flight import Leases


def test_a_claim_is_free_from_the_instant_it_expires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    holder, other = Leases(cache, ttl_s=60), Leases(cache, ttl_s=60)
    clock = SimpleNamespace(time=lambda: 1000.0)
    monkeypatch.setattr(flight, "time", clock)
    assert holder.try_acquire("k", "a")  # expires at 1060 exactly
    clock.time = lambda: 1059.999
    assert other.claimed_by_other("k", "b") and not other.try_acquire("k", "b")
    clock.time = lambda: 1060.0  # the expiry instant itself: no longer a claim
    assert not other.claimed_by_other("k", "b")
    assert other.try_acquire("k", "b")
    assert cache.connection().execute("SELECT owner, expires FROM leases WHERE key='k'").fetchone() == ("b", 1120.0)
    holder.close()
    other.close()


def test_a_waiter_learns_a_key_is_taken_without_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    holder = Leases(SearchCache(path), ttl_s=60)
    assert holder.try_acquire("k", "a")
    waiter = Leases(SearchCache(path, busy_timeout_s=0.2), ttl_s=60)
    writer = sqlite3.connect(str(path), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process is writing answers right now
    try:
        assert not waiter.try_acquire("k", "b")  # answered from a read: no "database is locked"
        with pytest.raises(Exception, match="locked"):  # a free key does need the write lock
            waiter.try_acquire("free", "b")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert waiter.try_acquire("free", "b")
    holder.close()
    waiter.close()


class _RecordingStop(threading.Event):
    """The keeper's stop event, recording how long each round waits; set after ``rounds``."""

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.rounds = rounds
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if len(self.waits) >= self.rounds:
            self.set()
        return super().wait(0.001 if timeout is not None else None)


@pytest.mark.parametrize(("ttl", "every"), [(60.0, 15.0), (0.1, 0.05)], ids=["quarter-ttl", "floor"])
def test_the_keeper_renews_every_quarter_ttl_and_not_more_often_than_20_times_a_second(
        tmp_path: Path, ttl: float, every: float) -> None:
    leases = Leases(SearchCache(tmp_path / "c.sqlite"), ttl_s=ttl)
    stop = leases._stop = _RecordingStop(rounds=3)
    assert leases.try_acquire("k", "a")
    assert leases._keeper is not None
    leases._keeper.join(30)
    assert stop.waits == [every] * 3
    leases.close()


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_failed_renewal_is_logged_and_the_next_round_renews(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.sqlite"
    cache = SearchCache(path, busy_timeout_s=0.05)
    caplog.set_level(logging.WARNING, logger="deepeyes_cli.search.flight")
    leases = Leases(cache, ttl_s=0.4)  # a round every 0.1 s
    assert leases.try_acquire("k", "a")

    def expiry() -> float:
        return float(cache.connection().execute("SELECT expires FROM leases WHERE key='k'").fetchone()[0])

    writer = sqlite3.connect(str(path), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the file stays busy for longer than the busy timeout
    try:
        _wait_for(lambda: bool(caplog.records), "no warning about the failed renewal")
        stuck = expiry()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    record = caplog.records[0]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"could not renew search leases in {path}"
    assert record.exc_info is not None and record.exc_info[0] is sqlite3.OperationalError  # the traceback too
    _wait_for(lambda: expiry() > stuck, "the keeper stopped renewing after one failure")
    leases.close()
