"""`deepeyes rl -r RECIPE [a.b=c ...] [--run-dir DIR] [--dry-run]`: GRPO with live tools."""

from __future__ import annotations

from typing import Any

from deepeyes_cli.cli.options import DryRunOpt, OverridesArg, RecipeOpt, RunDirOpt


def launch_argv(recipe: Any, run_dir: str) -> list[str] | None:
    """The command that starts every training process, or None to run in this process."""
    import sys

    la = recipe.launch
    entry = ["-m", "deepeyes_cli.train.rl", run_dir]
    if la.launcher == "local":
        return None
    if la.launcher == "torchrun":
        return ["torchrun", f"--nnodes={la.nnodes}", f"--nproc-per-node={la.gpus_per_node}",
                f"--node-rank={la.node_rank}", f"--master-addr={la.master_addr}", f"--master-port={la.master_port}",
                *la.extra_args, *entry]
    if la.launcher == "deepspeed":
        host = ["--hostfile", la.hostfile] if la.hostfile else [f"--num_nodes={la.nnodes}", f"--node_rank={la.node_rank}"]
        return ["deepspeed", *host, f"--num_gpus={la.gpus_per_node}", f"--master_addr={la.master_addr}",
                f"--master_port={la.master_port}", *la.extra_args, "--module", "deepeyes_cli.train.rl", run_dir]
    return ["srun", f"--nodes={la.nnodes}", f"--ntasks-per-node={la.gpus_per_node}", *la.extra_args,
            sys.executable, *entry]


def _plan(resolved: Any) -> list[str]:
    import shlex

    r = resolved.recipe
    rl = r.rl
    argv = launch_argv(r, "RUN_DIR")
    lines = [f"GRPO: {rl.train_batch_size} prompts x {rl.rollouts_per_prompt} rollouts per step, "
             f"{rl.train_batch_size // max(1, rl.ppo_mini_batch_size)} updates per step, lr {rl.learning_rate:g}, "
             f"clip {rl.clip_ratio_low:g}/{rl.clip_ratio_high:g}, dual-clip {rl.dual_clip_c:g}, {rl.loss_agg_mode}",
             f"rollouts: agent loop, backend {rl.rollout.backend}, temperature {rl.temperature:g}, "
             f"{r.agent.max_turns} turns, tools {', '.join(r.agent.tools)}",
             f"data: {', '.join(rl.datasets) or '(rl.datasets is empty)'}; start from {rl.init_from or r.model.path}",
             "launch: " + ("in this process" if argv is None else shlex.join(argv))]
    return lines


def rl(
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    run_dir: RunDirOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Train the policy with GRPO, rolling out through the agent loop with live tools.

    Each step leaves rollouts (open them with `deepeyes view`), metrics.jsonl and
    TensorBoard events, and a checkpoint every rl.save_freq steps; the same command with
    --run-dir resumes exactly after an interruption.
    """
    from deepeyes_cli.cli.options import start_stage

    stage = start_stage("rl", recipe, overrides, run_dir=run_dir, dry_run=dry_run, plan=_plan)
    if stage is None:
        return
    from deepeyes_cli.errors import InputError

    r = stage.recipe
    if not r.rl.datasets:
        raise InputError("rl.datasets is empty", hint="set rl.datasets=[data.parquet] (or builtin:count for the tiny task)")
    argv = launch_argv(r, str(stage.run_dir.path))
    if argv is not None:
        _launch(argv)
        return
    _run_here(stage)


def _launch(argv: list[str]) -> None:
    import subprocess

    from deepeyes_cli.errors import LaunchError

    try:
        rc = subprocess.run(argv, check=False).returncode
    except FileNotFoundError as e:
        raise LaunchError(f"cannot start {argv[0]}", hint="install it, or set launch.launcher=local") from e
    if rc:
        raise LaunchError(f"training exited with status {rc}", hint="see the run directory's logs; rerun with "
                                                                   "--run-dir to resume from the last checkpoint")


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
