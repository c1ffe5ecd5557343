"""Carry out a :class:`~deepeyes_cli.launch.argv.LaunchPlan`: record it in the run
directory (``launch.json``: every node's argv and explicit environment), then run this
machine's command, or write and submit the sbatch script and record the job id."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from deepeyes_cli.errors import LaunchError
from deepeyes_cli.fileio import atomic_write
from deepeyes_cli.launch.argv import LaunchPlan
from deepeyes_cli.launch.executor import Executor


@dataclass
class LaunchResult:
    returncode: int
    job_id: str | None = None


def record_plan(plan: LaunchPlan, run_dir: Path, job_id: str | None = None) -> Path:
    path = run_dir / "launch.json"
    history = []
    if path.is_file():
        try:
            history = list(json.loads(path.read_text()).get("history", []))
        except (OSError, ValueError):
            history = []
    entry = {"launcher": plan.launcher, "commands": [asdict(c) for c in plan.commands], "run_here": plan.run_here,
             "job_id": job_id}
    atomic_write(path, json.dumps({**entry, "history": [*history, entry]}, indent=2) + "\n")
    return path


def execute(plan: LaunchPlan, run_dir: Path, executor: Executor) -> LaunchResult:
    if plan.sbatch_script is not None:
        script = run_dir / "sbatch.sh"
        atomic_write(script, plan.sbatch_script)
        script.chmod(0o755)
        from deepeyes_cli.launch.slurm import parse_job_id

        cmd = plan.commands[0]
        job_id = parse_job_id(executor.capture(cmd.argv, cmd.env))
        record_plan(plan, run_dir, job_id)
        atomic_write(run_dir / "slurm_job_id", job_id + "\n")
        return LaunchResult(0, job_id)
    if plan.launcher == "deepspeed":
        env = plan.commands[0].env
        atomic_write(run_dir / ".deepspeed_env", "".join(f"{k}={v}\n" for k, v in sorted(env.items())
                                                         if k != "DS_ENV_FILE"))
    record_plan(plan, run_dir)
    if plan.run_here is None or not 0 <= plan.run_here < len(plan.commands):
        raise LaunchError(f"this machine's node rank {plan.run_here} is not in the plan",
                          hint="set launch.node_rank below launch.nnodes")
    cmd = plan.commands[plan.run_here]
    return LaunchResult(executor.run(cmd.argv, cmd.env))
