"""Share caches instead of paying twice: JSONL export/import, and the original release's layout.

JSONL, one answer per line (schema in the README, "## Search")::

    {"format": "deepeyes-search-cache", "version": 1, "backend": "serpapi", "kind": "text",
     "subject": "<normalised query | image pixel sha256 | sample:<index>>", "params": {...},
     "hits": [{"title", "url", "snippet"?, "date"?, "thumbnail_url"?, "thumbnail"?: sha256}],
     "shown": "<text the model saw>", "created": <unix time>, "cost": 1.0, "latency_s": 0.8,
     "raw": {...}?, "thumbnails": {"<sha256>": "<base64 JPEG>"}}

The cache key is recomputed on import from (backend, kind, subject, params), so dumps stay
valid if the key function ever changes. The original DeepEyesV2 / MMSearch-R1 image-search
cache (``{index: {"tool_returned_web_title": [...], "cached_images_path": [...]}}``) is keyed
by *sample*, not by image: it imports as backend ``original``, subject ``sample:<index>``,
and the image_search tool finds it for the input image of the sample with that index.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from deepeyes_cli.errors import InputError
from deepeyes_cli.fileio import atomic_output
from deepeyes_cli.search.cache import CacheEntry, SearchCache
from deepeyes_cli.search.format import format_image_results
from deepeyes_cli.search.images import normalize_thumbnail
from deepeyes_cli.search.types import Hit, cache_key, iter_jsonl, sha256_bytes

FORMAT = "deepeyes-search-cache"
Progress = Callable[[int], None]  # answers done so far


def export_jsonl(cache: SearchCache, out: IO[str], backend: str | None = None, kind: str | None = None,
                 with_raw: bool = True, progress: Progress | None = None) -> int:
    n = 0
    for entry in cache.iter_entries(backend=backend, kind=kind, with_raw=with_raw):
        blobs = cache.get_blobs(h.thumbnail for h in entry.hits if h.thumbnail)
        row: dict[str, Any] = {
            "format": FORMAT, "version": 1, "backend": entry.backend, "kind": entry.kind, "subject": entry.subject,
            "params": entry.params, "hits": [h.to_dict() for h in entry.hits], "shown": entry.shown,
            "created": entry.created, "cost": entry.cost, "latency_s": entry.latency_s}
        if with_raw and entry.raw is not None:
            row["raw"] = entry.raw
        row["thumbnails"] = {sha: base64.b64encode(data).decode() for sha, data in blobs.items()}
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
        if progress:
            progress(n)
    return n


def export_jsonl_file(cache: SearchCache, dest: Path, backend: str | None = None, kind: str | None = None,
                      with_raw: bool = True, progress: Progress | None = None) -> int:
    """Export into ``dest`` through a temporary file: an interrupted export leaves no half dump."""
    with atomic_output(dest) as f:
        return export_jsonl(cache, f, backend, kind, with_raw, progress)


def sniff_format(path: Path) -> str:
    """``jsonl`` when the first line is one of our answers, else ``original``."""
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    try:
        row = json.loads(first)
    except ValueError:
        return "original"
    return "jsonl" if isinstance(row, dict) and ("kind" in row or row.get("format") == FORMAT) else "original"


def import_jsonl(cache: SearchCache, path: str | Path, overwrite: bool = False,
                 progress: Progress | None = None) -> dict[str, int]:
    path = Path(path)
    counts = {"imported": 0, "skipped": 0}
    for n, row in iter_jsonl(path):
        missing = [f for f in ("backend", "kind", "subject", "hits") if f not in row]
        if missing or row.get("kind") not in ("text", "image") or not isinstance(row.get("hits"), list):
            raise InputError(f"{path}:{n}: not a search cache answer (missing {', '.join(missing) or 'valid kind'})",
                             hint="see the JSONL schema in the README, section Search")
        params = row.get("params") or {}
        key = cache_key(row["backend"], row["kind"], row["subject"], params)
        if not overwrite and cache.get(key) is not None:
            counts["skipped"] += 1
            continue
        blobs = {}
        for sha, b64 in (row.get("thumbnails") or {}).items():
            try:
                data = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError) as e:
                raise InputError(f"{path}:{n}: thumbnail {sha[:12]} is not base64") from e
            if sha256_bytes(data) == sha:  # a thumbnail that does not match its hash is dropped, not trusted
                blobs[sha] = data
        hits = [Hit.from_dict(h) for h in row["hits"] if isinstance(h, dict)]
        for hit in hits:
            if hit.thumbnail and hit.thumbnail not in blobs and not cache.get_blobs([hit.thumbnail]):
                hit.thumbnail = None
        cache.put(CacheEntry(key, row["backend"], row["kind"], row["subject"], params, hits, str(row.get("shown", "")),
                             float(row.get("created") or time.time()), float(row.get("cost") or 0.0),
                             float(row.get("latency_s") or 0.0), raw=row.get("raw")), blobs)
        counts["imported"] += 1
        if progress:
            progress(counts["imported"] + counts["skipped"])
    return counts


class _ImageSource:
    """Finds a cached image by its recorded path: as is, under a root folder, or inside a zip (by name)."""

    def __init__(self, root: Path | None, base: Path) -> None:
        self.root, self.base = root, base
        self.zip: zipfile.ZipFile | None = None
        self.by_name: dict[str, str] = {}
        if root is not None and root.is_file() and zipfile.is_zipfile(root):
            self.zip = zipfile.ZipFile(root)
            self.by_name = {Path(n).name: n for n in self.zip.namelist() if not n.endswith("/")}

    def read(self, recorded: str) -> bytes | None:
        if self.zip is not None:
            member = self.by_name.get(Path(recorded).name)
            return self.zip.read(member) if member else None
        p = Path(recorded)
        candidates = [p] if p.is_absolute() else [self.base / p]
        if self.root is not None:  # a path recorded on another machine: try its tails under the root
            parts = p.parts[1:] if p.is_absolute() else p.parts
            candidates += [self.root.joinpath(*parts[i:]) for i in range(len(parts))]
        for c in candidates:
            if c.is_file():
                return c.read_bytes()
        return None


def import_original(cache: SearchCache, path: str | Path, images_root: str | Path | None = None,
                    max_side: int = 512, overwrite: bool = False, progress: Progress | None = None) -> dict[str, int]:
    """Import ``fvqa_train_image_search_results_cache.json``-style files (missing images are skipped)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path}: {e}", hint="pass the original image-search cache JSON") from e
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a dict of sample index -> results")
    source = _ImageSource(Path(images_root) if images_root else None, path.parent)
    counts = {"imported": 0, "skipped": 0, "missing_images": 0}
    for i, (index, item) in enumerate(data.items(), 1):
        if not isinstance(item, dict) or "tool_returned_web_title" not in item:
            raise InputError(f"{path}: entry {index!r} has no tool_returned_web_title",
                             hint='the original image-search cache maps each sample index to {"tool_returned_web_title": '
                                  '[...], "cached_images_path": [...]}; a JSONL dump needs --format jsonl')
        subject = f"sample:{index}"
        key = cache_key("original", "image", subject, {})
        if not overwrite and cache.get(key) is not None:
            counts["skipped"] += 1
            continue
        titles = list(item.get("tool_returned_web_title") or [])
        paths = list(item.get("cached_images_path") or [])
        hits, blobs = [], {}
        for j, title in enumerate(titles):
            recorded = paths[j] if j < len(paths) else None
            raw = source.read(str(recorded)) if recorded else None
            thumb = normalize_thumbnail(raw, max_side) if raw else None
            hit = Hit(title=str(title))
            if thumb is None:
                counts["missing_images"] += 1
            else:
                hit.thumbnail = sha256_bytes(thumb)
                blobs[hit.thumbnail] = thumb
            hits.append(hit)
        shown = format_image_results([h for h in hits if h.thumbnail])
        cache.put(CacheEntry(key, "original", "image", subject, {}, hits, shown, time.time(),
                             raw={"index": index, **item}), blobs)
        counts["imported"] += 1
        if progress:
            progress(i)
    return counts
