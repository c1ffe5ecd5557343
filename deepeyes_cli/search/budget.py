"""Paid-call budgets shared by every worker that uses the same cache file (or the same server).

Each paid upstream search is a row in the cache's ``calls`` ledger, written inside a
``BEGIN IMMEDIATE`` transaction that first counts what is already there, so two processes
can never both take the last slot. Limits:

* ``max_calls_per_run``: rows of this run that did not fail (a failed call is not billed);
  a spent budget fails at once.
* ``max_calls_per_minute``: rows of the last 60 s, every run together (the API key's
  throughput); a call waits up to ``max_wait_s`` for a slot, then fails.

A row is ``pending`` while its call runs, then ``ok`` or ``error``. A call cut short by
Ctrl-C becomes ``interrupted``, and one whose worker was killed (its pid gone on this host)
becomes ``lost`` when the next worker opens the file: both keep counting against the run,
because SerpAPI may have billed a search whose answer we never read.
"""

from __future__ import annotations

import os
import time
import uuid

from deepeyes_cli.errors import SearchError
from deepeyes_cli.search.cache import HOST, SearchCache, holder_alive
from deepeyes_cli.search.config import BudgetConfig


def default_run_id(configured: str | None) -> str:
    return configured or os.environ.get("DEEPEYES_RUN_ID") or f"proc-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class BudgetSpent(SearchError):
    """No paid call may be made now (run budget spent, or no per-minute slot in time)."""


class Budget:
    def __init__(self, cache: SearchCache, config: BudgetConfig, run_id: str) -> None:
        self.cache = cache
        self.config = config
        self.run_id = run_id

    def reserve(self, backend: str, key: str, run_id: str | None = None) -> int:
        """Take one paid-call slot; returns the ledger row to settle. Raises :class:`BudgetSpent`."""
        run = run_id or self.run_id
        per_run, per_minute = self.config.max_calls_per_run, self.config.max_calls_per_minute
        deadline = time.monotonic() + self.config.max_wait_s
        while True:
            now = time.time()
            wait = 0.0
            with self.cache.write() as conn:
                if per_run is not None:
                    used = conn.execute("SELECT COUNT(*) FROM calls WHERE run_id=? AND status!='error'",
                                        (run,)).fetchone()[0]
                    if used >= per_run:
                        raise BudgetSpent(f"search budget spent ({used} of {per_run} paid calls in run {run})",
                                          hint="raise search.budget.max_calls_per_run, or replay from the cache")
                if per_minute is not None:
                    recent, oldest = conn.execute("SELECT COUNT(*), MIN(ts) FROM calls WHERE ts > ?",
                                                  (now - 60,)).fetchone()
                    if recent >= per_minute:
                        wait = max(0.01, oldest + 60 - now)
                if not wait:
                    cur = conn.execute("INSERT INTO calls(ts, run_id, backend, key, cost, status, pid, host) "
                                       "VALUES(?,?,?,?,0,'pending',?,?)", (now, run, backend, key, os.getpid(), HOST))
                    return int(cur.lastrowid or 0)
            if time.monotonic() + min(wait, 0.25) > deadline:
                raise BudgetSpent(f"search rate limit reached ({per_minute} paid calls per minute)",
                                  hint="raise search.budget.max_calls_per_minute or search.budget.max_wait_s")
            time.sleep(min(wait, 0.25))

    def settle(self, call_id: int, status: str, cost: float) -> None:
        """``status``: ok, error (not billed) or interrupted (may have been billed)."""
        with self.cache.write() as conn:
            conn.execute("UPDATE calls SET status=?, cost=? WHERE id=?", (status, cost, call_id))

    def settle_abandoned(self) -> int:
        """Mark ``lost`` the pending calls of workers on this host that no longer exist."""
        conn = self.cache.connection()
        pids = [pid for (pid,) in conn.execute("SELECT DISTINCT pid FROM calls WHERE status='pending' AND host=?",
                                               (HOST,)) if not holder_alive(pid, HOST)]
        if not pids:
            return 0
        with self.cache.write() as conn:
            return sum(conn.execute("UPDATE calls SET status='lost' WHERE status='pending' AND host=? AND pid=?",
                                    (HOST, pid)).rowcount for pid in pids)

    def used(self, run_id: str | None = None) -> dict[str, float]:
        run = run_id or self.run_id
        n, cost = self.cache.connection().execute(
            "SELECT COUNT(*), COALESCE(SUM(cost), 0) FROM calls WHERE run_id=? AND status!='error'",
            (run,)).fetchone()
        return {"paid_calls": n, "cost": cost}
