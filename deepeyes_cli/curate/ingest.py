"""`deepeyes curate ingest SRC... -o DATA`: raw questions to one normalized ``Sample`` per line.

Writes ``DATA/samples.jsonl`` (images as ``DATA/images/<sha256>.png``, each stored once by
content) and ``DATA/ingest/bad_rows.jsonl``: every row that is not used, with its source,
row number, id and reason (missing or unreadable image, empty question or answer, duplicate
id). Rows are read and written one at a time, so memory does not grow with the data set.
Resumable: ``DATA/ingest/progress.json`` records, every few hundred rows, how far each file
got and how long the two outputs were; a rerun after kill -9 cuts the outputs back to that
point and goes on from the next row. ``DATA/ingest/summary.json`` marks the stage done.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepeyes_cli.agent.trajectory import ImageRef, Sample
from deepeyes_cli.curate.config import CurateConfig
from deepeyes_cli.curate.rows import from_row
from deepeyes_cli.curate.sources import list_sources, read_rows
from deepeyes_cli.curate.store import DataDir
from deepeyes_cli.errors import InputError
from deepeyes_cli.fileio import atomic_write

CHECKPOINT_ROWS = 256


class BadRow(Exception):
    """A row that cannot become a sample; ``kind`` groups the reasons in the summary."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind or message.split(":")[0]


@dataclass
class IngestSummary:
    sources: list[str]
    rows: int = 0
    samples: int = 0
    bad: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    by_source: Counter[str] = field(default_factory=Counter)  # data_source → samples
    images: int = 0  # image references written (stored once each by content)
    resumed_rows: int = 0
    skipped: bool = False  # already complete

    def to_json(self) -> dict[str, Any]:
        return {"sources": self.sources, "rows": self.rows, "samples": self.samples, "bad": self.bad,
                "reasons": dict(self.reasons), "by_source": dict(self.by_source), "images": self.images}


def config_digest(sources: Sequence[str], cfg: CurateConfig) -> str:
    data = {"sources": list(sources), "ingest": cfg.ingest.model_dump(mode="json"),
            "synthetic": cfg.synthetic.model_dump(mode="json") if "builtin:synthetic" in sources else None}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def store_image(value: Any, base_dir: Path | None, images_dir: Path, max_pixels: int) -> ImageRef:
    """Decode one image (path, bytes, ``{bytes, path}`` struct or PIL), downscale it if huge, store
    it as PNG by content hash; the ref's path is relative to the data directory."""
    from PIL import Image, UnidentifiedImageError

    from deepeyes_cli.agent.trajectory import encode_png

    try:
        if isinstance(value, Image.Image):
            im = value.convert("RGB")
        else:
            data: bytes | None = None
            path: str | None = None
            if isinstance(value, dict):
                data, path = value.get("bytes"), value.get("path")
            elif isinstance(value, (bytes, bytearray)):
                data = bytes(value)
            elif isinstance(value, str):
                path = value
            else:
                raise BadRow(f"image of unknown type {type(value).__name__}", "unreadable image")
            if data is None:
                if not path:
                    raise BadRow("image has neither bytes nor a path", "unreadable image")
                p = Path(path).expanduser()
                if not p.is_absolute() and base_dir is not None:
                    p = base_dir / p
                if not p.is_file():
                    raise BadRow(f"missing image {path}", "missing image")
                data = p.read_bytes()
            with Image.open(io.BytesIO(data)) as opened:
                if opened.format == "PNG" and opened.mode == "RGB" and opened.width * opened.height <= max_pixels:
                    opened.load()  # decoded: a truncated or corrupt file fails here
                    return _store_png(data, opened.width, opened.height, images_dir)  # kept byte for byte
                im = opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise BadRow(f"unreadable image: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if im.width * im.height > max_pixels:  # only huge images change: the sandbox sees the original pixels
        scale = (max_pixels / (im.width * im.height)) ** 0.5
        im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))), Image.Resampling.LANCZOS)
    return _store_png(encode_png(im), im.width, im.height, images_dir)


def _store_png(png: bytes, width: int, height: int, images_dir: Path) -> ImageRef:
    sha = hashlib.sha256(png).hexdigest()
    target = images_dir / f"{sha}.png"
    if not target.exists():
        atomic_write(target, png)
    return ImageRef(sha256=sha, width=width, height=height, path=f"images/{sha}.png")


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        v = v[0] if len(v) == 1 else ", ".join(map(str, v))
    s = str(v).strip()
    return s or None


def to_sample(raw: dict[str, Any], row: int, source: str, base_dir: Path | None, data: DataDir,
              cfg: CurateConfig) -> Sample:
    ic = cfg.ingest
    f = from_row(raw, ic.columns)
    images = [store_image(v, base_dir, data.images, ic.max_image_pixels) for v in f.images]
    if f.sample is not None:
        try:
            sample = Sample.model_validate(f.sample)
        except ValueError as e:
            raise BadRow(f"not a sample record: {str(e).splitlines()[0]}") from e
        if images:
            sample.images = images
        else:
            sample.images = [store_image({"path": r.path} if r.b64 is None else {"bytes": base64.b64decode(r.b64)},
                                         base_dir, data.images, ic.max_image_pixels) for r in sample.images]
    else:
        question, answer = _text(f.question), _text(f.answer)
        if question is None:
            raise BadRow("empty question")
        stem = Path(source).stem if not source.startswith("builtin:") else source.split(":", 1)[1]
        choices = [str(c) for c in f.choices] if isinstance(f.choices, (list, tuple)) and f.choices else None
        sample = Sample(id=_text(f.id) or f"{stem}-{row}", question=question, answer=answer,
                        data_source=_text(f.data_source) or ic.default_data_source, images=images, choices=choices,
                        metadata={**f.metadata, "ingest": {"source": source, "row": row}})
    if ic.require_answer and not (sample.answer and sample.answer.strip()):
        raise BadRow("empty answer")
    if ic.require_image and not sample.images:
        raise BadRow("no image")
    return sample


def ingest(sources: Sequence[str], data_dir: str | Path, cfg: CurateConfig,
           on_progress: Callable[[int, str], None] | None = None) -> IngestSummary:
    """Read ``sources`` into ``data_dir``; resumes an interrupted run, skips a finished one."""
    files = list_sources(list(sources))
    data = DataDir(data_dir)
    digest = config_digest(files, cfg)
    stage = data.stage("ingest")
    done = stage / "summary.json"
    if done.exists() and json.loads(done.read_text()).get("digest") == digest:
        s = json.loads(done.read_text())
        return IngestSummary(files, s["rows"], s["samples"], s["bad"], Counter(s["reasons"]),
                             Counter(s["by_source"]), s["images"], skipped=True)
    data.images.mkdir(parents=True, exist_ok=True)
    progress_path = stage / "progress.json"
    state: dict[str, Any] = {"digest": digest, "source": 0, "row": 0, "samples_bytes": 0, "bad_bytes": 0}
    if progress_path.exists():
        old = json.loads(progress_path.read_text())
        if old.get("digest") == digest:
            state = old
    summary = IngestSummary(files)
    seen: set[str] = set()
    for path, key in ((data.samples, "samples_bytes"), (stage / "bad_rows.jsonl", "bad_bytes")):
        with open(path, "a+b") as fh:
            fh.truncate(int(state[key]))  # drop what came after the last checkpoint
    for s in data.iter_samples():
        seen.add(s.id)
        summary.samples += 1
        summary.by_source[s.data_source] += 1
        summary.images += len(s.images)
    for line in (stage / "bad_rows.jsonl").read_text(encoding="utf-8").splitlines():
        summary.bad += 1
        summary.reasons[json.loads(line)["kind"]] += 1
    summary.resumed_rows = summary.samples + summary.bad
    with open(data.samples, "a", encoding="utf-8") as out, open(stage / "bad_rows.jsonl", "a", encoding="utf-8") as bad:

        def checkpoint(source_index: int, row: int) -> None:
            out.flush()
            bad.flush()
            os.fsync(out.fileno())
            os.fsync(bad.fileno())
            state.update(source=source_index, row=row, samples_bytes=out.tell(), bad_bytes=bad.tell())
            atomic_write(progress_path, json.dumps(state) + "\n")

        for si, source in enumerate(files):
            if si < state["source"]:
                continue
            skip = state["row"] if si == state["source"] else 0
            for raw in read_rows(source, cfg.synthetic):
                if raw.row < skip:
                    continue
                try:
                    if raw.data is None:
                        raise BadRow(raw.error or "unreadable row")
                    sample = to_sample(raw.data, raw.row, source, raw.base_dir, data, cfg)
                    if sample.id in seen:
                        raise BadRow(f"duplicate id {sample.id}", "duplicate id")
                except BadRow as e:
                    ident = _text((raw.data or {}).get(cfg.ingest.columns.id or "id"))
                    if cfg.ingest.strict:
                        raise InputError(f"{source} row {raw.row}: {e}",
                                         hint="fix the row, or run without --strict to list bad rows and go on") from e
                    bad.write(json.dumps({"source": source, "row": raw.row, "id": ident, "reason": str(e),
                                          "kind": e.kind}) + "\n")
                    summary.bad += 1
                    summary.reasons[e.kind] += 1
                else:
                    seen.add(sample.id)
                    out.write(sample.model_dump_json(exclude_none=True) + "\n")
                    summary.samples += 1
                    summary.by_source[sample.data_source] += 1
                    summary.images += len(sample.images)
                if (raw.row + 1) % CHECKPOINT_ROWS == 0:
                    checkpoint(si, raw.row + 1)
                if on_progress:
                    on_progress(summary.samples + summary.bad, source)
            checkpoint(si + 1, 0)
    summary.rows = summary.samples + summary.bad
    atomic_write(done, json.dumps({**summary.to_json(), "digest": digest}, indent=2) + "\n")
    return summary

