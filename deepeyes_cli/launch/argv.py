"""The one place launch command lines are built: ``build_plan`` turns the ``launch:``
section into argv lists (never a shell string) and the explicit environment for each
node. ``--dry-run`` prints them; :mod:`deepeyes_cli.launch.run` hands them to an executor.

Every launched process runs ``python -m deepeyes_cli.train --run-dir DIR``, which reads
the resolved recipe from the run directory. Launchers:

- ``local``: that command, one process, in place (CPU and debugging);
- ``torchrun``: ``python -m torch.distributed.run`` per node; multi-node with the c10d
  rendezvous (the same command on every node) or static node ranks;
- ``deepspeed``: DeepSpeed's runner with a hostfile (it ssh-es to the other nodes itself);
- ``srun``: inside a SLURM allocation, one torchrun per node via ``srun``; outside one,
  ``--slurm`` writes an ``sbatch`` script with the same ``srun`` line and submits it.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from deepeyes_cli.errors import LaunchError

if TYPE_CHECKING:
    from deepeyes_cli.launch.config import LaunchConfig

TRAIN_MODULE = "deepeyes_cli.train"
# Passed through from the caller's environment when set (NCCL tuning, interfaces, …).
PASSTHROUGH = re.compile(r"^(NCCL_|TORCH_NCCL_|GLOO_|CUDA_VISIBLE_DEVICES$|OMP_NUM_THREADS$|HF_|WANDB_|"
                         r"TORCH_EXTENSIONS_DIR$|DS_ACCELERATOR$|DEEPEYES_)")  # JIT ops: torch's default cache unless set


@dataclass
class NodeCommand:
    where: str  # "this machine", "node 1", "every node (srun)", "sbatch"
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # explicit variables set for this command

    def shell(self) -> str:
        """For display and the sbatch script only; nothing is run through a shell."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return (env + " " if env else "") + shlex.join(self.argv)


@dataclass
class LaunchPlan:
    launcher: str
    commands: list[NodeCommand]
    run_here: int | None = 0  # index of the command this machine runs (None: print only)
    sbatch_script: str | None = None
    notes: list[str] = field(default_factory=list)


def train_args(run_dir: str | Path, stage: str, resume: bool) -> list[str]:
    return ["--run-dir", str(run_dir), "--stage", stage, *(["--resume"] if resume else [])]


def launch_env(cfg: LaunchConfig, *, device: str, zero_stage: int, environ: Mapping[str, str],
               cache_dir: str | Path) -> dict[str, str]:
    """The environment every process gets, explicitly: rendezvous, threads, the DeepSpeed
    accelerator and op cache, NCCL settings from the caller and ``launch.env``."""
    env = {k: v for k, v in environ.items() if PASSTHROUGH.match(k)}
    env.setdefault("MASTER_ADDR", cfg.master_addr)
    env.setdefault("MASTER_PORT", str(cfg.master_port))
    if device == "cpu":
        env.setdefault("OMP_NUM_THREADS", "1")
        if zero_stage > 0:
            env.setdefault("DS_ACCELERATOR", "cpu")  # gloo collectives (cpu_facts §1)
    else:
        env.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    env.update(cfg.env)
    return env


def first_host(nodelist: str) -> str:
    """The first host of a SLURM nodelist (``gpu[03-06,9],cpu1`` → ``gpu03``)."""
    m = re.match(r"^([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise LaunchError(f"cannot read SLURM_JOB_NODELIST={nodelist!r}", hint="set launch.master_addr")
    prefix, ranges = m.group(1), m.group(2)
    return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


def _torchrun(python: str, cfg: LaunchConfig, *, endpoint: str, rdzv_id: str, node_rank: int | None) -> list[str]:
    argv = [python, "-m", "torch.distributed.run", "--nnodes", str(cfg.nnodes),
            "--nproc-per-node", str(cfg.gpus_per_node)]
    host, _, port = endpoint.rpartition(":")
    if cfg.nnodes > 1 and cfg.rdzv_backend == "c10d":
        argv += ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", rdzv_id]
    else:
        if cfg.nnodes > 1:
            argv += ["--node-rank", str(node_rank if node_rank is not None else cfg.node_rank)]
        argv += ["--master-addr", host, "--master-port", port]
    return [*argv, *cfg.extra_args, "--module", TRAIN_MODULE]


def build_plan(cfg: LaunchConfig, *, run_dir: str | Path, stage: str = "sft", resume: bool = False,
               device: str = "cuda", zero_stage: int | None = None, python: str = "python",
               environ: Mapping[str, str] | None = None, cache_dir: str | Path = "~/.cache/deepeyes",
               slurm: bool = False) -> LaunchPlan:
    environ = dict(os.environ if environ is None else environ)
    zero = cfg.zero_stage if zero_stage is None else zero_stage
    env = launch_env(cfg, device=device, zero_stage=zero, environ=environ, cache_dir=cache_dir)
    if "PATH" in environ and os.path.isabs(python):
        # the interpreter's own bin first: its ninja builds DeepSpeed's JIT ops, and a different
        # ninja than the one that built the cached op (`make train-warmup`) rebuilds it
        env["PATH"] = f"{Path(python).parent}{os.pathsep}{environ['PATH']}"
    tail = train_args(run_dir, stage, resume)
    rdzv_id = cfg.rdzv_id or Path(run_dir).name
    endpoint = f"{cfg.master_addr}:{cfg.master_port}"

    if cfg.launcher == "local":
        if cfg.world_size > 1:
            raise LaunchError(f"launch.launcher=local runs one process, but nnodes x gpus_per_node = {cfg.world_size}",
                              hint="use launch.launcher=torchrun (or deepspeed / srun) for several processes")
        return LaunchPlan("local", [NodeCommand("this machine", [python, "-m", TRAIN_MODULE, *tail], env)])

    if cfg.launcher == "torchrun":
        if cfg.nnodes == 1:
            return LaunchPlan("torchrun", [NodeCommand("this machine", [*_torchrun(
                python, cfg, endpoint=endpoint, rdzv_id=rdzv_id, node_rank=0), *tail], env)])
        cmds = [NodeCommand(f"node {r}", [*_torchrun(python, cfg, endpoint=endpoint, rdzv_id=rdzv_id,
                                                     node_rank=r), *tail], env) for r in range(cfg.nnodes)]
        notes = [f"each node runs its own line (`deepeyes {stage} … launch.node_rank=R` there); this machine is "
                 f"node {cfg.node_rank}; rendezvous at {endpoint}"]
        return LaunchPlan("torchrun", cmds, run_here=cfg.node_rank, notes=notes)

    if cfg.launcher == "deepspeed":
        if cfg.nnodes > 1 and not cfg.hostfile:
            raise LaunchError(f"launch.launcher=deepspeed with {cfg.nnodes} nodes needs a hostfile",
                              hint="set launch.hostfile=/path/hostfile (lines of 'host slots=8')")
        argv = [python, "-m", "deepspeed.launcher.runner"]
        if cfg.hostfile:
            argv += ["--hostfile", cfg.hostfile]
        argv += ["--num_nodes", str(cfg.nnodes), "--num_gpus", str(cfg.gpus_per_node),
                 "--master_addr", cfg.master_addr, "--master_port", str(cfg.master_port),
                 *cfg.extra_args, "--module", TRAIN_MODULE, *tail]
        env = {**env, "DS_ENV_FILE": str(Path(run_dir) / ".deepspeed_env")}
        return LaunchPlan("deepspeed", [NodeCommand("this machine (ssh to the hostfile's nodes)", argv, env)],
                          notes=["DeepSpeed exports the variables in <run>/.deepspeed_env on every node"])

    # srun
    in_allocation = "SLURM_JOB_ID" in environ and not slurm
    if not in_allocation and not slurm:
        raise LaunchError("launch.launcher=srun outside a SLURM allocation",
                          hint="pass --slurm to write and submit an sbatch script, or run inside salloc/sbatch")
    srun = ["srun", "--nodes", str(cfg.nnodes), "--ntasks-per-node", "1", "--kill-on-bad-exit=1"]
    if in_allocation:
        head = cfg.master_addr if cfg.master_addr not in ("127.0.0.1", "localhost") or cfg.nnodes == 1 \
            else first_host(environ.get("SLURM_JOB_NODELIST", environ.get("SLURM_NODELIST", "localhost")))
        run_cfg = cfg.model_copy(update={"rdzv_backend": "c10d"})
        argv = [*srun, *_torchrun(python, run_cfg, endpoint=f"{head}:{cfg.master_port}",
                                  rdzv_id=environ["SLURM_JOB_ID"], node_rank=None), *tail]
        if cfg.nnodes == 1:
            argv = [*srun, *_torchrun(python, run_cfg, endpoint=f"{head}:{cfg.master_port}",
                                      rdzv_id=environ["SLURM_JOB_ID"], node_rank=0), *tail]
        return LaunchPlan("srun", [NodeCommand(f"every node of job {environ['SLURM_JOB_ID']} (srun)", argv,
                                               {**env, "MASTER_ADDR": head})])
    from deepeyes_cli.launch.slurm import sbatch_script

    script_path = Path(run_dir) / "sbatch.sh"
    script = sbatch_script(cfg, run_dir=run_dir, python=python, env=env, train_tail=tail)
    return LaunchPlan("srun", [NodeCommand("sbatch", ["sbatch", "--parsable", str(script_path)], {})],
                      sbatch_script=script, notes=[f"writes {script_path}, submits it, records the job id"])


def shell_lines(commands: Sequence[NodeCommand]) -> list[str]:
    return [f"[{c.where}] {c.shell()}" for c in commands]
