"""Offline image search: 64-bit perceptual hashes (imagehash pHash) of every image in a folder.

A query returns the nearest images by Hamming distance. Titles come from an optional
``metadata.jsonl`` in the folder (``{"file": "a.jpg", "title": ..., "url": ...}``), else
from file names. ``deepeyes search index FOLDER`` writes ``FOLDER/.deepeyes-phash.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import InputError
from deepeyes_cli.fileio import atomic_write
from deepeyes_cli.search.types import Hit

if TYPE_CHECKING:
    from PIL.Image import Image

Progress = Callable[[int, int], None]  # (done, total)
IMAGE_INDEX_FILE = ".deepeyes-phash.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}

def _metadata(folder: Path) -> dict[str, dict[str, Any]]:
    meta: dict[str, dict[str, Any]] = {}
    path = folder / "metadata.jsonl"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                meta[str(row.get("file"))] = row
    return meta


def build_image_index(folder: str | Path, out: str | Path | None = None,
                      progress: Progress | None = None) -> dict[str, Any]:
    """pHash every image under ``folder``; unchanged files (same size and mtime) keep their hash."""
    import imagehash
    from PIL import Image as PILImage

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a directory", hint="pass the folder holding your images")
    out_path = Path(out) if out else folder / IMAGE_INDEX_FILE
    old = {}
    if out_path.is_file():
        old = {e["file"]: e for e in json.loads(out_path.read_text()).get("images", [])}
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    meta = _metadata(folder)
    entries = []
    for i, path in enumerate(files):
        rel = path.relative_to(folder).as_posix()
        st = path.stat()
        prev = old.get(rel)
        if prev and prev["size"] == st.st_size and prev["mtime"] == st.st_mtime:
            entries.append(prev)
        else:
            try:
                with PILImage.open(path) as img:
                    phash = str(imagehash.phash(img.convert("RGB")))
            except Exception:  # unreadable files are left out of the index, not fatal
                continue
            info = meta.get(rel, {})
            entries.append({"file": rel, "size": st.st_size, "mtime": st.st_mtime, "phash": phash,
                            "title": str(info.get("title") or path.stem.replace("_", " ").replace("-", " ")),
                            "url": str(info.get("url") or path.resolve().as_uri())})
        if progress:
            progress(i + 1, len(files))
    index = {"version": 1, "folder": str(folder.resolve()), "images": entries}
    atomic_write(out_path, json.dumps(index) + "\n")
    return {"images": len(entries), "path": str(out_path)}


class LocalImageIndex:
    """Reads ``index_path`` (default: the one ``deepeyes search index FOLDER`` wrote), building it if missing.
    An existing index is not refreshed: re-run ``deepeyes search index FOLDER`` after adding images."""

    def __init__(self, folder: str | Path, max_distance: int = 20, index_path: Path | None = None) -> None:
        import numpy as np
        from filelock import FileLock

        self.folder = Path(folder).expanduser()
        index_path = index_path or self.folder / IMAGE_INDEX_FILE
        if not index_path.is_file():
            index_path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(index_path) + ".lock"):
                if not index_path.is_file():
                    build_image_index(self.folder, index_path)
        self.entries = json.loads(index_path.read_text())["images"]
        self.hashes = np.array([int(e["phash"], 16) for e in self.entries], dtype=np.uint64)
        self.max_distance = max_distance
        self.fingerprint = hashlib.sha256(
            "".join(f"{e['file']}:{e['phash']}" for e in self.entries).encode()).hexdigest()

    def search(self, image: Image, k: int) -> list[tuple[Hit, Path]]:
        import imagehash
        import numpy as np

        if not self.entries:
            return []
        query = np.uint64(int(str(imagehash.phash(image.convert("RGB"))), 16))
        distances = np.bitwise_count(self.hashes ^ query)
        order = np.argsort(distances, kind="stable")[:k]
        return [(Hit(title=self.entries[i]["title"], url=self.entries[i]["url"]), self.folder / self.entries[i]["file"])
                for i in order if int(distances[i]) <= self.max_distance]
