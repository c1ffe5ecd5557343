"""Files written so that a reader, a concurrent writer or a kill -9 never sees them half-done:
everything goes to a unique temporary file beside the target, which is renamed over it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_output(path: str | Path, binary: bool = False, keep_mode: bool = False) -> Iterator[IO[Any]]:
    """Yield a file to write; on success it is synced and renamed to ``path``, on error removed.
    ``keep_mode`` carries an existing target's permissions over (rewriting a file in place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if keep_mode and path.exists():
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write a whole file atomically (text or bytes)."""
    with atomic_output(path, binary=isinstance(data, bytes)) as f:
        f.write(data)
