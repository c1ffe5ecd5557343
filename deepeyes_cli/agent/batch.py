"""Resumable, concurrent batch runs of the one agent loop: k attempts of many samples.

    from deepeyes_cli.agent.batch import run_batch, read_batch

    summary = await run_batch(runtime, samples, out_dir, k=8, concurrency=32, seed=0,
                              scorer=scorer, base_dir=data_dir, on_progress=cb)
    trajectories = read_batch(out_dir)          # sorted by (sample index, attempt)

``samples`` are :class:`Sample` records (images loaded from ``base_dir`` when needed, once
per sample and shared by its attempts) or ready :class:`Task` objects. Each (sample,
attempt) pair runs through ``run_trajectory``, is optionally scored by ``scorer`` (a
``rewards.reward.RewardScorer``) and is appended, one flushed line, to a JSONL shard.

Layout of ``out_dir``::

    manifest.json           the plan (digest of sample ids, k, seed, tag), then the final counts
    shard-00000.jsonl ...   append-only trajectory records; each run of the batch opens new shards
    images/<sha256>.png     images the loop produced (tool results), stored once by content

Every record carries ``metadata["batch"] = {"index", "attempt", "key"}``. A rerun after
kill -9 reads the shards (a torn last line is ignored), skips the pairs already there and
runs the rest: nothing is lost, nothing duplicated. Trajectory ids are derived from
(tag, seed, sample id, attempt) and, with ``seed`` set, attempt *a* of a sample samples with
seed ``hash(seed, sample id, a)`` whatever the order of execution, so a deterministic backend
gives the same records (timing fields aside: ``created_at``, ``wall_s``, ``generation_s``,
``tool_s``) after an interrupted run as after an uninterrupted one. A directory made for
another plan is refused. ``should_stop`` (budget caps) is asked before each pair starts:
once it returns a reason, no new pair starts, those in flight finish and are kept, and the
summary says why it stopped; a rerun goes on from there.

The API (stable): ``run_batch``, ``run_batch_sync``, ``read_batch``, ``canonical``,
``BatchSummary``, ``trajectory_cost``; ``on_progress(done, total, cost_usd)``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.agent.batch_files import (
    MANIFEST,
    SHARD_SIZE,
    BatchSummary,
    CostFn,
    ProgressFn,
    ShardWriter,
    attempt_seed,
    canonical,
    check_manifest,
    iter_records,
    pair_key,
    plan_digest,
    read_batch,
    store_images,
    trajectory_cost,
    trajectory_id,
    trajectory_tokens,
)
from deepeyes_cli.agent.loop import AgentRuntime, run_trajectory
from deepeyes_cli.agent.records import Task
from deepeyes_cli.agent.trajectory import Sample, Trajectory
from deepeyes_cli.errors import InputError
from deepeyes_cli.fileio import atomic_write

if TYPE_CHECKING:
    from deepeyes_cli.rewards.reward import RewardScorer

__all__ = ["BatchSummary", "CostFn", "ProgressFn", "attempt_seed", "canonical", "read_batch", "run_batch",
           "run_batch_sync", "trajectory_cost", "trajectory_tokens"]

class _InFlight:
    """Time-integral of trajectories in flight (for the concurrency-utilisation figure)."""

    def __init__(self) -> None:
        self.n, self.area, self.t0 = 0, 0.0, time.perf_counter()
        self.last = self.t0

    def change(self, delta: int) -> None:
        now = time.perf_counter()
        self.area += self.n * (now - self.last)
        self.n, self.last = self.n + delta, now

    def mean(self, until: float) -> float:
        span = until - self.t0
        return self.area / span if span > 0 else 0.0


async def run_batch(runtime: AgentRuntime, samples: Sequence[Sample | Task], out_dir: str | Path, *, k: int = 1,
                    concurrency: int | None = None, scorer: RewardScorer | None = None, seed: int | None = None,
                    base_dir: str | Path | None = None, tag: str = "", on_progress: ProgressFn | None = None,
                    cost_of: CostFn | None = None, should_stop: Callable[[], str | None] | None = None,
                    shard_size: int = SHARD_SIZE, retry_failed: bool = False) -> BatchSummary:
    """Run ``k`` attempts of every sample (at most ``concurrency`` at once, default
    ``runtime.cfg.concurrency``) into ``out_dir``, resuming what an earlier run left.
    ``tag`` names the settings the records depend on (e.g. a recipe digest): another tag is
    another batch. ``cost_of`` prices a trajectory (see ``trajectory_cost``). With
    ``retry_failed``, pairs whose record ended in an infrastructure failure (``end_reason``
    ``error`` or ``tool_fatal``) are run again; their new record supersedes the old one."""
    from filelock import FileLock, Timeout

    if k < 1:
        raise InputError(f"k must be at least 1, not {k}")
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(base_dir).resolve() if base_dir is not None else None
    ids = [s.sample.id if isinstance(s, Task) else s.id for s in samples]
    digest = plan_digest(ids, k, seed, tag)
    width = concurrency or runtime.cfg.concurrency
    summary = BatchSummary(out, total=len(samples) * k, concurrency=width)
    lock = FileLock(str(out / ".lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout as e:
        raise InputError(f"{out} is being written by another process", hint="wait for it, or use another directory") from e
    try:
        check_manifest(out, digest, {"samples": len(samples), "k": k, "seed": seed, "tag": tag})
        latest: dict[Any, Trajectory] = {}
        for traj in iter_records(out):
            latest[(traj.metadata.get("batch") or {}).get("key")] = traj
        done_keys = {key for key, traj in latest.items()
                     if not (retry_failed and traj.end_reason in ("error", "tool_fatal"))}
        summary.correct = sum((latest[key].reward or {}).get("accuracy") == 1.0 for key in done_keys)
        pending = [(i, a) for i in range(len(samples)) for a in range(k)
                   if pair_key(i, ids[i], a) not in done_keys]
        summary.resumed = summary.total - len(pending)
        summary.done = summary.resumed
        if on_progress:
            on_progress(summary.done, summary.total, 0.0)
        writer = ShardWriter(out, shard_size)
        flight = _InFlight()
        try:
            await _run_pending(runtime, samples, ids, pending, base, width, scorer, seed, tag, writer, flight,
                               summary, on_progress, cost_of, should_stop)
        finally:
            writer.close()
            end = time.perf_counter()
            summary.mean_in_flight = round(flight.mean(flight.last if flight.last > flight.t0 else end), 4)
            summary.elapsed_s = round(end - started, 3)
        if summary.complete:
            manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
            manifest.update(complete=True, records=summary.done, correct=summary.correct)
            atomic_write(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    finally:
        lock.release()
    return summary


async def _run_pending(runtime: AgentRuntime, samples: Sequence[Sample | Task], ids: list[str],
                       pending: list[tuple[int, int]], base: Path | None, width: int, scorer: RewardScorer | None,
                       seed: int | None, tag: str, writer: ShardWriter, flight: _InFlight, summary: BatchSummary,
                       on_progress: ProgressFn | None, cost_of: CostFn | None,
                       should_stop: Callable[[], str | None] | None) -> None:
    remaining: dict[int, int] = {}
    for i, _ in pending:
        remaining[i] = remaining.get(i, 0) + 1
    loaded: dict[int, asyncio.Future[Task]] = {}
    queue = iter(pending)

    async def task_for(i: int) -> Task:
        fut = loaded.get(i)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            loaded[i] = fut
            s = samples[i]
            try:
                if isinstance(s, Task):
                    fut.set_result(s)
                elif s.images:  # decoding images: off the loop
                    fut.set_result(await asyncio.to_thread(Task.from_sample, s, base))
                else:
                    fut.set_result(Task(s))
            except Exception as e:
                fut.set_exception(e)
        return await fut

    async def one(i: int, a: int) -> None:
        try:
            task = await task_for(i)
        except (OSError, ValueError) as e:
            raise InputError(f"sample {ids[i]}: cannot load its images: {e}",
                             hint="check the images of the data set (deepeyes curate ingest lists bad rows)") from e
        rt = runtime
        if seed is not None:
            rt = dataclasses.replace(runtime, cfg=runtime.cfg.model_copy(update={"seed": attempt_seed(seed, ids[i], a)}))
        traj = await run_trajectory(task, rt)
        traj.id = trajectory_id(tag, seed, ids[i], a)
        traj.metadata["batch"] = {"index": i, "attempt": a, "key": pair_key(i, ids[i], a)}
        if scorer is not None:
            traj.reward = (await scorer.score_many([traj]))[0].model_dump(mode="json")
        if any(ref.b64 is not None for ref in traj.image_refs()):  # PNG decoding and writing: off the loop
            writer.write(await asyncio.to_thread(store_images, traj, writer.out_dir, base))
        else:
            writer.write(store_images(traj, writer.out_dir, base))
        remaining[i] -= 1
        if remaining[i] == 0:
            loaded.pop(i, None)  # its images are no longer needed
        p, c = trajectory_tokens(traj)
        summary.prompt_tokens += p
        summary.completion_tokens += c
        summary.cost_usd += cost_of(traj) if cost_of else 0.0
        summary.ran += 1
        summary.done += 1
        summary.errors += traj.end_reason == "error"
        summary.correct += (traj.reward or {}).get("accuracy") == 1.0
        if on_progress:
            on_progress(summary.done, summary.total, summary.cost_usd)

    async def worker() -> None:
        for i, a in queue:  # one shared iterator: each pair is taken by exactly one worker
            if should_stop is not None and summary.stopped is None:
                summary.stopped = should_stop()
            if summary.stopped is not None:
                return
            flight.change(+1)
            try:
                await one(i, a)
            finally:
                flight.change(-1)

    workers = [asyncio.create_task(worker()) for _ in range(min(width, max(1, len(pending))))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()


def run_batch_sync(runtime: AgentRuntime, samples: Sequence[Sample | Task], out_dir: str | Path,
                   **kwargs: Any) -> BatchSummary:
    """``run_batch`` for code without an event loop."""
    return asyncio.run(run_batch(runtime, samples, out_dir, **kwargs))
