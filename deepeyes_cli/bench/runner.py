"""Run a benchmark's items through the one agent loop: concurrent, resumable after kill -9.

Files in the run's folder (both append-only, one line per item, flushed as it ends):
``trajectories.jsonl`` (images beside it in ``trajectories.images/``) and ``scores.jsonl``.
On resume an item with a trajectory is never asked again (one the backend broke is);
one whose trajectory was written but not its score is scored from the trajectory, and
items waiting for the judge are judged.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from deepeyes_cli.agent.config import DEFAULT_IMAGE_MAX_PIXELS
from deepeyes_cli.agent.loop import AgentRuntime, run_trajectory
from deepeyes_cli.agent.records import ImageRefs, Task
from deepeyes_cli.agent.trajectory import Sample, Trajectory, append_jsonl, externalize_images
from deepeyes_cli.bench.items import BenchItem, decode_image
from deepeyes_cli.bench.judging import BenchScorer
from deepeyes_cli.bench.results import ItemResult, append_results, read_results, repair_tail
from deepeyes_cli.errors import InputError
from deepeyes_cli.protocol.images import normalize_image

TRAJECTORIES = "trajectories.jsonl"
SCORES = "scores.jsonl"
Progress = Callable[[int, int], None]


def item_sample(item: BenchItem, benchmark: str) -> Sample:
    meta = {k: v for k, v in item.meta.items() if isinstance(v, str | int | float | bool | list) or v is None}
    return Sample(id=item.id, question=item.question, answer=_reference(item), data_source=benchmark,
                  choices=item.choices, metadata={"benchmark": benchmark, "category": item.category, **meta})


def _reference(item: BenchItem) -> str | None:
    """What rewards/ compares with: every acceptable answer joined by "or" (its rule for alternatives)."""
    if len(item.answers) > 1 and not item.choices:
        return " or ".join(dict.fromkeys(item.answers))
    return item.answer


def load_task(item: BenchItem, benchmark: str, base_dir: Path | None = None,
              max_pixels: int = DEFAULT_IMAGE_MAX_PIXELS) -> Task:
    """The item as the loop's task, its images decoded and their record references made (here,
    where the caller chose the thread, instead of one more thread hop inside the loop)."""
    images = [normalize_image(decode_image(src, base_dir), max_pixels) for src in item.images]
    sample = item_sample(item, benchmark)
    refs = ImageRefs()
    sample.images = [refs.ref(im) for im in images]
    return Task(sample, images)


_INLINE_BYTES = 256_000  # images up to this size are decoded and written on the event loop


def _heavy(item: BenchItem) -> bool:
    return any(not isinstance(src, bytes | str) or len(src) > _INLINE_BYTES for src in item.images)


def _finished(path: Path) -> dict[str, tuple[int, str | None]]:
    """Item id -> (line number, end reason) of the last trajectory written for it."""
    out: dict[str, tuple[int, str | None]] = {}
    if not path.is_file():
        return out
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            try:
                rec = json.loads(line)
                out[rec["sample"]["id"]] = (n, rec.get("end_reason"))
            except (ValueError, KeyError, TypeError):
                continue
    return out


def _read_trajectories(path: Path, lines: set[int]) -> dict[str, Trajectory]:
    out: dict[str, Trajectory] = {}
    if not lines:
        return out
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if n in lines:
                t = Trajectory.model_validate(json.loads(line))
                out[t.sample.id] = t
    return out


async def run_benchmark_items(items: Sequence[BenchItem], benchmark: str, runtime: AgentRuntime, out_dir: Path,
                              scorer: BenchScorer, *, base_dir: Path | None = None, concurrency: int | None = None,
                              on_progress: Progress | None = None) -> list[ItemResult]:
    """Every item's result, in item order (asked, or read back from an earlier run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    traj_path, score_path = out_dir / TRAJECTORIES, out_dir / SCORES
    repair_tail(traj_path)
    repair_tail(score_path)
    results = read_results(score_path)
    finished = _finished(traj_path)
    by_id = {it.id: it for it in items}
    # a trajectory without its score (killed in between): score it again from the record
    rescore = {n for i, (n, reason) in finished.items() if i in by_id and reason != "error"
               and (i not in results or results[i].trajectory_id is None)}
    for traj in _read_trajectories(traj_path, rescore).values():
        results[traj.sample.id] = scorer.first_pass(by_id[traj.sample.id], traj)
        append_results(score_path, [results[traj.sample.id]])
    todo = [it for it in items if finished.get(it.id, (0, "error"))[1] == "error"]
    total, done = len(items), len(items) - len(todo)
    lock = threading.Lock()
    gate = asyncio.Semaphore(concurrency or runtime.cfg.concurrency)
    if on_progress is not None:
        on_progress(done, total)

    def write(traj: Trajectory, result: ItemResult) -> None:
        with lock:  # one writer at a time: lines never interleave
            externalize_images(traj, traj_path)  # in place: the record is not used after this
            append_jsonl(traj_path, [traj], inline_images=True)
            append_results(score_path, [result])

    async def one(item: BenchItem) -> None:
        nonlocal done
        async with gate:
            try:  # small images decode here; big ones in a thread (a thread hop costs ~1 ms under load)
                px = runtime.cfg.image_max_pixels
                task = await asyncio.to_thread(load_task, item, benchmark, base_dir, px) if _heavy(item) else \
                    load_task(item, benchmark, base_dir, px)
            except InputError as e:  # an image that cannot be read: this item fails, the run goes on
                results[item.id] = ItemResult(id=item.id, base_id=item.base_id, category=item.category,
                                              answer=item.answer, prediction=None, score=None, decided_by="error",
                                              error=e.message)
                await asyncio.to_thread(append_results, score_path, [results[item.id]])
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
                return
            traj = await run_trajectory(task, runtime)
            task.images.clear()
        traj.metadata["bench"] = {"benchmark": benchmark, "item": item.id, "category": item.category}
        result = scorer.first_pass(item, traj)
        if sum(len(ref.b64 or "") for ref in traj.image_refs()) > _INLINE_BYTES:
            await asyncio.to_thread(write, traj, result)
        else:
            write(traj, result)
        results[item.id] = result
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    await asyncio.gather(*(one(it) for it in todo))
    await _judge_pending(items, results, traj_path, score_path, scorer)
    return [results[it.id] for it in items if it.id in results]


async def _judge_pending(items: Sequence[BenchItem], results: dict[str, ItemResult], traj_path: Path,
                         score_path: Path, scorer: BenchScorer) -> None:
    pending = {it.id for it in items if it.id in results and results[it.id].decided_by == "unjudged"}
    if not pending:
        return
    finished = _finished(traj_path)
    trajs = _read_trajectories(traj_path, {finished[i][0] for i in pending if i in finished})
    by_id = {it.id: it for it in items}
    pairs = [(by_id[i], trajs[i]) for i in sorted(pending) if i in trajs]
    judged = await scorer.judge(pairs)
    append_results(score_path, judged)
    for r in judged:
        results[r.id] = r
