"""Single-flight: identical requests that overlap in time make one upstream call.

* In one process, ``SingleFlight``: the first caller of a key runs the call, overlapping
  callers wait on its future and share its answer; if it fails, one waiter at a time tries again.
* Across the processes sharing a cache file, ``Leases``: a row in the file's ``leases``
  table claims a key. Its holder renews the claim from a background thread every
  ``ttl/4`` for as long as its call runs, so a slow upstream call (time-outs, retries,
  backoff) is never mistaken for a dead worker and asked twice. A claim is free as soon as
  it is released, as soon as its holder's pid is gone (same host: ``kill -9``), or when it
  has not been renewed for ``ttl`` seconds (a holder on another host that died; SQLite on a
  network filesystem is not supported anyway).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from deepeyes_cli.search.cache import HOST, SearchCache, holder_alive

log = logging.getLogger(__name__)
T = TypeVar("T")


class SingleFlight:
    """In-process: the first caller of a key runs ``fn``; overlapping callers wait for its result.

    If the leader fails, its error is its own: one waiter becomes the next leader and tries
    again while the others keep waiting, so a failing key is asked at most once at a time
    (as across processes, where a follower takes the lease over). Every caller either
    shares a success or makes one call of its own and gets its own error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, Future[Any]] = {}

    def do(self, key: str, fn: Callable[[], T]) -> tuple[T, bool]:
        """Returns (result, shared): ``shared`` is True for callers that waited on another's call."""
        while True:
            with self._lock:
                future = self._calls.get(key)
                leader = future is None
                if future is None:
                    future = self._calls[key] = Future()
            if leader:
                break
            try:
                return future.result(), True
            except BaseException:  # the leader's failure: take a turn as the next leader
                continue
        try:
            result = fn()
        except BaseException as e:
            with self._lock:
                del self._calls[key]
            future.set_exception(e)
            raise
        future.set_result(result)  # before the key is free: a caller arriving now shares it too
        with self._lock:
            del self._calls[key]
        return result, False


class Leases:
    """Claims on cache keys shared by every process using one cache file."""

    def __init__(self, cache: SearchCache, ttl_s: float) -> None:
        self.cache = cache
        self.ttl_s = ttl_s
        self._held: dict[str, str] = {}  # key -> owner, for the keeper to renew
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        # a search still running after close() must not restart the keeper (no mutate: None is as falsy)
        self._closed = False  # pragma: no mutate

    def claimed_by_other(self, key: str, owner: str) -> bool:
        """A read (no write lock): is ``key`` claimed by a live holder other than ``owner``?"""
        row = self.cache.connection().execute("SELECT owner, pid, host, expires FROM leases WHERE key=?",
                                              (key,)).fetchone()
        return row is not None and row[0] != owner and row[3] > time.time() and holder_alive(row[1], row[2])

    def try_acquire(self, key: str, owner: str) -> bool:
        if self.claimed_by_other(key, owner):  # the common case while waiting: no write transaction
            return False
        now = time.time()
        with self.cache.write() as conn:
            row = conn.execute("SELECT owner, pid, host, expires FROM leases WHERE key=?", (key,)).fetchone()
            if row is not None and row[0] != owner and row[3] > now and holder_alive(row[1], row[2]):
                return False
            conn.execute("INSERT OR REPLACE INTO leases(key, owner, pid, host, expires) VALUES(?,?,?,?,?)",
                         (key, owner, os.getpid(), HOST, now + self.ttl_s))
        with self._lock:
            self._held[key] = owner
            self._start_keeper()
        return True

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            if self._held.get(key) == owner:
                del self._held[key]
        with self.cache.write() as conn:
            conn.execute("DELETE FROM leases WHERE key=? AND owner=?", (key, owner))

    def held(self, key: str) -> bool:
        return self.cache.connection().execute("SELECT 1 FROM leases WHERE key=?", (key,)).fetchone() is not None

    def renew(self) -> int:
        """Push back the expiry of every claim this process holds; returns how many were renewed."""
        with self._lock:
            held = list(self._held.items())
        if not held:
            return 0
        expires = time.time() + self.ttl_s
        with self.cache.write() as conn:
            conn.executemany("UPDATE leases SET expires=? WHERE key=? AND owner=?",
                             [(expires, key, owner) for key, owner in held])
        return len(held)

    def close(self) -> None:
        with self._lock:
            # no mutate: a keeper started after close() would exit at once (``_stop`` is set), so
            # None/False here only cost a thread that ends immediately, nothing a caller sees
            self._closed = True  # pragma: no mutate
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=5)  # pragma: no mutate (it stops at once: any bound will do)

    def _start_keeper(self) -> None:
        if not self._closed and (self._keeper is None or not self._keeper.is_alive()):
            self._keeper = threading.Thread(target=self._keep, name="search-leases", daemon=True)
            self._keeper.start()

    def _keep(self) -> None:
        while not self._stop.wait(max(self.ttl_s / 4, 0.05)):
            try:
                self.renew()
            except sqlite3.Error:  # a busy file: the next round tries again, well before the claims lapse
                log.warning("could not renew search leases in %s", self.cache.path, exc_info=True)
