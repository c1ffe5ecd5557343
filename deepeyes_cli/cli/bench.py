"""`deepeyes bench NAME... | bench ls | bench compare RUN_A RUN_B`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from deepeyes_cli.cli.options import DryRunOpt, RecipeOpt, RunDirOpt


def _ls(as_json: bool) -> None:
    from deepeyes_cli.bench.registry import REGISTRY
    from deepeyes_cli.cli.console import console

    if as_json:
        typer.echo(json.dumps([{"name": s.name, "title": s.title, "layout": s.layout, "download": s.download,
                                "search": s.search, "multiple_choice": s.multiple_choice,
                                "headline": s.headline_label, "paper": s.paper} for s in REGISTRY.values()],
                              indent=2))
        return
    from rich.text import Text

    console.print("benchmarks (data: --data PATH, or $DEEPEYES_BENCH_DATA/<name>/)", highlight=False)
    for s in REGISTRY.values():
        paper = "" if s.paper is None else f"; paper DeepEyesV2-7B {s.paper:g}"
        console.print(Text.assemble(("\n" + s.name, "bold"), f"  {s.title}  [{'code+search' if s.search else 'code'}"
                                    f"{', multiple choice' if s.multiple_choice else ''}] {s.headline_label}{paper}"),
                      soft_wrap=True)
        console.print(Text(f"  files: {s.layout}"), soft_wrap=True)
        console.print(Text(f"  download: {s.download}"), soft_wrap=True)


def _compare(run_a: Path, run_b: Path, as_json: bool, samples: int) -> None:
    from rich.table import Table

    from deepeyes_cli.bench.compare import compare_runs
    from deepeyes_cli.cli.console import console

    out = compare_runs(run_a, run_b, samples=samples)
    if as_json:
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    for name, c in out.items():
        console.print(f"[bold]{name}[/]: {c['common_items']} common items, A {c['mean_a']} → B {c['mean_b']}, "
                      f"Δ {c['delta']:+} (95% CI {c['ci95'][0]:+} … {c['ci95'][1]:+}); "
                      f"{c['gained']} gained, {c['lost']} lost", highlight=False)
        t = Table("category", "items", "A", "B", "Δ")
        for cat, v in c["per_category"].items():
            t.add_row(cat, str(v["n"]), f"{v['a']}", f"{v['b']}", f"{v['delta']:+}")
        console.print(t)
        if c["flipped"]:
            f = Table("item", "category", "answer", "A said", "B said", "", title="flipped items")
            for x in c["flipped"][:50]:
                f.add_row(x["id"], x["category"], str(x["answer"]), str(x["a"])[:60], str(x["b"])[:60],
                          "[green]gained[/]" if x["direction"] == "gained" else "[red]lost[/]")
            console.print(f)
            if len(c["flipped"]) > 50:
                console.print(f"… and {len(c['flipped']) - 50} more (--json lists all)")


def _flags(model: str | None, url: str | None, backend: str | None, limit: int | None, search: str | None,
           tools: str | None, concurrency: int | None, circular: bool, max_turns: int | None) -> list[str]:
    flags = [f"model.path={model}"] if model and not url else []
    if url:
        flags += [f"policy.url={url}", "policy.backend=openai"] + ([f"policy.model_name={model}"] if model else [])
    if backend:
        flags.append(f"policy.backend={backend}")
    for key, value in (("limit", limit), ("search", search), ("tools", tools), ("concurrency", concurrency),
                       ("max_turns", max_turns)):
        if value is not None:
            flags.append(f"bench.{key}={value}")
    if circular:
        flags.append("bench.circular=true")
    return flags


def bench(
    args: Annotated[list[str], typer.Argument(metavar="NAME... | ls | compare RUN_A RUN_B", show_default=False,
                                              help="Benchmarks to run (see `deepeyes bench ls`); recipe overrides "
                                                   "(a.b=c) anywhere.")],
    recipe: RecipeOpt = None,
    model: Annotated[str | None, typer.Option("--model", "-m", show_default=False,
                                              help="Checkpoint (local dir, hub id, builtin:tiny); with --url: the "
                                                   "served model id.")] = None,
    url: Annotated[str | None, typer.Option(help="OpenAI-compatible server (vLLM), implies --backend openai.",
                                            show_default=False)] = None,
    backend: Annotated[str | None, typer.Option(help="transformers | vllm | openai | scripted.",
                                                show_default=False)] = None,
    data: Annotated[Path | None, typer.Option(help="The benchmark's file or folder (several benchmarks: a folder "
                                                   "of <name>/). Default: $DEEPEYES_BENCH_DATA/<name>/.",
                                              show_default=False)] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="First N items of each benchmark.",
                                              show_default=False)] = None,
    search: Annotated[str | None, typer.Option(help="live | replay | off (default: search benchmarks only, live).",
                                               show_default=False)] = None,
    tools: Annotated[str | None, typer.Option(help="on | off | both (both: the tools-off ablation too).",
                                              show_default=False)] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Items in flight.", show_default=False)] = None,
    circular: Annotated[bool, typer.Option("--circular", help="Multiple choice: every rotation of the options.")]
    = False,
    max_turns: Annotated[int | None, typer.Option(min=1, help="Model calls per item (default 11).",
                                                  show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="ls / compare: print JSON.")] = False,
    run_dir: RunDirOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Evaluate a checkpoint on benchmarks through the agent loop, scored as each benchmark
    defines it; a report (Markdown, JSON, plots, HTML linked to every trajectory) per benchmark.

    Resumable: run the same command with --run-dir of the interrupted run; finished items are
    not asked again. `deepeyes bench ls` lists the benchmarks and where to download them;
    `deepeyes bench compare RUN_A RUN_B` shows flipped items and a bootstrap CI of the change."""
    from deepeyes_cli.errors import InputError
    from deepeyes_cli.recipe.loader import is_override

    words = [a for a in args if not is_override(a)]
    overrides = [a for a in args if is_override(a)]
    if words[:1] == ["ls"]:
        return _ls(as_json)
    if words[:1] == ["compare"]:
        if len(words) != 3:
            raise InputError("compare takes two runs", hint="deepeyes bench compare runs/A runs/B")
        from deepeyes_cli.bench.config import BenchConfig

        return _compare(Path(words[1]), Path(words[2]), as_json, BenchConfig().bootstrap_samples)
    if not words:
        raise InputError("no benchmark named", hint="deepeyes bench vstar -r 7b (see `deepeyes bench ls`)")
    for value, allowed, flag in ((search, ("live", "replay", "off"), "--search"), (tools, ("on", "off", "both"),
                                                                                    "--tools")):
        if value is not None and value not in allowed:
            raise InputError(f"{flag} {value}: not one of {', '.join(allowed)}", hint=f"{flag} {allowed[0]}")
    from deepeyes_cli.bench.registry import get_spec

    specs = list({s.name: s for s in map(get_spec, words)}.values())
    _run(specs, recipe, [*overrides, *_flags(model, url, backend, limit, search, tools, concurrency, circular,
                                              max_turns)], data, run_dir, dry_run)


def _run(specs: list[Any], recipe: str | None, overrides: list[str], data: Path | None, run_dir: Path | None,
         dry_run: bool) -> None:
    import asyncio
    import contextlib
    import sys

    from deepeyes_cli.bench import suite
    from deepeyes_cli.cli.console import console, err_console, print_warning
    from deepeyes_cli.cli.options import start_stage

    stage = start_stage("bench", recipe, overrides, run_dir=run_dir, dry_run=dry_run,
                        plan=lambda resolved: suite.plan(resolved.recipe, specs, data))
    if stage is None:
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from deepeyes_cli.policy.factory import make_policy

    r = stage.recipe
    out = stage.run_dir.path
    err_console.print(f"run directory {out}" + (" (resumed)" if stage.run_dir.resumed else "")
                      + f"; resume after an interruption with --run-dir {out}", highlight=False)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err_console)

    def factory(spec: Any, variant: str, n: int) -> Any:
        task = progress.add_task(f"{spec.name} ({variant})", total=n)
        return lambda done, total: progress.update(task, completed=done, total=total)

    def loaded(info: Any) -> None:
        if info.malformed:
            print_warning(f"{info.spec.name}: {info.malformed} of {info.rows} rows malformed and skipped "
                          f"({'; '.join(info.examples[:3])})")

    async def main() -> list[dict[str, Any]]:
        policy = make_policy(r)
        try:
            return await suite.run_suite(r, specs, policy, out, data=data, digest=stage.resolved.digest,
                                         progress=factory, on_loaded=loaded)
        finally:
            await policy.aclose()

    try:
        with contextlib.redirect_stdout(sys.stderr), progress:
            summaries = asyncio.run(main())
    except KeyboardInterrupt:
        from deepeyes_cli.errors import Interrupted

        raise Interrupted("interrupted", hint=f"finished items are kept; resume with --run-dir {out}") from None
    _print(summaries, out)
    for s in summaries:
        if s["unjudged"]:
            print_warning(f"{s['folder']}: {s['unjudged']} items unjudged (counted wrong); set reward.judge.base_url "
                          "and run again with the same --run-dir to judge them")
        if s["errors"]:
            print_warning(f"{s['folder']}: {s['errors']} items failed in the backend; the same command retries them")
    console.print(f"report: {out / 'report.md'}", highlight=False)


def _print(summaries: list[dict[str, Any]], out: Path) -> None:
    from rich.table import Table

    from deepeyes_cli.cli.console import console

    t = Table(title=f"{out}")
    for col in ("benchmark", "variant", "headline", "paper DeepEyesV2-7B", "items", "unjudged"):
        t.add_column(col)
    for s in summaries:
        h = s["headline"]
        t.add_row(s["benchmark"], str(s["run"].get("variant")), f"{h['value']} ({h['label']})",
                  "—" if h["paper_deepeyesv2_7b"] is None else f"{h['paper_deepeyesv2_7b']:g}", str(s["items"]),
                  str(s["unjudged"]))
    console.print(t)
