"""Score a trajectory JSONL file in place or into another file, resumably.

Finished records are appended (one flushed line each) to a journal beside the output,
``<output>.judging.jsonl``. A run killed at any point (kill -9 included) leaves the input
untouched and the journal holding every finished record; the next run reads the journal
and scores only what is missing. Journal entries carry a digest of the scoring settings, so
a run with other weights or another judge does not pick up the old verdicts. When all
records are done the output is written to a temporary file and renamed over the target
(atomic), then the journal is removed; if the input changed meanwhile (a writer still
appending to it), scoring in place stops instead of dropping the new records. Records
already carrying a reward are kept unless ``rescore``; unjudged ones are tried again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from deepeyes_cli.agent.trajectory import Trajectory, read_jsonl
from deepeyes_cli.errors import InputError
from deepeyes_cli.fileio import atomic_output
from deepeyes_cli.rewards.config import RewardConfig
from deepeyes_cli.rewards.reward import RewardBreakdown, RewardScorer

CHUNK = 512  # records prepared and judged together; the journal is fsynced after each chunk


@dataclass
class SourceStats:
    records: int = 0
    scored: int = 0  # with an accuracy (not unjudged)
    correct: float = 0.0
    score_sum: float = 0.0
    format_ok: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None


@dataclass
class JudgeSummary:
    input: Path
    output: Path
    records: int = 0
    scored_now: int = 0
    resumed: int = 0  # taken from the journal of an interrupted run
    kept: int = 0  # already scored in the input, left as they were
    unjudged: int = 0
    by_source: dict[str, SourceStats] = field(default_factory=dict)
    decided_by: Counter[str] = field(default_factory=Counter)  # rule / judge / unjudged (all records)
    rules: Counter[str] = field(default_factory=Counter)
    judge_calls: int = 0
    judge_retries: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0

    def add(self, reward: dict[str, Any]) -> None:
        st = self.by_source.setdefault(str(reward.get("data_source", "unknown")), SourceStats())
        st.records += 1
        self.decided_by[str(reward.get("decided_by"))] += 1
        if reward.get("rule"):
            self.rules[str(reward["rule"])] += 1
        if reward.get("format") == 1.0:
            st.format_ok += 1
        if reward.get("accuracy") is None:
            self.unjudged += 1
            return
        st.scored += 1
        st.correct += float(reward["accuracy"])
        st.score_sum += float(reward.get("score") or 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "input": str(self.input), "output": str(self.output), "records": self.records,
            "scored_now": self.scored_now, "resumed": self.resumed, "kept": self.kept, "unjudged": self.unjudged,
            "by_source": {k: {"records": v.records, "scored": v.scored, "accuracy": v.accuracy,
                              "mean_score": v.score_sum / v.scored if v.scored else None,
                              "format_ok": v.format_ok} for k, v in sorted(self.by_source.items())},
            "decided_by": dict(self.decided_by), "rules": dict(self.rules), "judge_calls": self.judge_calls,
            "judge_retries": self.judge_retries, "cache_hits": self.cache_hits,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd, "elapsed_s": round(self.elapsed_s, 3),
        }


def journal_path(output: Path) -> Path:
    return output.with_name(output.name + ".judging.jsonl")


# Settings that only change how the judge is reached, not what a verdict is.
_TRANSPORT = {"concurrency", "max_retries", "backoff_s", "backoff_max_s", "parse_retries", "timeout_s",
              "base_url", "api_key", "input_price_per_mtok", "output_price_per_mtok"}


def scoring_digest(config: RewardConfig) -> str:
    """A short digest of the settings a reward depends on (weights, rules, judge model, prompts)."""
    data = config.model_dump(mode="json", exclude={"cache_path": True, "judge": _TRANSPORT})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def _read_journal(path: Path, digest: str) -> dict[int, tuple[str, dict[str, Any]]]:
    done: dict[int, tuple[str, dict[str, Any]]] = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # torn last line of a killed run: that record is scored again
        try:
            entry = json.loads(line)
            if entry.get("config") != digest:
                continue  # scored with other settings: score it again
            done[int(entry["line"])] = (str(entry["id"]), dict(entry["reward"]))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path} is damaged: {e}",
                             hint="delete it to score the unfinished records from the start") from e
    return done


def _needs_scoring(traj: Trajectory, rescore: bool) -> bool:
    return rescore or traj.reward is None or bool(traj.reward.get("unjudged"))


def _rebase_images(traj: Trajectory, src_dir: Path, dst_dir: Path) -> None:
    """Keep relative image paths pointing at the same files when the output moves directory."""
    for ref in traj.image_refs():
        if ref.path and not os.path.isabs(ref.path):
            ref.path = os.path.relpath(src_dir / ref.path, dst_dir)


def judge_file(scorer: RewardScorer, input_path: Path, output_path: Path | None = None, *, rescore: bool = False,
               on_progress: Callable[[int, int], None] | None = None) -> JudgeSummary:
    """Score every record of ``input_path`` into ``output_path`` (default: in place)."""
    started = time.perf_counter()
    if not input_path.is_file():
        raise InputError(f"no such trajectory file: {input_path}", hint="pass a .jsonl written by the agent loop")
    output = output_path or input_path
    summary = JudgeSummary(input_path, output)
    lock = FileLock(str(output.with_name(output.name + ".lock")), timeout=0)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout as e:
        raise InputError(f"{output} is being scored by another process",
                         hint="wait for it to finish, or write somewhere else with -o") from e
    except OSError as e:
        raise InputError(f"cannot write beside {output}: {e.strerror or e}",
                         hint="pass -o with a writable path") from e
    try:
        before = _stat(input_path)
        try:
            trajs = list(read_jsonl(input_path))
        except UnicodeDecodeError as e:
            raise InputError(f"{input_path} is not UTF-8 text: {e.reason}",
                             hint="pass a .jsonl written by the agent loop") from e
        except ValueError as e:
            raise InputError(_one_line(str(e)), hint="the file must hold one trajectory record per line") from e
        summary.records = len(trajs)
        journal = journal_path(output)
        digest = scoring_digest(scorer.config)
        finished = _read_journal(journal, digest)
        todo: list[int] = []
        for i, traj in enumerate(trajs):
            entry = finished.get(i)
            if entry is not None and entry[0] == traj.id:
                traj.reward = entry[1]
                summary.resumed += 1
            elif _needs_scoring(traj, rescore):
                todo.append(i)
            else:
                summary.kept += 1
        done = summary.records - len(todo)
        if on_progress:
            on_progress(done, summary.records)
        with open(journal, "a", encoding="utf-8") as jf:

            def record(i: int, b: RewardBreakdown) -> None:
                nonlocal done
                trajs[i].reward = b.model_dump(mode="json")
                jf.write(f'{{"line": {i}, "id": {json.dumps(trajs[i].id)}, "config": "{digest}", '
                         f'"reward": {b.model_dump_json()}}}\n')
                jf.flush()  # in the OS's hands: survives kill -9
                done += 1
                if on_progress:
                    on_progress(done, summary.records)

            asyncio.run(_score_chunks(scorer, trajs, todo, record, lambda: os.fsync(jf.fileno())))
        summary.scored_now = len(todo)
        if output == input_path and _stat(input_path) != before:
            raise InputError(f"{input_path} changed while it was being scored (is something still writing to it?)",
                             hint="re-run when the writer is done: finished records are kept in "
                                  f"{journal.name}; or write elsewhere with -o")
        _write_output(trajs, input_path, output)
        journal.unlink(missing_ok=True)
    finally:
        lock.release()
        # Leave no lock file beside the user's data. (A third run racing this unlink could
        # lock a fresh file while a second still holds the old one: rare, and the journal's
        # line/id check keeps the output consistent even then.)
        Path(lock.lock_file).unlink(missing_ok=True)
    for traj in trajs:
        if traj.reward is not None:
            summary.add(traj.reward)
    if scorer.judge is not None:
        st = scorer.judge.stats
        summary.judge_calls, summary.judge_retries, summary.cache_hits = st.calls, st.retries, st.cache_hits
        summary.prompt_tokens, summary.completion_tokens = st.prompt_tokens, st.completion_tokens
        summary.cost_usd = st.cost_usd(scorer.judge.config)
    summary.elapsed_s = time.perf_counter() - started
    return summary


async def _score_chunks(scorer: RewardScorer, trajs: list[Trajectory], todo: list[int],
                        record: Callable[[int, RewardBreakdown], None], checkpoint: Callable[[], None]) -> None:
    for start in range(0, len(todo), CHUNK):
        idxs = todo[start:start + CHUNK]

        def on_scored(j: int, b: RewardBreakdown, idxs: list[int] = idxs) -> None:
            record(idxs[j], b)

        await scorer.score_many([trajs[i] for i in idxs], on_scored=on_scored)
        checkpoint()


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def _one_line(message: str) -> str:
    """A pydantic error spread over lines, as one line (the CLI prints one-line errors)."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip() and "errors.pydantic.dev" not in ln]
    return " ".join(lines)[:400]


def _write_output(trajs: list[Trajectory], input_path: Path, output: Path) -> None:
    src_dir, dst_dir = input_path.resolve().parent, output.resolve().parent
    with atomic_output(output, keep_mode=True) as f:  # scoring in place keeps the file's permissions
        for traj in trajs:
            if src_dir != dst_dir:
                _rebase_images(traj, src_dir, dst_dir)
            f.write(traj.model_dump_json() + "\n")
