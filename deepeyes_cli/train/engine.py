"""The engine seam: one training interface over DeepSpeed ZeRO (GPU, and the CPU
accelerator with gloo) and plain torch (debugging, one process or gloo/NCCL ranks).

Contract, for SFT and RL alike::

    dist = init_distributed(device)            # torchrun / deepspeed / srun env, or one process
    engine = build_engine(model, cfg, dist)     # freezes nothing itself; pass trainable params in
    n = global_count(local_trained_tokens)     # all-reduced over ranks, once per optimizer step
    loss = -masked_logprobs(engine.module, ...).sum() / n
    engine.backward(loss)                       # each micro-batch of the accumulation window
    stats = engine.step()                       # once per window: clip, optimizer, scheduler
    engine.save(dir, client_state) / engine.load(dir) -> client_state
    engine.export_hf(dir, processor)            # full weights, rank 0 writes
    shutdown_distributed()                      # barrier, then destroy (no exit hangs)

Exact token mean: ``backward`` takes each micro-batch's *contribution to the global mean*
(sum of its token losses divided by the window's token count over all ranks); the engines
undo their own averaging (DeepSpeed's 1/gas and its mean over data-parallel ranks, the
torch engine's gradient all-reduce is a sum), so the update is the gradient of the mean
over every trained token of the window, however tokens are spread across micro-batches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deepeyes_cli.errors import LaunchError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None  # None: a single process, no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by the launcher's environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); gloo on CPU, NCCL on
    CUDA. Without those variables: one process, no group."""
    import torch
    import torch.distributed as dist

    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = f"cuda:{local}" if want_cuda else "cpu"
    if want_cuda:
        torch.cuda.set_device(local)
    if world == 1:
        return DistInfo(0, 1, 0, dev, None)
    backend = "nccl" if want_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, dev, backend)


def shutdown_distributed() -> None:
    """Barrier then destroy: a bare destroy at exit can abort one worker and hang the other
    agent in its exit barrier (cpu_facts §2)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def global_count(n: int | float, dist_info: DistInfo) -> float:
    """``n`` summed over every rank (token counts for the exact token mean)."""
    if dist_info.world_size == 1:
        return float(n)
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(n)], dtype=torch.float64,
                     device=dist_info.device if dist_info.backend == "nccl" else "cpu")
    dist.all_reduce(t)
    return float(t.item())


def barrier(dist_info: DistInfo) -> None:
    if dist_info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


@dataclass
class EngineConfig:
    kind: Literal["torch", "deepspeed"] = "torch"
    zero_stage: int = 0
    mixed_precision: Literal["bf16", "fp16", "no"] = "no"
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lr_scheduler: str = "cosine"
    warmup_steps: int = 0
    total_steps: int = 1
    micro_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    offload_optimizer: bool = False
    offload_param: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    extra_ds_config: dict[str, Any] = field(default_factory=dict)


def _optimizer_and_scheduler(params: list[Any], cfg: EngineConfig) -> tuple[Any, Any]:
    import torch
    from transformers import get_scheduler

    # torch AdamW as the client optimizer: no DeepSpeed op JIT (cpu_facts §1), same math
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, betas=cfg.betas)
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps,
                              num_training_steps=max(1, cfg.total_steps))
    return optimizer, scheduler


def build_engine(model: Any, cfg: EngineConfig, dist_info: DistInfo) -> Any:
    """A :class:`TorchEngine` or :class:`DeepSpeedEngine` (see ``deepeyes_cli.train.engines``)
    over the parameters of ``model`` that require grad."""
    from deepeyes_cli.train.engines import DeepSpeedEngine, TorchEngine

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise LaunchError("no trainable parameters", hint="unfreeze something (sft.freeze_* options)")
    if cfg.kind == "deepspeed":
        return DeepSpeedEngine(model, params, cfg, dist_info)
    return TorchEngine(model, params, cfg, dist_info)


def engine_kind(launcher: str, zero_stage: int) -> Literal["torch", "deepspeed"]:
    """ZeRO stage 0 runs the plain torch engine; 1-3 DeepSpeed (any launcher)."""
    return "deepspeed" if zero_stage > 0 else "torch"


def model_save_dir(path: str | Path) -> Path:
    return Path(path) / "engine"
