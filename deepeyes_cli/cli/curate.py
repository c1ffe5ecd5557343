"""`deepeyes curate ingest | difficulty | tool-benefit | synthesize | split | export | run | report`.

Every stage reads and writes one data directory (layout: ``curate/store.py``), resumes
after an interruption, and ends with a summary table; ``run`` does them all in order.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from deepeyes_cli.cli.options import DryRunOpt, OverridesArg, RecipeOpt, RunDirOpt, group

app = group("Build SFT and RL data the way the paper did: difficulty filter, tool-benefit check, synthesis, "
            "split, exports. Every stage resumes after an interruption.")

DataArg = Annotated[Path, typer.Argument(show_default=False, metavar="DATA", help="The data directory (from ingest).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Run the stage again even if its output is complete.")]
_OVERRIDE = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)+=")


def _stage(name: str, recipe: str | None, overrides: list[str] | None, run_dir: Path | None, dry_run: bool,
           plan: list[str]) -> Any:
    from deepeyes_cli.cli.options import start_stage

    return start_stage(f"curate-{name}", recipe, overrides, run_dir=run_dir, dry_run=dry_run,
                       plan=lambda _r: plan)


@contextmanager
def _bars(label: str) -> Iterator[Callable[[str], Callable[[int, int, float], None]]]:
    """Rich progress bars, one per stage, with ETA and the cost so far."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from deepeyes_cli.cli.console import err_console

    progress = Progress(TextColumn("{task.description:<13}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), TextColumn("${task.fields[cost]:.4f}"),
                        console=err_console, transient=False, disable=not err_console.is_terminal)
    tasks: dict[str, Any] = {}

    def factory(stage: str) -> Callable[[int, int, float], None]:
        def update(done: int, total: int, cost: float) -> None:
            if stage not in tasks:
                progress.start()
                tasks[stage] = progress.add_task(stage, total=None, cost=0.0)
            progress.update(tasks[stage], completed=done, total=total or None, cost=cost)
        return update

    try:
        yield factory
    except KeyboardInterrupt:
        from deepeyes_cli.errors import Interrupted

        raise Interrupted("interrupted", hint=f"what finished is kept; run the same {label} command again to "
                                              "go on") from None
    finally:
        progress.stop()


def _show(name: str, summary: dict[str, Any], stage: Any = None) -> None:
    import json

    from rich.table import Table

    from deepeyes_cli.cli.console import console, print_warning

    if stage is not None:
        (stage.run_dir.path / f"curate_{name}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    table = Table(title=f"curate {name.replace('_', '-')}" + (" (already complete, skipped)"
                                                               if summary.get("skipped") else ""))
    table.add_column("", style="bold")
    table.add_column("value")
    for k, v in summary.items():
        if k in ("digest", "skipped"):
            continue
        if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
            for sub, d in v.items():
                table.add_row(f"{k}: {sub}", ", ".join(f"{a}={_fmt(b)}" for a, b in d.items()))
        else:
            table.add_row(k, _fmt(v))
    console.print(table)
    if summary.get("stopped"):
        print_warning(f"stopped early: {summary['stopped']}; raise the budget and run again to go on")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) or "—"
    return str(v)


def _data(path: Path) -> Any:
    from deepeyes_cli.curate.store import DataDir

    data = DataDir(path)
    data.require_samples()
    return data


def _policy_factory(recipe: Any) -> Callable[[], Any]:
    from deepeyes_cli.policy.factory import make_policy

    return lambda: make_policy(recipe)


@app.command("ingest")
def ingest_cmd(
    sources: Annotated[list[str], typer.Argument(show_default=False, metavar="SRC... [KEY=VALUE]...",
                                                 help="JSON/JSONL/parquet files, datasets or image folders, "
                                                      "builtin:synthetic; then recipe overrides.")],
    output: Annotated[Path, typer.Option("--output", "-o", show_default=False, help="Data directory to write.")],
    recipe: RecipeOpt = None,
    question: Annotated[str | None, typer.Option(help="Column holding the question.")] = None,
    answer: Annotated[str | None, typer.Option(help="Column holding the answer (a.b for nested).")] = None,
    image: Annotated[str | None, typer.Option(help="Column holding the image(s).")] = None,
    id_col: Annotated[str | None, typer.Option("--id", help="Column holding the id.")] = None,
    data_source: Annotated[str | None, typer.Option("--data-source", help="Column holding the data_source.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad row.")] = False,
    run_dir: RunDirOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Read questions into one normalized Sample per line; bad rows are listed, never dropped silently."""
    from deepeyes_cli.errors import InputError

    srcs = [s for s in sources if not (_OVERRIDE.match(s) and not Path(s).exists())]
    overrides = [s for s in sources if s not in srcs]
    cols = {"question": question, "answer": answer, "image": image, "id": id_col, "data_source": data_source}
    overrides += [f"curate.ingest.columns.{k}={v}" for k, v in cols.items() if v is not None]
    if strict:
        overrides.append("curate.ingest.strict=true")
    if not srcs:
        raise InputError("no source given", hint="deepeyes curate ingest data.jsonl -o DATA (or builtin:synthetic)")
    stage = _stage("ingest", recipe, overrides, run_dir, dry_run, [f"read {', '.join(srcs)}", f"write {output}"])
    if stage is None:
        return
    from deepeyes_cli.curate.ingest import ingest

    with _bars("ingest") as bars:
        bar = bars("ingest")
        s = ingest(srcs, output, stage.recipe.curate, on_progress=lambda n, _src: bar(n, 0, 0.0))
    _show("ingest", {**s.to_json(), "skipped": s.skipped}, stage)
    if s.bad:
        from deepeyes_cli.cli.console import print_warning

        print_warning(f"{s.bad} bad rows are listed in {output / 'ingest' / 'bad_rows.jsonl'}")


def _async_stage(name: str, data_dir: Path, recipe: str | None, overrides: list[str] | None, run_dir: Path | None,
                 dry_run: bool, plan: list[str], body: Callable[[Any, Any, Any], Any]) -> None:
    stage = _stage(name, recipe, overrides, run_dir, dry_run, plan)
    if stage is None:
        return
    data = _data(data_dir)
    with _bars(name.replace("_", "-")) as bars:
        summary = asyncio.run(body(stage.recipe, data, bars(name)))
    _show(name, summary, stage)


@app.command("difficulty")
def difficulty_cmd(data: DataArg, recipe: RecipeOpt = None, overrides: OverridesArg = None, force: ForceOpt = False,
                   run_dir: RunDirOpt = None, dry_run: DryRunOpt = False) -> None:
    """Sample k answers per question from the base model (tools on) and keep the hard ones."""
    from deepeyes_cli.curate.sampling import difficulty

    async def body(r: Any, d: Any, bar: Any) -> Any:
        return await difficulty(r, d, _policy_factory(r), bar, force=force)

    _async_stage("difficulty", data, recipe, overrides, run_dir, dry_run,
                 [f"sample curate.difficulty.k answers per question of {data}", "score with reward:"], body)


@app.command("tool-benefit")
def tool_benefit_cmd(data: DataArg, recipe: RecipeOpt = None, overrides: OverridesArg = None,
                     force: ForceOpt = False, run_dir: RunDirOpt = None, dry_run: DryRunOpt = False) -> None:
    """Run the questions with tools and without, and record each one's accuracy delta."""
    from deepeyes_cli.curate.sampling import tool_benefit

    async def body(r: Any, d: Any, bar: Any) -> Any:
        return await tool_benefit(r, d, _policy_factory(r), bar, force=force)

    _async_stage("tool_benefit", data, recipe, overrides, run_dir, dry_run,
                 [f"k attempts with tools and k without per hard question of {data}"], body)


@app.command("synthesize")
def synthesize_cmd(data: DataArg, recipe: RecipeOpt = None, overrides: OverridesArg = None, force: ForceOpt = False,
                   run_dir: RunDirOpt = None, dry_run: DryRunOpt = False) -> None:
    """Strong models write tool-using trajectories; those the judge marks correct are kept."""
    from deepeyes_cli.curate.synthesize import synthesize

    async def body(r: Any, d: Any, bar: Any) -> Any:
        return await synthesize(r, d, lambda done, total, cost, _per: bar(done, total, cost), force=force)

    _async_stage("synthesize", data, recipe, overrides, run_dir, dry_run,
                 [f"teachers curate.synthesize.models on the hard questions of {data}"], body)


@app.command("split")
def split_cmd(data: DataArg, recipe: RecipeOpt = None, overrides: OverridesArg = None, force: ForceOpt = False,
              run_dir: RunDirOpt = None, dry_run: DryRunOpt = False) -> None:
    """Questions solved with tools to RL, harder ones with a kept trajectory to SFT, in the target mix."""
    from deepeyes_cli.curate.split import split

    stage = _stage("split", recipe, overrides, run_dir, dry_run, [f"split {data} into RL / SFT / val"])
    if stage is not None:
        _show("split", split(stage.recipe, _data(data), force=force), stage)


@app.command("export")
def export_cmd(data: DataArg, recipe: RecipeOpt = None, overrides: OverridesArg = None, force: ForceOpt = False,
               run_dir: RunDirOpt = None, dry_run: DryRunOpt = False) -> None:
    """Write trajectory JSONL, LLaMA-Factory sharegpt (+ dataset_info.json) and verl RL parquet."""
    from deepeyes_cli.curate.export import export

    stage = _stage("export", recipe, overrides, run_dir, dry_run, [f"write {data / 'export'}"])
    if stage is not None:
        _show("export", export(stage.recipe, _data(data), force=force), stage)


@app.command("report")
def report_cmd(data: DataArg) -> None:
    """Write DATA/report.html: pass@k histogram, tool-benefit, mix, cost per model."""
    from deepeyes_cli.cli.console import console
    from deepeyes_cli.curate.report import build_report
    from deepeyes_cli.curate.store import DataDir
    from deepeyes_cli.errors import InputError

    if not data.is_dir():
        raise InputError(f"no such data directory: {data}", hint="run deepeyes curate ingest first")
    console.print(f"wrote {build_report(DataDir(data))}", highlight=False)


@app.command("run")
def run_cmd(recipe: RecipeOpt = None, overrides: OverridesArg = None,
            output: Annotated[Path | None, typer.Option("--output", "-o", show_default=False,
                                                        help="Data directory (default: curate.output).")] = None,
            run_dir: RunDirOpt = None, dry_run: DryRunOpt = False) -> None:
    """The whole pipeline from the recipe: ingest → difficulty → tool-benefit → synthesize → split → export."""
    from deepeyes_cli.cli.options import start_stage
    from deepeyes_cli.errors import InputError

    def plan(resolved: Any) -> list[str]:
        c = resolved.recipe.curate
        return [f"ingest {', '.join(c.sources) or '(no sources!)'}",
                f"difficulty: k={c.difficulty.k}, keep ≤ {c.difficulty.max_correct} correct",
                f"tool-benefit: k={c.tool_benefit.k} with and without tools",
                f"synthesize: {len(c.synthesize.models)} teacher(s), {c.synthesize.attempts} attempts",
                "split, export, report"]

    stage = start_stage("curate-run", recipe, overrides, run_dir=run_dir, dry_run=dry_run, plan=plan)
    if stage is None:
        return
    r = stage.recipe
    if not r.curate.sources:
        raise InputError("curate.sources is empty", hint="set curate.sources=[builtin:synthetic] or a list of files")
    from deepeyes_cli.curate.pipeline import run_pipeline
    from deepeyes_cli.curate.store import DataDir

    data = DataDir(output or r.curate.output or Path(r.run.runs_dir) / f"{stage.resolved.name}-data")
    with _bars("curate run") as bars:
        asyncio.run(run_pipeline(r, data, r.curate.sources, _policy_factory(r), progress=bars,
                                 on_stage=lambda name, s: _show(name, s, stage)))
