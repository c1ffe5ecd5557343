"""`curate difficulty` and `curate tool-benefit`: sample the base model through the one loop.

``get_policy`` builds (or returns the already built) base-model policy; it is called only
when a stage has work to do, so a finished stage never loads the model.

difficulty: k answers per question (temperature 1, tools on), scored with ``rewards/``;
a question is kept (hard) when at most ``max_correct`` of k are correct. tool-benefit: k
attempts with tools and k without on the same questions; tools help when the accuracy gain
reaches ``min_delta`` (and the accuracy with tools ``min_accuracy_with_tools``). The
rollouts stay in the stage's batch directories (``deepeyes view`` opens their shards), the
per-question results go to ``questions.jsonl``. Both resume through the batch runner.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from deepeyes_cli.agent.batch import ProgressFn, read_batch, run_batch
from deepeyes_cli.agent.loop import AgentRuntime
from deepeyes_cli.agent.trajectory import Sample, Trajectory
from deepeyes_cli.curate.store import DataDir, digest_of
from deepeyes_cli.policy.base import Policy


@asynccontextmanager
async def stage_tools(recipe: Any, tools: Sequence[str] | None, **agent: Any) -> AsyncIterator[tuple[Any, Any]]:
    """The recipe with the stage's tools and agent settings (temperature, turns …), and its
    toolbox: one sandbox executor for the whole stage, shared by every policy it runs."""
    from deepeyes_cli.tools.registry import open_toolbox

    names = list(recipe.agent.tools if tools is None else tools)
    cfg = recipe.agent.model_copy(update={"tools": names, **{k: v for k, v in agent.items() if v is not None}})
    staged = recipe.model_copy(update={"agent": cfg})
    async with open_toolbox(staged, names) as toolbox:
        yield staged, toolbox


@asynccontextmanager
async def stage_runtime(recipe: Any, policy: Policy, tools: Sequence[str] | None, digest: str | None = None,
                        **agent: Any) -> AsyncIterator[AgentRuntime]:
    """The loop's runtime for one policy with the stage's tools and agent settings."""
    from deepeyes_cli.agent.ask import build_runtime

    async with stage_tools(recipe, tools, **agent) as (staged, toolbox):
        yield build_runtime(staged, policy, toolbox, digest)


def policy_identity(recipe: Any) -> dict[str, Any]:
    p = recipe.policy
    return {"backend": p.backend, "model": recipe.model.path, "url": p.url, "served": p.model_name, "script": p.script}


def scorer_for(recipe: Any) -> Any:
    from deepeyes_cli.rewards.reward import RewardScorer, default_cache_path

    return RewardScorer.from_config(recipe.reward, default_cache_path(recipe.reward, recipe.run.cache_dir))


def correct(traj: Trajectory) -> bool:
    return (traj.reward or {}).get("accuracy") == 1.0


def per_question(trajs: Sequence[Trajectory]) -> dict[str, list[Trajectory]]:
    out: dict[str, list[Trajectory]] = {}
    for t in trajs:
        out.setdefault(t.sample.id, []).append(t)
    return out


def _agent_view(recipe: Any) -> dict[str, Any]:
    return recipe.agent.model_dump(mode="json", exclude={"concurrency", "tool_timeout_s", "generation_timeout_s"})


async def difficulty(recipe: Any, data: DataDir, get_policy: Callable[[], Policy], on_progress: ProgressFn | None = None,
                     force: bool = False) -> dict[str, Any]:
    cfg = recipe.curate.difficulty
    samples = data.load_samples()
    digest = digest_of("difficulty", data.samples_digest(), cfg.model_dump(mode="json", exclude={"concurrency"}),
                       _agent_view(recipe), policy_identity(recipe), recipe.run.seed)
    done = data.done("difficulty", digest)
    if done is not None and not force:
        return {**done, "skipped": True}
    stage = data.stage("difficulty")
    batch_dir = stage / f"batch-{digest}"
    async with stage_runtime(recipe, get_policy(), cfg.tools, digest, temperature=cfg.temperature,
                             max_turns=cfg.max_turns, max_tokens_per_turn=cfg.max_tokens_per_turn) as rt:
        s = await run_batch(rt, samples, batch_dir, k=cfg.k, concurrency=cfg.concurrency, scorer=scorer_for(recipe),
                            seed=recipe.run.seed, base_dir=data.path, tag=digest, on_progress=on_progress,
                            retry_failed=True)
    by_q = per_question(read_batch(batch_dir))
    rows, hist = [], Counter[int]()
    for sample in samples:
        trajs = by_q.get(sample.id, [])
        n = sum(correct(t) for t in trajs)
        hist[n] += 1
        rows.append({"id": sample.id, "data_source": sample.data_source, "capability": _capability(sample),
                     "k": len(trajs), "correct": n, "pass_rate": n / len(trajs) if trajs else None,
                     "unjudged": sum(bool((t.reward or {}).get("unjudged")) for t in trajs),
                     "kept": n <= cfg.max_correct})
    data.write_jsonl(stage / "questions.jsonl", rows)
    summary = {"batch": batch_dir.name, "questions": len(rows), "kept": sum(r["kept"] for r in rows),
               "k": cfg.k, "max_correct": cfg.max_correct, "histogram": {str(i): hist[i] for i in range(cfg.k + 1)},
               "trajectories": s.done, "errors": s.errors, "elapsed_s": s.elapsed_s, "mean_in_flight": s.mean_in_flight}
    data.finish("difficulty", digest, summary)
    return summary


def _capability(sample: Sample) -> str:
    return str(sample.metadata.get("capability") or sample.data_source)


def hard_samples(data: DataDir, samples: list[Sample]) -> list[Sample]:
    """The questions difficulty kept (all of them when difficulty has not run)."""
    path = data.path / "difficulty" / "questions.jsonl"
    if not path.exists():
        return samples
    kept = {r["id"] for r in data.read_jsonl(path) if r["kept"]}
    return [s for s in samples if s.id in kept]


async def tool_benefit(recipe: Any, data: DataDir, get_policy: Callable[[], Policy], on_progress: ProgressFn | None = None,
                       force: bool = False) -> dict[str, Any]:
    cfg = recipe.curate.tool_benefit
    samples = hard_samples(data, data.load_samples())
    digest = digest_of("tool_benefit", [s.id for s in samples], data.samples_digest(),
                       cfg.model_dump(mode="json", exclude={"concurrency", "min_delta", "min_accuracy_with_tools"}),
                       _agent_view(recipe), policy_identity(recipe), recipe.run.seed)
    rule = (cfg.min_delta, cfg.min_accuracy_with_tools)
    done = data.done("tool_benefit", digest_of(digest, rule))
    if done is not None and not force:
        return {**done, "skipped": True}
    stage = data.stage("tool_benefit")
    total = len(samples) * cfg.k * 2
    results: dict[str, dict[str, list[Trajectory]]] = {}
    offset = 0
    for arm, tools in (("with_tools", None), ("without_tools", [])):
        batch_dir = stage / f"{arm}-{digest}"

        def progress(done: int, _total: int, cost: float, base: int = offset) -> None:
            if on_progress:
                on_progress(base + done, total, cost)

        async with stage_runtime(recipe, get_policy(), tools, digest, temperature=cfg.temperature,
                                 max_turns=cfg.max_turns, max_tokens_per_turn=cfg.max_tokens_per_turn) as rt:
            await run_batch(rt, samples, batch_dir, k=cfg.k, concurrency=cfg.concurrency, scorer=scorer_for(recipe),
                            seed=recipe.run.seed, base_dir=data.path, tag=f"{digest}-{arm}", on_progress=progress,
                            retry_failed=True)
        results[arm] = per_question(read_batch(batch_dir))
        offset += len(samples) * cfg.k
    rows = []
    for sample in samples:
        on, off = results["with_tools"].get(sample.id, []), results["without_tools"].get(sample.id, [])
        acc_on = sum(map(correct, on)) / len(on) if on else 0.0
        acc_off = sum(map(correct, off)) / len(off) if off else 0.0
        delta = acc_on - acc_off
        rows.append({"id": sample.id, "data_source": sample.data_source, "capability": _capability(sample),
                     "acc_tools": acc_on, "acc_no_tools": acc_off, "delta": delta,
                     "tools_help": delta >= cfg.min_delta and acc_on >= cfg.min_accuracy_with_tools})
    data.write_jsonl(stage / "questions.jsonl", rows)
    summary = {"questions": len(rows), "tools_help": sum(r["tools_help"] for r in rows), "k": cfg.k,
               "mean_acc_tools": _mean([r["acc_tools"] for r in rows]),
               "mean_acc_no_tools": _mean([r["acc_no_tools"] for r in rows]),
               "rule": {"min_delta": cfg.min_delta, "min_accuracy_with_tools": cfg.min_accuracy_with_tools}}
    data.finish("tool_benefit", digest_of(digest, rule), summary)
    return summary


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def batch_dirs(data: DataDir, stage: str) -> list[Path]:
    return sorted(p for p in (data.path / stage).glob("*-*") if (p / "manifest.json").exists())
