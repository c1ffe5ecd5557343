"""``SearchCache``: one SQLite file holding answers, thumbnails, in-flight leases and the paid-call ledger.

Why SQLite in WAL mode: many rollout worker processes on one node read it at once while
one writes, and a writer killed with ``kill -9`` leaves at most an uncommitted transaction
that the next opener rolls back — never a torn file. ``synchronous=NORMAL`` keeps commits
cheap; a power cut may lose the last answers, not the file. SQLite on a network filesystem
is not safe: share a cache across nodes with ``deepeyes search serve`` instead.

Concurrency guarantees (see ``flight.py`` and ``budget.py`` for how they are used):

* one connection per live thread and per process (re-opened after ``fork``); the
  connection of a thread that ended is closed when the next thread opens one, so servers
  whose worker threads come and go (anyio retires idle ones) do not pile up file handles;
* the ``leases`` table holds one claim per key across every process on the node
  (``flight.Leases``); the ``calls`` ledger records who made each paid call (pid, host),
  so a call left ``pending`` by a killed worker can be told from one in flight.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import SearchError
from deepeyes_cli.procs import pid_alive
from deepeyes_cli.search.types import Hit
from deepeyes_cli.sqlitedb import connect_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries(
  key TEXT PRIMARY KEY, backend TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT, params TEXT NOT NULL,
  hits TEXT NOT NULL, shown TEXT NOT NULL, raw TEXT, created REAL NOT NULL,
  cost REAL NOT NULL DEFAULT 0, latency_s REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS entries_created ON entries(created);
CREATE TABLE IF NOT EXISTS blobs(sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS leases(key TEXT PRIMARY KEY, owner TEXT NOT NULL, pid INTEGER NOT NULL,
  host TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS calls(id INTEGER PRIMARY KEY, ts REAL NOT NULL, run_id TEXT NOT NULL,
  backend TEXT, key TEXT, cost REAL NOT NULL DEFAULT 0, status TEXT NOT NULL, pid INTEGER, host TEXT);
CREATE INDEX IF NOT EXISTS calls_ts ON calls(ts);
CREATE INDEX IF NOT EXISTS calls_run ON calls(run_id);
CREATE INDEX IF NOT EXISTS calls_pending ON calls(host, pid) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS run_stats(run_id TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL,
  PRIMARY KEY(run_id, name));
"""
_SCHEMA_NAMES = ("entries", "entries_created", "blobs", "leases", "calls", "calls_ts", "calls_run", "calls_pending",
                 "run_stats")
_ADDED_COLUMNS = {"calls": ("pid INTEGER", "host TEXT")}  # columns newer than the first schema
HOST = socket.gethostname()


@dataclass
class CacheEntry:
    key: str
    backend: str
    kind: str
    subject: str | None  # normalised query, or the image's content hash
    params: dict[str, Any]
    hits: list[Hit]
    shown: str  # the text the model was shown when the answer was recorded
    created: float
    cost: float = 0.0
    latency_s: float = 0.0
    raw: Any = None  # loaded only by iter_entries(with_raw=True)


def holder_alive(pid: int | None, host: str | None) -> bool:
    """Whether the process that wrote a lease or a ledger row may still be running (True when unknowable)."""
    if pid is None or host != HOST:
        return True
    return pid_alive(pid)


class SearchCache:
    # (no mutate: the default wait for a busy file; 61 s instead of 60 changes nothing one can see)
    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0) -> None:  # pragma: no mutate
        self.path = Path(path).expanduser()
        self._timeout = busy_timeout_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SearchError(f"cannot create {self.path.parent}: {e.strerror}",
                              hint="set search.cache.path to a writable file") from e
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        # (no mutate: None only makes the first _conn() below start from a fresh, equally empty state)
        self._pid = os.getpid()  # pragma: no mutate
        conn = self._conn()
        try:
            have = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            # a new file (or an older schema): create what is missing. (no mutate: "<" for "<=" is
            # equivalent, the file always holds more names, e.g. sqlite_autoindex_entries_1, and the
            # schema statements are idempotent anyway)
            if not set(_SCHEMA_NAMES) <= have:  # pragma: no mutate
                with self._write():
                    for table, columns in _ADDED_COLUMNS.items():
                        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                        for column in columns:
                            if present and column.split()[0] not in present:
                                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
                    for stmt in (s for s in SCHEMA.split(";") if s.strip()):
                        conn.execute(stmt)
        except sqlite3.Error as e:
            self.close()
            raise SearchError(f"{self.path} is not a usable search cache: {e}",
                              hint="move it away, or point search.cache.path at another file") from e

    # ------------------------------------------------------------------ connections

    def _conn(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:  # forked: the parent's connections must not be touched
            self._local, self._conns, self._pid = threading.local(), [], os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = connect_wal(self.path, self._timeout)
            except sqlite3.Error as e:
                raise SearchError(f"cannot open search cache {self.path}: {e}",
                                  hint="check the path and permissions; `deepeyes search cache stats` inspects it") from e
            self._local.conn = conn
            with self._lock:
                ended = [c for t, c in self._conns if not t.is_alive()]
                self._conns = [(t, c) for t, c in self._conns if t.is_alive()]
                self._conns.append((threading.current_thread(), conn))
            for old in ended:  # their threads are gone, so nothing else uses them
                old.close()
        return conn

    class _Tx:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type: object, *rest: object) -> None:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")

    def _write(self) -> SearchCache._Tx:
        return SearchCache._Tx(self._conn())

    def close(self) -> None:
        with self._lock:
            for _, conn in self._conns:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()

    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    # ------------------------------------------------------------------ entries

    def get(self, key: str) -> CacheEntry | None:
        row = self._conn().execute(
            "SELECT backend, kind, subject, params, hits, shown, created, cost, latency_s FROM entries WHERE key=?",
            (key,)).fetchone()
        if row is None:
            return None
        return CacheEntry(key, row[0], row[1], row[2], json.loads(row[3]),
                          [Hit.from_dict(h) for h in json.loads(row[4])], row[5], row[6], row[7], row[8])

    def get_blobs(self, shas: Iterable[str]) -> dict[str, bytes]:
        shas = [s for s in shas if s]
        if not shas:
            return {}
        marks = ",".join("?" * len(shas))
        rows = self._conn().execute(f"SELECT sha256, data FROM blobs WHERE sha256 IN ({marks})", shas)
        return {sha: bytes(data) for sha, data in rows}

    def put(self, entry: CacheEntry, blobs: dict[str, bytes] | None = None) -> None:
        # (no mutate on the two json.dumps lines' ensure_ascii, and on storing JSON null for SQL
        # NULL: either spelling reads back as the same object; False only keeps the file smaller
        # and readable in the sqlite3 shell)
        raw = None if entry.raw is None else json.dumps(entry.raw, ensure_ascii=False)  # pragma: no mutate
        with self._write() as conn:
            conn.executemany("INSERT OR IGNORE INTO blobs(sha256, data) VALUES(?, ?)", list((blobs or {}).items()))
            conn.execute("INSERT OR REPLACE INTO entries(key, backend, kind, subject, params, hits, shown, raw, created,"
                         " cost, latency_s) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                         (entry.key, entry.backend, entry.kind, entry.subject,
                          json.dumps(entry.params, sort_keys=True), json.dumps([h.to_dict() for h in entry.hits],
                                                                              ensure_ascii=False),  # pragma: no mutate
                          entry.shown, raw, entry.created, entry.cost, entry.latency_s))

    def iter_entries(self, backend: str | None = None, kind: str | None = None,
                     with_raw: bool = True) -> Iterator[CacheEntry]:
        where, args = _filters(backend=backend, kind=kind)
        # (no mutate: column names, whose letter case SQLite ignores; selecting raw when it is not
        # wanted only costs reading it, since it is loaded only with with_raw)
        raw = ", raw" if with_raw else ""  # pragma: no mutate
        cols = f"key, backend, kind, subject, params, hits, shown, created, cost, latency_s{raw}"  # pragma: no mutate
        for row in self._conn().execute(f"SELECT {cols} FROM entries{where} ORDER BY created, key", args):
            entry = CacheEntry(row[0], row[1], row[2], row[3], json.loads(row[4]),
                               [Hit.from_dict(h) for h in json.loads(row[5])], row[6], row[7], row[8], row[9])
            if with_raw and row[10] is not None:
                entry.raw = json.loads(row[10])
            yield entry

    # ------------------------------------------------------------------ ledger and stats

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (the budget keeps its ledger here)."""
        return self._conn()

    def write(self) -> SearchCache._Tx:
        """``with cache.write() as conn:`` — one ``BEGIN IMMEDIATE`` transaction."""
        return self._write()

    def add_run_stats(self, run_id: str, deltas: Mapping[str, float]) -> None:
        rows = [(run_id, k, float(v)) for k, v in deltas.items() if v]
        if not rows:
            return
        with self._write() as conn:
            conn.executemany("INSERT INTO run_stats(run_id, name, value) VALUES(?,?,?) ON CONFLICT(run_id, name) "
                             "DO UPDATE SET value = value + excluded.value", rows)

    def run_stats(self, run_id: str | None = None) -> dict[str, dict[str, float]]:
        where, args = (" WHERE run_id=?", (run_id,)) if run_id else ("", ())
        out: dict[str, dict[str, float]] = {}
        for rid, name, value in self._conn().execute(f"SELECT run_id, name, value FROM run_stats{where}", args):
            out.setdefault(rid, {})[name] = value
        return out

    def stats(self) -> dict[str, Any]:
        conn = self._conn()
        by = [{"backend": b, "kind": k, "entries": n, "cost": c or 0.0}
              for b, k, n, c in conn.execute("SELECT backend, kind, COUNT(*), SUM(cost) FROM entries "
                                             "GROUP BY backend, kind ORDER BY backend, kind")]
        blobs, blob_bytes = conn.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM blobs").fetchone()
        calls = conn.execute("SELECT COUNT(*), COALESCE(SUM(cost), 0), COALESCE(SUM(status='error'), 0), "
                             "COALESCE(SUM(status IN ('pending', 'lost', 'interrupted')), 0) FROM calls").fetchone()
        minute = conn.execute("SELECT COUNT(*) FROM calls WHERE ts > ?", (time.time() - 60,)).fetchone()[0]
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return {"path": str(self.path), "bytes": size, "entries": sum(r["entries"] for r in by), "by_backend": by,
                "blobs": blobs, "blob_bytes": blob_bytes, "paid_calls": calls[0], "paid_cost": calls[1],
                "failed_calls": calls[2], "unsettled_calls": calls[3], "calls_last_minute": minute}

    def prune(self, older_than_s: float | None = None, backend: str | None = None, kind: str | None = None,
              ledger_older_than_s: float | None = None) -> dict[str, int]:
        where, args = _filters(backend=backend, kind=kind,
                               before=None if older_than_s is None else time.time() - older_than_s)
        with self._write() as conn:
            # No filter means "answers are not the target" (e.g. only the ledger), never "delete everything".
            entries = conn.execute(f"DELETE FROM entries{where}", args).rowcount if where else 0
            blobs = conn.execute(
                "DELETE FROM blobs WHERE sha256 NOT IN (SELECT json_extract(h.value, '$.thumbnail') FROM entries e, "
                "json_each(e.hits) h WHERE json_extract(h.value, '$.thumbnail') IS NOT NULL)").rowcount
            calls = 0
            if ledger_older_than_s is not None:
                calls = conn.execute("DELETE FROM calls WHERE ts < ?", (time.time() - ledger_older_than_s,)).rowcount
            conn.execute("DELETE FROM leases WHERE expires < ?", (time.time(),))
        return {"entries": entries, "blobs": blobs, "calls": calls}

    def vacuum(self) -> None:
        self._conn().execute("VACUUM")

    def integrity_ok(self) -> bool:
        return bool(self._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok")


def _filters(backend: str | None = None, kind: str | None = None,
             before: float | None = None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    args: list[Any] = []
    # no mutate: column names, whose letter case SQLite ignores (other mutants break the query and are caught)
    for col, val in (("backend", backend), ("kind", kind)):  # pragma: no mutate
        if val is not None:
            clauses.append(f"{col}=?")
            args.append(val)
    if before is not None:
        clauses.append("created < ?")  # pragma: no mutate (a column name: SQLite ignores its case)
        args.append(before)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)
