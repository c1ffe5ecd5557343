"""`deepeyes rl -r RECIPE [a.b=c ...] [--run-dir DIR] [--dry-run] [--slurm]`: GRPO with live tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from deepeyes_cli.cli.options import DryRunOpt, OverridesArg, RecipeOpt, RunDirOpt, SlurmOpt


def _launch_plan(recipe: Any, run_dir: Path, slurm: bool = False) -> Any:
    """The training floor's launch plan (local / torchrun / deepspeed / srun / sbatch), stage rl."""
    from deepeyes_cli.launch.argv import build_plan
    from deepeyes_cli.models.loading import default_cache_dir

    return build_plan(recipe.launch, run_dir=run_dir, stage="rl", device="cpu" if recipe.model.device == "cpu" else "cuda",
                      python=sys.executable, cache_dir=recipe.run.cache_dir or default_cache_dir(), slurm=slurm)


def _plan(resolved: Any, slurm: bool = False) -> list[str]:
    from deepeyes_cli.launch.argv import shell_lines

    r = resolved.recipe
    rl = r.rl
    if slurm:
        r.launch.launcher = "srun"
    plan = _launch_plan(r, Path(r.run.runs_dir) / f"{resolved.name}-rl-<UTC time>", slurm)
    lines = [f"GRPO: {rl.train_batch_size} prompts x {rl.rollouts_per_prompt} rollouts per step, "
             f"{rl.train_batch_size // max(1, rl.ppo_mini_batch_size)} updates per step, lr {rl.learning_rate:g}, "
             f"clip {rl.clip_ratio_low:g}/{rl.clip_ratio_high:g}, dual-clip {rl.dual_clip_c:g}, {rl.loss_agg_mode}",
             f"rollouts: agent loop, backend {rl.rollout.backend}, temperature {rl.temperature:g}, "
             f"{r.agent.max_turns} turns, tools {', '.join(r.agent.tools)}",
             f"data: {', '.join(rl.datasets) or '(rl.datasets is empty)'}; start from {rl.init_from or r.model.path}",
             f"launcher {plan.launcher}" + (" (in this process)" if plan.launcher == "local" else ":"),
             *([] if plan.launcher == "local" else shell_lines(plan.commands)), *plan.notes]
    return lines


def rl(
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    run_dir: RunDirOpt = None,
    dry_run: DryRunOpt = False,
    slurm: SlurmOpt = False,
) -> None:
    """Train the policy with GRPO, rolling out through the agent loop with live tools.

    Each step leaves rollouts (open them with `deepeyes view`), metrics.jsonl and
    TensorBoard events, and a checkpoint every rl.save_freq steps; the same command with
    --run-dir resumes exactly after an interruption.
    """
    from deepeyes_cli.cli.options import start_stage

    stage = start_stage("rl", recipe, overrides, run_dir=run_dir, dry_run=dry_run,
                        plan=lambda resolved: _plan(resolved, slurm))
    if stage is None:
        return
    from deepeyes_cli.errors import InputError

    r = stage.recipe
    if not r.rl.datasets:
        raise InputError("rl.datasets is empty", hint="set rl.datasets=[data.parquet] (or builtin:count for the tiny task)")
    rd = stage.run_dir.path
    if slurm:
        r.launch.launcher = "srun"
    plan = _launch_plan(r, rd, slurm)
    from deepeyes_cli.launch.run import record_plan

    if plan.launcher == "local":
        record_plan(plan, rd)
        try:
            _run_here(stage)
        except KeyboardInterrupt:
            from deepeyes_cli.errors import Interrupted

            raise Interrupted("interrupted", hint=f"`deepeyes rl -r … --run-dir {rd}` resumes from the last "
                                                  "checkpoint") from None
        return
    from deepeyes_cli.cli.console import console
    from deepeyes_cli.errors import LaunchError
    from deepeyes_cli.launch.executor import SubprocessExecutor
    from deepeyes_cli.launch.run import execute

    result = execute(plan, rd, SubprocessExecutor())
    if result.job_id is not None:
        console.print(f"submitted SLURM job {result.job_id}; logs: {rd / 'logs'}", highlight=False)
        return
    if result.returncode != 0:
        raise LaunchError(f"training processes failed (exit {result.returncode})",
                          hint=f"see {rd / 'logs'}; the same command with --run-dir {rd} resumes from the last checkpoint")
    from deepeyes_cli.train.rl.metrics import write_report

    write_report(rd)
    console.print(f"rl done: {rd} (report {rd / 'report.md'})", highlight=False)


def _run_here(stage: Any) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from deepeyes_cli.cli.console import console, err_console, print_warning
    from deepeyes_cli.train.rl.loop import StepResult, Trainer

    progress = Progress(TextColumn("rl step"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                        TimeRemainingColumn(), console=err_console, transient=True)
    with progress:
        trainer = Trainer(stage.recipe, stage.run_dir.path)
        task = progress.add_task("", total=trainer.total_steps(), completed=trainer.step)

        def on_step(res: StepResult) -> None:
            m = res.metrics
            progress.update(task, completed=res.step,
                            description=f"reward {m.get('rollout/reward', float('nan')):.3f} "
                                        f"tools {m.get('rollout/tool_calls', float('nan')):.2f}")
            for al in res.alarms:
                print_warning(f"step {res.step}: {al.as_text()}")
            if res.stop is not None:
                print_warning(f"stopping: alarm {res.stop.name} is in rl.alarms.stop_on (checkpoint saved)")

        trainer.on_step = on_step
        results = trainer.run()
    last = results[-1].metrics if results else {}
    console.print(f"{trainer.step} steps in {stage.run_dir.path}: reward {last.get('rollout/reward', float('nan')):.3f}, "
                  f"tool calls {last.get('rollout/tool_calls', float('nan')):.2f}/trajectory; report "
                  f"{stage.run_dir.path / 'report.md'}", highlight=False)
