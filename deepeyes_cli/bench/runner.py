"""Run a benchmark's items through the one agent loop, with the shared batch runner
(``agent/batch.py``: concurrent, append-only shards, resumes after kill -9 without asking a
finished item again), then score every record.

A run folder holds ``inputs/`` (each item's images as files, written once, so the loop loads
them lazily and a big benchmark never sits decoded in memory), ``batch/`` (the trajectory
shards and manifest) and ``scores.jsonl`` (one line per item, rewritten after each run). The
judge's cache makes re-scoring on resume free; items it could not judge are tried again.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deepeyes_cli.agent.loop import AgentRuntime
from deepeyes_cli.agent.records import Task
from deepeyes_cli.agent.trajectory import ImageRef, Sample, Trajectory
from deepeyes_cli.bench.items import BenchItem, ImageSource
from deepeyes_cli.bench.judging import BenchScorer
from deepeyes_cli.bench.results import ItemResult
from deepeyes_cli.errors import InputError
from deepeyes_cli.fileio import atomic_write

BATCH = "batch"
RETRY = "batch-retry-"
INPUTS = "inputs"
SCORES = "scores.jsonl"
Progress = Callable[[int, int], None]


def item_sample(item: BenchItem, benchmark: str, images: list[ImageRef]) -> Sample:
    meta = {k: v for k, v in item.meta.items() if isinstance(v, str | int | float | bool | list) or v is None}
    return Sample(id=item.id, question=item.question, answer=_reference(item), data_source=benchmark,
                  choices=item.choices, images=images,
                  metadata={"benchmark": benchmark, "category": item.category, **meta})


def _reference(item: BenchItem) -> str | None:
    """What rewards/ compares with: every acceptable answer joined by "or" (its rule for alternatives)."""
    if len(item.answers) > 1 and not item.choices:
        return " or ".join(dict.fromkeys(item.answers))
    return item.answer


def _encoded(src: ImageSource) -> bytes | Path:
    """An image source as encoded bytes (or the file it already is)."""
    from PIL import Image

    if isinstance(src, Path):
        return src
    if isinstance(src, dict):
        if src.get("bytes"):
            return bytes(src["bytes"])
        if src.get("path"):
            return Path(src["path"])
        raise InputError("an image field holds neither bytes nor a path")
    if isinstance(src, str):
        try:
            return base64.b64decode(src.split(",", 1)[1] if src.startswith("data:") else src)
        except ValueError as e:
            raise InputError(f"an image field is not base64: {e}") from e
    if isinstance(src, Image.Image):
        buf = io.BytesIO()
        src.convert("RGB").save(buf, format="PNG")
        return buf.getvalue()
    return bytes(src)


def materialize(item: BenchItem, folder: Path) -> list[ImageRef]:
    """The item's images as files under ``folder/inputs`` (by content hash, each written once)."""
    from PIL import Image, UnidentifiedImageError

    refs = []
    for src in item.images:
        data = _encoded(src)
        try:
            if isinstance(data, Path):
                with Image.open(data) as im:
                    w, h = im.size
                refs.append(ImageRef(sha256=hashlib.sha256(data.read_bytes()).hexdigest(), width=w, height=h,
                                     path=str(data.resolve())))
                continue
            with Image.open(io.BytesIO(data)) as im:
                w, h, fmt = im.size[0], im.size[1], (im.format or "png").lower()
        except (OSError, UnidentifiedImageError) as e:
            raise InputError(f"item {item.id}: an image cannot be read: {e}") from e
        sha = hashlib.sha256(data).hexdigest()
        rel = f"{INPUTS}/{sha}.{'jpg' if fmt == 'jpeg' else fmt}"
        if not (folder / rel).exists():
            (folder / INPUTS).mkdir(parents=True, exist_ok=True)
            atomic_write(folder / rel, data)
        refs.append(ImageRef(sha256=sha, width=w, height=h, path=rel))
    return refs


_DECODE_AHEAD_PIXELS = 20_000_000  # a benchmark this small (all images together) is decoded before it runs


def _inputs(samples: Sequence[Sample], folder: Path) -> list[Sample] | list[Task]:
    """What the batch runs: copies of the samples (the batch re-bases the image paths of the
    samples its records share), or, for a small benchmark, ready tasks (no thread hop per item)."""
    copies = [s.model_copy(deep=True) for s in samples]
    if sum(r.width * r.height for s in samples for r in s.images) > _DECODE_AHEAD_PIXELS:
        return copies
    return [Task.from_sample(s, folder) for s in copies]


def _failed(item: BenchItem, why: str) -> ItemResult:
    return ItemResult(id=item.id, base_id=item.base_id, category=item.category, answer=item.answer,
                      prediction=None, score=None, decided_by="error", error=why)


async def run_benchmark_items(items: Sequence[BenchItem], benchmark: str, runtime: AgentRuntime, out_dir: Path,
                              scorer: BenchScorer, *, concurrency: int | None = None, tag: str = "",
                              on_progress: Progress | None = None) -> list[ItemResult]:
    """Every item's result, in item order (asked now, or found from an earlier run)."""
    from deepeyes_cli.agent.batch import run_batch

    out_dir.mkdir(parents=True, exist_ok=True)
    samples, unreadable = [], {}
    for item in items:
        try:
            samples.append(item_sample(item, benchmark, materialize(item, out_dir)))
        except InputError as e:  # an image that cannot be read fails its item, not the run
            unreadable[item.id] = _failed(item, e.message)
    progress: Any = (lambda done, total, _cost: on_progress(done, total)) if on_progress else None
    seen: dict[str, Trajectory] = {}

    def keep(traj: Trajectory) -> float:
        # run_batch has no per-record callback; its pricing hook sees each record as it is written,
        # which spares reading back what this call ran (about 1 ms a record)
        seen[traj.sample.id] = traj
        return 0.0

    await run_batch(runtime, _inputs(samples, out_dir), out_dir / BATCH, k=1, concurrency=concurrency,
                    base_dir=out_dir, tag=tag, on_progress=progress, cost_of=keep)
    trajs = dict(seen) if len(seen) == len(samples) else {**_latest(out_dir), **seen}
    # Items the backend broke (end_reason "error") are asked again, in a batch of their own:
    # one folder per attempt, so a rerun resumes it like any batch.
    failed = [s for s in samples if s.id in trajs and trajs[s.id].end_reason == "error"]
    if failed:
        n = len(_batches(out_dir)) - 1
        key = f"{n:03d}-" + hashlib.sha256("\0".join(s.id for s in failed).encode()).hexdigest()[:12]
        seen.clear()
        await run_batch(runtime, _inputs(failed, out_dir), out_dir / f"{RETRY}{key}", k=1, concurrency=concurrency,
                        base_dir=out_dir, tag=tag, on_progress=progress, cost_of=keep)
        trajs = {**trajs, **seen}  # a retry's record replaces the broken one
    results: dict[str, ItemResult] = dict(unreadable)
    pending = []
    for item in items:
        traj = trajs.get(item.id)
        if traj is None:
            continue
        results[item.id] = scorer.first_pass(item, traj)
        if results[item.id].decided_by == "unjudged":
            pending.append((item, traj))
    if pending:
        for r in await scorer.judge(pending):
            results[r.id] = r
    ordered = [results[it.id] for it in items if it.id in results]
    atomic_write(out_dir / SCORES, "".join(r.model_dump_json() + "\n" for r in ordered))
    return ordered


def _batches(out_dir: Path) -> list[Path]:
    """The first batch, then the retries in the order they were made."""
    return [out_dir / BATCH, *sorted(out_dir.glob(f"{RETRY}*"))]


def _latest(out_dir: Path) -> dict[str, Trajectory]:
    """Each item's record; a later batch's replaces one that ended in a backend error."""
    from deepeyes_cli.agent.batch import read_batch

    out: dict[str, Trajectory] = {}
    for folder in _batches(out_dir):
        if folder.is_dir():
            for t in read_batch(folder):
                if t.sample.id not in out or out[t.sample.id].end_reason == "error":
                    out[t.sample.id] = t
    return out


def shard_paths(out_dir: Path) -> list[Path]:
    """The trajectory files of a run folder (what the viewer page is made from)."""
    return [p for folder in _batches(out_dir) for p in sorted(folder.glob("shard-*.jsonl"))]
