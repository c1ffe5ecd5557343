"""The judge cache: one SQLite file in WAL mode, shared by every process that judges.

A verdict is keyed by (question, ground truth, prediction, judge model, prompt version), so
re-scoring a file or re-running a benchmark asks the judge nothing it answered before.
WAL lets many readers run beside one writer; writers from several processes (RL reward
workers, two `deepeyes judge` runs) take turns through SQLite's lock with a generous busy
timeout. ``synchronous=NORMAL`` keeps commits cheap: a crash can lose the last verdicts
(they are asked again), never corrupt the file.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepeyes_cli.errors import JudgeError
from deepeyes_cli.sqlitedb import connect_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    correct INTEGER NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    question TEXT NOT NULL,
    ground_truth TEXT NOT NULL,
    prediction TEXT NOT NULL,
    reply TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created REAL NOT NULL
)
"""
_CHUNK = 500  # SQLite's bound-parameter limit is ≥ 999


@dataclass(frozen=True)
class CachedVerdict:
    correct: bool
    model: str
    reply: str | None


def cache_key(question: str, ground_truth: str, prediction: str, model: str, prompt_version: str) -> str:
    # NUL never occurs in these strings, so joining on it is unambiguous (and cheaper than JSON).
    blob = "\0".join((question, ground_truth, prediction, model, prompt_version))
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def _open(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    return connect_wal(path, busy_timeout_s, init=lambda db: db.execute(_SCHEMA))


class JudgeCache:
    """Persistent verdicts. Safe across threads (one connection, a lock) and processes (SQLite)."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = _open(self.path, busy_timeout_s)
        except (OSError, sqlite3.Error) as e:
            raise JudgeError(f"cannot open the judge cache {self.path}: {e}",
                             hint="set reward.cache_path to a writable file; a damaged one can be moved aside "
                                  "(its verdicts are asked again)") from e
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> dict[str, CachedVerdict]:
        out: dict[str, CachedVerdict] = {}
        with self._lock:
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i:i + _CHUNK]
                rows = self._db.execute(
                    f"SELECT key, correct, model, reply FROM verdicts WHERE key IN ({','.join('?' * len(chunk))})",
                    chunk).fetchall()
                for key, correct, model, reply in rows:
                    out[key] = CachedVerdict(bool(correct), model, reply)
        return out

    def get(self, key: str) -> CachedVerdict | None:
        return self.get_many([key]).get(key)

    def put_many(self, rows: Iterable[tuple[str, bool, str, str, str, str, str, str | None, int | None,
                                           int | None]]) -> None:
        """Rows of (key, correct, model, prompt_version, question, ground_truth, prediction, reply,
        prompt_tokens, completion_tokens), written in one transaction."""
        now = time.time()
        data = [(*r[:1], int(r[1]), *r[2:], now) for r in rows]
        if not data:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?,?,?,?,?,?)", data)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
