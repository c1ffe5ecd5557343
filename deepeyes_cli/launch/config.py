"""`launch:` section: how training processes are started on one GPU or many nodes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepeyes_cli.recipe.base import Section


class SlurmConfig(Section):
    partition: str | None = None
    account: str | None = None
    time: str = Field("48:00:00", description="sbatch --time")
    cpus_per_task: int | None = Field(None, ge=1, description="Per node (one task per node runs torchrun).")
    mem: str | None = Field(None, description="sbatch --mem, e.g. 0 (all) or 1200G")
    qos: str | None = None
    extra_sbatch: list[str] = Field(default_factory=list, description="More #SBATCH lines, e.g. --exclusive")
    setup: list[str] = Field(default_factory=list, description="Shell lines run before srun (module load …)")


class LaunchConfig(Section):
    launcher: Literal["local", "torchrun", "deepspeed", "srun"] = Field(
        "torchrun", description="`local` runs one process in place (CPU / debugging)."
    )
    nnodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(1, ge=1)
    node_rank: int = Field(0, ge=0, description="Rank of this node (torchrun / deepspeed without a hostfile).")
    master_addr: str = "127.0.0.1"
    master_port: int = Field(29500, ge=1, le=65535)
    hostfile: str | None = Field(None, description="DeepSpeed hostfile for multi-node launches.")
    zero_stage: Literal[0, 1, 2, 3] = 3
    offload_optimizer: bool = False
    offload_param: bool = False
    mixed_precision: Literal["bf16", "fp16", "no"] = "bf16"
    gradient_checkpointing: bool = True
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for every process.")
    extra_args: list[str] = Field(default_factory=list, description="Appended to the launcher's own flags.")
    rdzv_backend: Literal["static", "c10d"] = Field(
        "c10d", description="torchrun rendezvous for multi-node: c10d (elastic agent) or static (node ranks).")
    rdzv_id: str | None = Field(None, description="Default: the run directory's name (SLURM: the job id).")
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)

    @property
    def world_size(self) -> int:
        return self.nnodes * self.gpus_per_node
