"""`curate synthesize`: strong models write tool-using trajectories in our protocol.

Each question goes to one teacher, drawn by weight (deterministic for the run seed), which
gets ``attempts`` tries through the one loop with live tools. A trajectory is kept when it
ended with an answer, the judge (rules first, then the LLM judge) marks it correct, the
format rules find no violation, it called a tool (``require_tool_call``), and no kept
trajectory of the same question has the same text. Budget caps (dollars, tokens, model
calls, over all teachers) stop new trajectories from starting; those in flight finish and
are kept, and a rerun with a higher cap goes on. Cost is counted per teacher from the token
usage each endpoint reports and the prices in the recipe.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepeyes_cli.agent.ask import build_runtime
from deepeyes_cli.agent.batch import read_batch, run_batch, trajectory_tokens
from deepeyes_cli.agent.trajectory import Sample, Trajectory
from deepeyes_cli.curate.config import Budget, TeacherModel
from deepeyes_cli.curate.sampling import hard_samples, scorer_for, stage_tools
from deepeyes_cli.curate.store import DataDir, digest_of
from deepeyes_cli.errors import InputError
from deepeyes_cli.policy.base import Policy

SynthProgress = Callable[[int, int, float, dict[str, float]], None]  # done, total, cost, cost per model


@dataclass
class Spend:
    """What the teachers have used so far, in all and per model; checked against the budget."""

    budget: Budget
    usd: float = 0.0
    tokens: int = 0
    calls: int = 0
    per_model: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, label: str, teacher: TeacherModel, traj: Trajectory) -> float:
        p, c = trajectory_tokens(traj)
        usd = (p * teacher.input_price_per_mtok + c * teacher.output_price_per_mtok) / 1e6
        calls = len(traj.turns)
        self.usd, self.tokens, self.calls = self.usd + usd, self.tokens + p + c, self.calls + calls
        m = self.per_model.setdefault(label, {"trajectories": 0, "calls": 0, "prompt_tokens": 0,
                                              "completion_tokens": 0, "cost_usd": 0.0})
        m["trajectories"] += 1
        m["calls"] += calls
        m["prompt_tokens"] += p
        m["completion_tokens"] += c
        m["cost_usd"] += usd
        return usd

    def exceeded(self) -> str | None:
        b = self.budget
        if b.max_usd is not None and self.usd >= b.max_usd:
            return f"budget of ${b.max_usd:g} reached (${self.usd:.4f} spent)"
        if b.max_tokens is not None and self.tokens >= b.max_tokens:
            return f"budget of {b.max_tokens} tokens reached ({self.tokens} used)"
        if b.max_calls is not None and self.calls >= b.max_calls:
            return f"budget of {b.max_calls} model calls reached ({self.calls} made)"
        return None


def assign(samples: list[Sample], teachers: list[TeacherModel], seed: int) -> list[list[Sample]]:
    """Each question to one teacher, with probability proportional to its weight."""
    total = sum(t.weight for t in teachers)
    out: list[list[Sample]] = [[] for _ in teachers]
    for s in samples:
        u = int(hashlib.sha256(f"{seed}\0{s.id}".encode()).hexdigest()[:12], 16) / 16**12 * total
        acc = 0.0
        for i, t in enumerate(teachers):
            acc += t.weight
            if u < acc or i == len(teachers) - 1:
                out[i].append(s)
                break
    return out


def make_teacher(t: TeacherModel, samples: list[Sample], base_dir: Path) -> Policy:
    if t.backend == "scripted":
        if t.script == "builtin:oracle":
            from deepeyes_cli.curate.teacher import oracle_policy

            return oracle_policy(samples, base_dir)
        from deepeyes_cli.policy.scripted import ScriptedPolicy

        if not t.script:
            raise InputError(f"teacher {t.label} is scripted but has no script",
                             hint="set script: builtin:oracle or a JSON list of turns")
        return ScriptedPolicy.from_file(t.script)
    if not t.base_url:
        raise InputError(f"teacher {t.label} has no base_url", hint="set curate.synthesize.models[i].base_url")
    from deepeyes_cli.policy.openai_api import OpenAIPolicy

    return OpenAIPolicy(t.base_url, t.api_key or os.environ.get("OPENAI_API_KEY"), model_name=t.model)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")[:40] or "teacher"


def keep_reason(traj: Trajectory, require_tool_call: bool) -> str | None:
    """Why a synthesized trajectory is dropped (None: kept, before de-duplication)."""
    r = traj.reward or {}
    if traj.end_reason != "answered":
        return f"ended: {traj.end_reason}"
    if r.get("unjudged"):
        return "unjudged"
    if r.get("accuracy") != 1.0:
        return "wrong answer"
    if r.get("format") != 1.0 or r.get("violations"):
        return "format violation"
    if require_tool_call and not any(t.tool for t in traj.turns):
        return "no tool call"
    return None


def rebase(traj: Trajectory, src: Path, dst: Path) -> Trajectory:
    out = traj.model_copy(deep=True)
    for ref in out.image_refs():
        if ref.path and not os.path.isabs(ref.path):
            ref.path = os.path.relpath(src / ref.path, dst)
    return out


async def synthesize(recipe: Any, data: DataDir, on_progress: SynthProgress | None = None,
                     force: bool = False) -> dict[str, Any]:
    cfg = recipe.curate.synthesize
    if not cfg.models:
        raise InputError("no teacher models configured",
                         hint="set curate.synthesize.models: [{base_url, model, api_key: ${ENV}, weight}]")
    samples = data.load_samples()
    if cfg.only_hard:
        samples = hard_samples(data, samples)
    labels = [t.label for t in cfg.models]
    if len(set(labels)) != len(labels):
        raise InputError("two teachers have the same name", hint="give each entry of curate.synthesize.models a name")
    view = cfg.model_dump(mode="json", exclude={"budget": True, "models": {"__all__": {"api_key", "concurrency"}}})
    digest = digest_of("synthesize", [s.id for s in samples], data.samples_digest(), view,
                       recipe.agent.model_dump(mode="json", exclude={"concurrency"}), recipe.run.seed)
    done = data.done("synthesize", digest)
    if done is not None and done.get("complete") and not force:
        return {**done, "skipped": True}
    stage = data.stage("synthesize")
    teachers = {t.label: t for t in cfg.models}
    spend = Spend(cfg.budget)
    for label in labels:  # what earlier runs spent counts against the budget too
        bdir = stage / f"{_slug(label)}-{digest}"
        for traj in read_batch(bdir) if bdir.exists() else []:
            spend.add(label, teachers[label], traj)
    groups = assign(samples, cfg.models, recipe.run.seed)
    total = sum(len(g) for g in groups) * cfg.attempts
    done_count = {label: 0 for label in labels}
    scorer = scorer_for(recipe)

    async def one_teacher(t: TeacherModel, group: list[Sample], staged: Any, toolbox: Any) -> Any:
        label = t.label
        if not group:
            return None
        policy = make_teacher(t, group, data.path)

        def progress(done: int, _total: int, _cost: float) -> None:
            done_count[label] = done
            if on_progress:
                on_progress(sum(done_count.values()), total, spend.usd,
                            {k: v["cost_usd"] for k, v in spend.per_model.items()})

        try:
            rt = build_runtime(staged, policy, toolbox, digest)
            return await run_batch(rt, group, stage / f"{_slug(label)}-{digest}", k=cfg.attempts,
                                   concurrency=t.concurrency, scorer=scorer, seed=recipe.run.seed,
                                   base_dir=data.path, tag=f"{digest}-{label}", on_progress=progress,
                                   cost_of=lambda traj: spend.add(label, t, traj), should_stop=spend.exceeded,
                                   retry_failed=True)
        finally:
            await policy.aclose()

    async with stage_tools(recipe, cfg.tools, temperature=cfg.temperature, max_turns=cfg.max_turns,
                           max_tokens_per_turn=cfg.max_tokens_per_turn) as (staged, toolbox):
        summaries = await asyncio.gather(*(one_teacher(t, g, staged, toolbox)
                                           for t, g in zip(cfg.models, groups, strict=True)))
    kept, dropped, per_model = _collect(stage, digest, cfg, labels)
    data.write_jsonl(stage / "kept.jsonl", [t.model_dump(mode="json") for t in kept])
    stopped = next((s.stopped for s in summaries if s is not None and s.stopped), None)
    complete = all(s is None or s.complete for s in summaries)
    summary = {"questions": len(samples), "attempts": cfg.attempts, "trajectories": sum(dropped.values()) + len(kept),
               "kept": len(kept), "questions_with_kept": len({t.sample.id for t in kept}), "dropped": dropped,
               "models": per_model, "cost_usd": sum(m["cost_usd"] for m in per_model.values()),
               "complete": complete, "stopped": stopped}
    data.finish("synthesize", digest, summary)
    return summary


def _collect(stage: Path, digest: str, cfg: Any, labels: list[str]) -> tuple[
        list[Trajectory], dict[str, int], dict[str, dict[str, float]]]:
    """Kept trajectories (images re-based on the stage directory), drop reasons, usage per model
    (over every record, resumed runs included)."""
    kept: list[Trajectory] = []
    seen: set[tuple[str, str]] = set()
    dropped: dict[str, int] = {}
    per_model: dict[str, dict[str, float]] = {}
    teachers = {t.label: t for t in cfg.models}
    for label in labels:
        bdir = stage / f"{_slug(label)}-{digest}"
        usage = Spend(Budget())
        if not bdir.exists():
            continue
        for traj in read_batch(bdir):
            usage.add(label, teachers[label], traj)
            why = keep_reason(traj, cfg.require_tool_call)
            key = (traj.sample.id, traj.response_text)
            if why is None and key in seen:
                why = "duplicate"
            if why is not None:
                dropped[why] = dropped.get(why, 0) + 1
                continue
            seen.add(key)
            traj.metadata["teacher"] = label
            kept.append(rebase(traj, bdir, stage))
        m = usage.per_model.get(label, {"trajectories": 0, "calls": 0, "prompt_tokens": 0,
                                        "completion_tokens": 0, "cost_usd": 0.0})
        m["kept"] = sum(1 for t in kept if t.metadata.get("teacher") == label)
        per_model[label] = m
    return kept, dropped, per_model


def read_kept(data: DataDir) -> list[Trajectory]:
    path = data.path / "synthesize" / "kept.jsonl"
    return [Trajectory.model_validate(r) for r in data.read_jsonl(path)]
