"""Single-flight in one process: a success is shared, a failure is the leader's own and one
waiter at a time tries again (README: "If the leader fails, the request is tried again by
one waiter at a time")."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from deepeyes_cli.search.cache import SearchCache
from deepeyes_cli.search.flight import Leases, SingleFlight


class Upstream:
    """Counts calls and how many run at once; ``fail`` of the first calls raise."""

    def __init__(self, fail: int = 0, hold: threading.Event | None = None) -> None:
        self.fail = fail
        self.hold = hold
        self.holds: dict[int, threading.Event] = {}  # call number -> held until set
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            self.calls += 1
            n = self.calls
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.entered.set()
        try:
            if self.hold is not None and n == 1:
                assert self.hold.wait(30)
            if n in self.holds:
                assert self.holds[n].wait(30)
            if n <= self.fail:
                raise RuntimeError(f"upstream failed (call {n})")
            return f"answer of call {n}"
        finally:
            with self._lock:
                self.running -= 1


def _waiters_blocked(flight: SingleFlight, key: str, n: int, timeout: float = 30) -> None:
    """Wait until ``n`` threads are waiting on the flight of ``key`` (the condition itself, no guessed delay)."""
    deadline = time.monotonic() + timeout
    while True:
        with flight._lock:
            future = flight._calls.get(key)
        waiting = len(future._condition._waiters) if future is not None else 0  # type: ignore[attr-defined]
        if waiting >= n:
            return
        assert time.monotonic() < deadline, f"only {waiting} of {n} callers are waiting"
        time.sleep(0.005)


def _run_overlapping(flight: SingleFlight, upstream: Upstream, waiters: int,
                     second: bool = False) -> tuple[Any, list[Any]]:
    """A leader enters ``upstream`` and is held there until ``waiters`` callers wait on it;
    with ``second``, so is the second call, until the other ``waiters - 1`` wait on it."""
    hold = threading.Event()
    upstream.hold = hold
    release_second = upstream.holds[2] = threading.Event()
    if not second:
        release_second.set()

    def call() -> Any:
        try:
            return flight.do("k", upstream)
        except RuntimeError as e:
            return e

    with ThreadPoolExecutor(waiters + 1) as pool:
        leader = pool.submit(call)
        assert upstream.entered.wait(30)
        rest = [pool.submit(call) for _ in range(waiters)]
        _waiters_blocked(flight, "k", waiters)
        hold.set()
        if second:
            deadline = time.monotonic() + 30
            while upstream.calls < 2:
                assert time.monotonic() < deadline, "no waiter took over the failed call"
                time.sleep(0.005)
            _waiters_blocked(flight, "k", waiters - 1)
            release_second.set()
        return leader.result(30), [f.result(30) for f in rest]


def test_overlapping_callers_share_one_success() -> None:
    flight, upstream = SingleFlight(), Upstream()
    leader, rest = _run_overlapping(flight, upstream, waiters=4)
    assert leader == ("answer of call 1", False)
    assert rest == [("answer of call 1", True)] * 4
    assert upstream.calls == 1


def test_a_failed_leader_is_retried_by_one_waiter_at_a_time() -> None:
    flight, upstream = SingleFlight(), Upstream(fail=1)
    leader, rest = _run_overlapping(flight, upstream, waiters=4, second=True)
    assert isinstance(leader, RuntimeError) and "call 1" in str(leader)  # the leader's own error ...
    # ... is not handed to the waiters: one of them asks again and the others share its answer
    assert sorted(rest, key=str) == sorted([("answer of call 2", False)] + [("answer of call 2", True)] * 3, key=str)
    assert upstream.calls == 2 and upstream.most_at_once == 1


def test_a_key_that_keeps_failing_is_asked_once_per_caller_never_two_at_once() -> None:
    flight, upstream = SingleFlight(), Upstream(fail=100)
    leader, rest = _run_overlapping(flight, upstream, waiters=3)
    errors = [leader, *rest]
    assert all(isinstance(e, RuntimeError) for e in errors)
    assert sorted(str(e) for e in errors) == [f"upstream failed (call {n})" for n in range(1, 5)]  # each its own
    assert upstream.calls == 4 and upstream.most_at_once == 1


def test_the_key_is_free_again_after_a_flight() -> None:
    flight = SingleFlight()
    assert flight.do("k", lambda: 1) == (1, False)
    with pytest.raises(ValueError):
        flight.do("k", lambda: (_ for _ in ()).throw(ValueError("x")))
    assert flight.do("k", lambda: 2) == (2, False)  # neither a success nor a failure sticks
    assert flight.do("other", lambda: 3) == (3, False) and not flight._calls


def test_different_keys_do_not_wait_on_each_other() -> None:
    flight, hold = SingleFlight(), threading.Event()
    slow = Upstream(hold=hold)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(flight.do, "a", slow)
        assert slow.entered.wait(30)
        assert flight.do("b", lambda: "b") == ("b", False)  # while "a" is still in flight
        hold.set()
        assert first.result(30) == ("answer of call 1", False)


# ---------------------------------------------------------------- Leases (across processes)

def _keepers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "search-leases" and t.is_alive())


class _StaleReader(Leases):
    """A holder whose lock-free pre-check read an old state: only the check inside the write
    transaction stands between two owners (the race of two processes on one key)."""

    def claimed_by_other(self, key: str, owner: str) -> bool:
        return False


def test_an_owner_may_take_its_own_lease_again_and_others_may_not(tmp_path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    reader = Leases(cache, ttl_s=60)
    for leases in (Leases(cache, ttl_s=60), _StaleReader(cache, ttl_s=60)):
        assert leases.try_acquire("k", "a") and leases.try_acquire("k", "a")  # renewing one's own claim
        assert not reader.claimed_by_other("k", "a") and reader.claimed_by_other("k", "b")
        assert not leases.try_acquire("k", "b")  # refused inside the transaction too
        assert cache.connection().execute("SELECT owner FROM leases WHERE key='k'").fetchone() == ("a",)
        leases.release("k", "a")
        assert not leases.held("k")
        leases.close()
    reader.close()


def test_one_keeper_thread_however_many_claims_and_none_after_close(tmp_path) -> None:
    before = _keepers()
    leases = Leases(SearchCache(tmp_path / "c.sqlite"), ttl_s=60)
    assert leases.try_acquire("a", "o") and leases.try_acquire("b", "o") and leases.try_acquire("c", "p")
    assert _keepers() == before + 1
    leases.close()
    assert _keepers() == before  # close() waited for it
    assert leases.try_acquire("d", "o")  # a search still running after close() ...
    assert _keepers() == before  # ... does not start it again
    assert leases.renew() == 4  # what is held can still be renewed by hand


def test_renew_pushes_back_exactly_the_claims_still_held(tmp_path) -> None:
    import time as _time

    cache = SearchCache(tmp_path / "c.sqlite")
    leases = Leases(cache, ttl_s=600)
    assert leases.renew() == 0  # nothing held
    assert leases.try_acquire("a", "o") and leases.try_acquire("b", "o")

    def expiry(key: str) -> float:
        return float(cache.connection().execute("SELECT expires FROM leases WHERE key=?", (key,)).fetchone()[0])

    with cache.write() as conn:  # as if the claims were about to lapse
        conn.execute("UPDATE leases SET expires=?", (_time.time() + 1,))
    assert leases.renew() == 2
    assert expiry("a") > _time.time() + 500 and expiry("b") > _time.time() + 500
    leases.release("a", "o")
    leases.release("b", "someone else")  # not its owner: nothing happens
    assert leases.renew() == 1 and leases.held("b") and not leases.held("a")
    leases.close()
