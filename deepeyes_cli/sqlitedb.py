"""SQLite connections in WAL mode, shared by the search cache and the judge cache.

Several processes opening a new file at once (rollout or reward workers starting together)
can get "database is locked" at once instead of waiting: switching the journal mode to WAL
is a lock upgrade SQLite refuses rather than risk a deadlock, so its busy timeout does not
apply. The whole opening step is retried with a little jitter until ``timeout_s``.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path


def connect_wal(path: str | Path, timeout_s: float,
                init: Callable[[sqlite3.Connection], object] | None = None) -> sqlite3.Connection:
    """A connection in autocommit mode with WAL and ``synchronous=NORMAL``; ``init`` (creating
    tables, say) runs inside the same retried step."""
    deadline = time.monotonic() + timeout_s
    while True:
        conn = sqlite3.connect(str(path), timeout=timeout_s, check_same_thread=False, isolation_level=None)
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":  # WAL persists in the file
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if init is not None:
                init(conn)
            return conn
        except sqlite3.OperationalError as e:
            conn.close()
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.01, 0.05))
        except BaseException:
            conn.close()
            raise
