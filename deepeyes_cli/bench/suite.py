"""What `deepeyes bench NAME...` runs: each benchmark, with tools and/or without, through
one policy, each in its own folder of the run directory, then an index of them all."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepeyes_cli.bench.load import Loaded, data_root, load_benchmark
from deepeyes_cli.bench.registry import BenchSpec
from deepeyes_cli.fileio import atomic_write

SEARCH_TOOLS = ["search", "image_search"]
# (spec, variant, total items) -> progress callback for that benchmark
ProgressFactory = Callable[[BenchSpec, str, int], Callable[[int, int], None]]


@dataclass(frozen=True)
class Variant:
    name: str  # "tools" | "no-tools"
    tools: list[str]

    def folder(self, spec: BenchSpec) -> str:
        return spec.name if self.name == "tools" else f"{spec.name}-{self.name}"


def variants(spec: BenchSpec, bench: Any) -> list[Variant]:
    search = bench.search != "off" and (spec.search or bench.search in ("live", "replay"))
    on = Variant("tools", ["code", *(SEARCH_TOOLS if search else [])])
    off = Variant("no-tools", [])
    return {"on": [on], "off": [off], "both": [on, off]}[bench.tools]


def data_for(spec: BenchSpec, data: str | Path | None, n_benchmarks: int, bench: Any) -> str | Path | None:
    """--data is the benchmark's own path when one benchmark runs, a folder of <name>/ when several."""
    if data is not None:
        return data if n_benchmarks == 1 else Path(data) / spec.name
    if bench.data_dir:
        return Path(bench.data_dir).expanduser() / spec.name
    return None


def variant_recipe(recipe: Any, variant: Variant) -> Any:
    """The recipe with the bench section's evaluation settings applied to the agent."""
    b = recipe.bench
    agent = recipe.agent.model_copy(update={
        "max_turns": b.max_turns, "temperature": b.temperature, "tools": list(variant.tools),
        "concurrency": b.concurrency,
        **({"max_tokens_per_turn": b.max_tokens_per_turn} if b.max_tokens_per_turn else {})})
    update: dict[str, Any] = {"agent": agent}
    if b.search in ("live", "replay"):
        update["search"] = recipe.search.model_copy(update={"mode": b.search})
    return recipe.model_copy(update=update)


def plan(recipe: Any, specs: Sequence[BenchSpec], data: str | Path | None) -> list[str]:
    b = recipe.bench
    lines = []
    for spec in specs:
        try:
            where = str(data_root(spec, data_for(spec, data, len(specs), b))) if spec.name != "mini" else "built in"
        except Exception as e:  # the plan shows what is missing instead of failing
            where = f"(no data: {e})"
        for v in variants(spec, b):
            lines.append(f"{v.folder(spec)}: {where}; tools {', '.join(v.tools) or 'none'}; "
                         f"≤{b.max_turns} model calls, temperature {b.temperature:g}"
                         + (f", first {b.limit} items" if b.limit else "") + (", circular" if b.circular else ""))
    lines.append(f"{b.concurrency} items in flight; judge: {recipe.reward.judge.base_url or 'none (rules only)'}")
    return lines


async def run_suite(recipe: Any, specs: Sequence[BenchSpec], policy: Any, run_dir: Path, *,
                    data: str | Path | None = None, digest: str | None = None,
                    progress: ProgressFactory | None = None,
                    on_loaded: Callable[[Loaded], None] | None = None) -> list[dict[str, Any]]:
    from deepeyes_cli.agent.ask import build_runtime
    from deepeyes_cli.bench.api import evaluate
    from deepeyes_cli.rewards.reward import default_cache_path
    from deepeyes_cli.tools.registry import open_toolbox

    b = recipe.bench
    summaries = []
    for spec in specs:
        loaded = load_benchmark(spec, data_for(spec, data, len(specs), b), b.limit, b.split)
        if on_loaded is not None:
            on_loaded(loaded)
        for v in variants(spec, b):
            r = variant_recipe(recipe, v)
            n = len(loaded.items)  # the runner reports the real total (rotations included)
            async with open_toolbox(r, v.tools) as box:
                runtime = build_runtime(r, policy, box, digest)
                summary = await evaluate(
                    spec, runtime, out_dir=run_dir / v.folder(spec), items=loaded.items, circular=b.circular,
                    reward=r.reward, judge_cache=default_cache_path(r.reward, r.run.cache_dir),
                    concurrency=b.concurrency, on_progress=progress(spec, v.name, n) if progress else None,
                    extra={"variant": v.name, "search_mode": r.search.mode if "search" in v.tools else None},
                    data_info=loaded.to_json(), viewer=b.viewer)
            summary["folder"] = v.folder(spec)
            summaries.append(summary)
            write_index(run_dir, summaries)
    return summaries


def write_index(run_dir: Path, summaries: Sequence[dict[str, Any]]) -> None:
    """``summary.json`` and ``report.md`` of the whole run: one row per benchmark and variant."""
    rows = ["| benchmark | variant | headline | paper DeepEyesV2-7B | items | unjudged | report |", "|---" * 7 + "|"]
    for s in summaries:
        h = s["headline"]
        rows.append(f"| {s['benchmark']} | {s['run'].get('variant')} | **{h['value']}** {h['label']} | "
                    f"{'—' if h['paper_deepeyesv2_7b'] is None else h['paper_deepeyesv2_7b']} | {s['items']} | "
                    f"{s['unjudged']} | [{s['folder']}/report.md]({s['folder']}/report.md) |")
    atomic_write(run_dir / "report.md", "# Benchmark run\n\n" + "\n".join(rows) + "\n")
    atomic_write(run_dir / "summary.json", json.dumps(
        {s["folder"]: {k: s[k] for k in ("benchmark", "headline", "items", "scored", "unjudged", "errors", "run")}
         for s in summaries}, indent=2, default=str) + "\n")
