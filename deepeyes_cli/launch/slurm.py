"""The sbatch script ``deepeyes sft --slurm`` writes outside an allocation: resources from
``launch.slurm``, the explicit environment, then one torchrun per node through ``srun``
with the c10d rendezvous on the job's first node."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from deepeyes_cli.errors import LaunchError

if TYPE_CHECKING:
    from deepeyes_cli.launch.config import LaunchConfig


def sbatch_script(cfg: LaunchConfig, *, run_dir: str | Path, python: str, env: Mapping[str, str],
                  train_tail: Sequence[str]) -> str:
    s = cfg.slurm
    name = Path(run_dir).name
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name[:64]}", f"#SBATCH --nodes={cfg.nnodes}",
             "#SBATCH --ntasks-per-node=1", f"#SBATCH --gpus-per-node={cfg.gpus_per_node}",
             f"#SBATCH --time={s.time}", f"#SBATCH --output={Path(run_dir) / 'logs' / 'slurm-%j.out'}"]
    for flag, value in (("partition", s.partition), ("account", s.account), ("qos", s.qos),
                        ("cpus-per-task", s.cpus_per_task), ("mem", s.mem)):
        if value is not None:
            lines.append(f"#SBATCH --{flag}={value}")
    lines += [f"#SBATCH {x}" for x in s.extra_sbatch]
    lines += ["", "set -euo pipefail", *s.setup]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()) if k != "MASTER_ADDR"]
    lines += ['HEAD="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"', 'export MASTER_ADDR="$HEAD"', ""]
    torchrun = [python, "-m", "torch.distributed.run", "--nnodes", str(cfg.nnodes),
                "--nproc-per-node", str(cfg.gpus_per_node), "--rdzv-backend", "c10d"]
    cmd = (f"srun --nodes {cfg.nnodes} --ntasks-per-node 1 --kill-on-bad-exit=1 {shlex.join(torchrun)} "
           f'--rdzv-endpoint "$HEAD:{cfg.master_port}" --rdzv-id "$SLURM_JOB_ID" '
           f"{shlex.join([*cfg.extra_args, '--module', 'deepeyes_cli.train', *train_tail])}")
    return "\n".join([*lines, cmd]) + "\n"


def parse_job_id(output: str) -> str:
    """``sbatch --parsable`` prints ``JOBID`` or ``JOBID;CLUSTER``."""
    first = output.strip().splitlines()[-1].split(";")[0].strip() if output.strip() else ""
    if not first.isdigit():
        raise LaunchError(f"sbatch did not return a job id: {output.strip()[:200]!r}",
                          hint="check the partition/account in launch.slurm and `sbatch` itself")
    return first
