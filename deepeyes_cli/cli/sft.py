"""`deepeyes sft -r RECIPE [KEY=VALUE ...] [--dry-run] [--preflight] [--resume] [--slurm]`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deepeyes_cli.cli.options import DryRunOpt, OverridesArg, RecipeOpt, RunDirOpt, SlurmOpt

if TYPE_CHECKING:
    from deepeyes_cli.recipe.loader import ResolvedRecipe
    from deepeyes_cli.train.preflight import PreflightReport


def _device(recipe: Any) -> str:
    return "cpu" if recipe.model.device == "cpu" else "cuda"


def _plan(resolved: ResolvedRecipe, run_dir: Path, resume: bool, slurm: bool) -> Any:
    from deepeyes_cli.launch.argv import build_plan
    from deepeyes_cli.models.loading import default_cache_dir

    r = resolved.recipe
    return build_plan(r.launch, run_dir=run_dir, stage="sft", resume=resume, device=_device(r),
                      python=sys.executable, cache_dir=r.run.cache_dir or default_cache_dir(), slurm=slurm)


def _dry_run_lines(resume: bool, slurm: bool) -> Any:
    def lines(resolved: ResolvedRecipe) -> list[str]:
        from deepeyes_cli.launch.argv import shell_lines

        r = resolved.recipe
        s, la = r.sft, r.launch
        run_dir = Path(r.run.runs_dir) / f"{resolved.name}-sft-<UTC time>"
        plan = _plan(resolved, run_dir, resume, slurm)
        out = [f"preflight: {len(s.datasets)} dataset path(s), cutoff {s.cutoff_len} (overlong: {s.overlong}), "
               f"images <= {s.image_max_pixels} px, model {r.model.path}",
               f"train: {la.nnodes} node(s) x {la.gpus_per_node} process(es), ZeRO-{la.zero_stage}, "
               f"{la.mixed_precision}, lr {s.learning_rate:g} {s.lr_scheduler} (warm-up {s.warmup_ratio:g}), "
               f"{s.epochs:g} epochs, batch {s.per_device_batch_size} x accumulation {s.gradient_accumulation_steps}",
               f"launcher {plan.launcher}:", *shell_lines(plan.commands), *plan.notes]
        if plan.sbatch_script:
            out += ["sbatch script:", *plan.sbatch_script.splitlines()]
        return out
    return lines


def print_preflight(report: PreflightReport) -> None:
    from rich.table import Table

    from deepeyes_cli.cli.console import console

    table = Table(title="sft preflight")
    table.add_column("check")
    table.add_column("", justify="center")
    table.add_column("detail", overflow="fold")
    marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
    for c in report.checks:
        table.add_row(c.name, marks[c.status], c.detail)
    console.print(table)
    if report.index is not None and report.index.problems:
        console.print(f"{len(report.index.problems)} problem sample(s):", highlight=False)
        for p in report.index.problems[:20]:
            console.print(f"  {p.origin}: {p.message}", highlight=False, markup=False, soft_wrap=True)


def _preflight(resolved: ResolvedRecipe) -> PreflightReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from deepeyes_cli.cli.console import err_console
    from deepeyes_cli.train.preflight import run_preflight

    r = resolved.recipe
    with Progress(TextColumn("preflight: indexing"), BarColumn(), MofNCompleteColumn(), console=err_console,
                  transient=True) as progress:
        task = progress.add_task("index", total=None)
        return run_preflight(r, Path(r.run.runs_dir), device=_device(r),
                             on_progress=lambda done, total: progress.update(task, completed=done, total=total))


def _latest_run(resolved: ResolvedRecipe) -> Path | None:
    root = Path(resolved.recipe.run.runs_dir)
    found = sorted((p for p in root.glob(f"{resolved.name}-sft-*") if (p / "run.json").is_file()),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def sft(
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    run_dir: RunDirOpt = None,
    dry_run: DryRunOpt = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the newest run of this recipe (or --run-dir) "
                                                          "from its latest checkpoint.")] = False,
    preflight: Annotated[bool, typer.Option("--preflight", help="Only run the checks and print them.")] = False,
    slurm: SlurmOpt = False,
) -> None:
    """Fine-tune Qwen2.5-VL on agent trajectories (trajectory JSONL, sharegpt, curate exports).

    Renders every sample through the agent loop's own protocol renderer, trains only on the
    tokens the model generated, and launches locally, with torchrun, DeepSpeed or SLURM.
    Checkpoints every sft.save_steps; --resume continues bit-identically.
    """
    import json

    from deepeyes_cli.cli.console import console, print_warning
    from deepeyes_cli.cli.options import start_stage
    from deepeyes_cli.errors import InputError, LaunchError
    from deepeyes_cli.recipe.loader import load_recipe

    resolved = load_recipe(recipe, overrides or [])
    if slurm:
        resolved.recipe.launch.launcher = "srun"
    if preflight:
        report = _preflight(resolved)
        print_preflight(report)
        if not report.ok:
            first = report.failures()[0]
            raise InputError(f"preflight failed: {first.name}: {first.detail}", hint="fix the FAIL rows above")
        return
    if resume and run_dir is None and not dry_run:
        run_dir = _latest_run(resolved)
        if run_dir is None:
            raise InputError(f"--resume: no earlier sft run of recipe '{resolved.name}' in {resolved.recipe.run.runs_dir}",
                             hint="pass --run-dir, or start without --resume")
    if not dry_run:
        report = _preflight(resolved)
        if not report.ok:
            print_preflight(report)
            first = report.failures()[0]
            raise InputError(f"preflight failed: {first.name}: {first.detail}",
                             hint="nothing was launched; `deepeyes sft --preflight` shows the table")
        for c in report.checks:
            if c.status == "warn":
                print_warning(f"{c.name}: {c.detail}")
    stage = start_stage("sft", None, None, run_dir=run_dir, dry_run=dry_run, plan=_dry_run_lines(resume, slurm),
                        resolved=resolved)
    if stage is None:
        return
    rd = stage.run_dir.path
    if not resume and (rd / "checkpoints" / "latest").is_file():
        resume = True  # the same command again continues the run (house rule), it never trains over it
        print_warning(f"{rd} has checkpoints: resuming from the latest")
    (rd / "preflight.json").write_text(json.dumps([c.__dict__ for c in report.checks], indent=2) + "\n")
    plan = _plan(resolved, rd, resume, slurm)
    from deepeyes_cli.launch.executor import SubprocessExecutor
    from deepeyes_cli.launch.run import execute, record_plan

    if plan.launcher == "local":
        from deepeyes_cli.train.stages import run_stage

        record_plan(plan, rd)
        try:
            run_stage(rd, stage="sft", resume=resume)
        except KeyboardInterrupt:
            from deepeyes_cli.errors import Interrupted

            raise Interrupted("interrupted", hint=f"checkpoints are kept; `deepeyes sft --resume --run-dir {rd}` "
                                                  "continues") from None
    else:
        result = execute(plan, rd, SubprocessExecutor())
        if result.job_id is not None:
            console.print(f"submitted SLURM job {result.job_id}; logs: {rd / 'logs'}", highlight=False)
            return
        if result.returncode != 0:
            raise LaunchError(f"training processes failed (exit {result.returncode})",
                              hint=f"see {rd / 'logs'}; `deepeyes sft --resume --run-dir {rd}` continues "
                                   "from the last checkpoint")
    console.print(f"sft done: {rd}", highlight=False)
