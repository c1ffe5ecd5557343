"""The one public function other stages call: run a benchmark on a runtime, get its summary.

``evaluate`` is what `deepeyes bench` runs per benchmark, and what RL validation calls on a
held-out set with its own runtime (its policy, its tools)::

    from deepeyes_cli.bench.api import evaluate
    summary = await evaluate("mini", runtime, out_dir=Path("runs/x/val/step-100"))
    summary["headline"]["value"]  # e.g. 62.5

``items`` may be given instead of files (a held-out split already in memory). The folder
``out_dir`` holds trajectories, scores and the report; calling again with the same folder
resumes (finished items are not asked again).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.bench.items import BenchItem
from deepeyes_cli.bench.judging import BenchScorer
from deepeyes_cli.bench.load import load_benchmark
from deepeyes_cli.bench.mcq import rotations
from deepeyes_cli.bench.registry import BenchSpec, get_spec
from deepeyes_cli.bench.runner import Progress, run_benchmark_items
from deepeyes_cli.bench.summary import summarize
from deepeyes_cli.rewards.config import RewardConfig

if TYPE_CHECKING:
    from deepeyes_cli.agent.loop import AgentRuntime


async def evaluate(benchmark: str | BenchSpec, runtime: AgentRuntime, *, out_dir: str | Path,
                   data: str | Path | None = None, items: Sequence[BenchItem] | None = None,
                   limit: int | None = None, circular: bool = False, reward: RewardConfig | None = None,
                   judge_cache: str | Path | None = None, concurrency: int | None = None,
                   on_progress: Progress | None = None, report: bool = True,
                   extra: dict[str, Any] | None = None, data_info: dict[str, Any] | None = None,
                   viewer: bool = True) -> dict[str, Any]:
    """Run ``benchmark`` (a registry name or spec) through ``runtime`` and score it; returns
    the summary (``summary["headline"]["value"]`` is the benchmark's own number)."""
    spec = get_spec(benchmark) if isinstance(benchmark, str) else benchmark
    out = Path(out_dir)
    if items is None:
        loaded = load_benchmark(spec, data, limit)
        items, data_info = loaded.items, loaded.to_json()
    else:
        items = list(items)[:limit] if limit else list(items)
        data_info = data_info or {"source": "given", "rows": len(items), "items": len(items), "malformed": 0}
    if circular and spec.multiple_choice:
        items = [r for it in items for r in rotations(it)]
    scorer = BenchScorer.build(spec, reward or RewardConfig(), judge_cache)
    # what the records depend on: resuming a folder with another model or settings is refused
    tag = "|".join(str(x) for x in (runtime.policy.name, getattr(runtime.policy, "model_name", None),
                                     sorted(runtime.tools), runtime.cfg.max_turns, runtime.cfg.temperature))
    results = await run_benchmark_items(items, spec.name, runtime, out, scorer, concurrency=concurrency,
                                        tag=tag, on_progress=on_progress)
    summary = summarize(spec, results, circular=circular and spec.multiple_choice)
    summary["data"] = data_info
    summary["run"] = {"backend": runtime.policy.name, "model": getattr(runtime.policy, "model_name", None),
                      "tools": sorted(runtime.tools), "max_turns": runtime.cfg.max_turns,
                      "temperature": runtime.cfg.temperature, **(extra or {})}
    if judge := scorer.reward.judge:
        summary["judge"] = {"calls": judge.stats.calls, "cache_hits": judge.stats.cache_hits,
                            "unjudged": judge.stats.unjudged, "endpoint": judge.config.base_url}
    if report:
        from deepeyes_cli.bench.report import write_report

        write_report(out, spec, summary, results, viewer=viewer)
    return summary
