"""The two engines behind :func:`deepeyes_cli.train.engine.build_engine`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from deepeyes_cli.train.engine import DistInfo, EngineConfig, _optimizer_and_scheduler


class TorchEngine:
    """Plain torch: AdamW, a transformers LR schedule, gradient clipping. With several
    ranks the gradients are all-reduced (summed) before each step, so every rank holds
    the same weights; no DDP wrapper (its reducer wants the forward through the wrapper,
    and the loss helpers call the decoder and the LM head separately)."""

    kind = "torch"

    def __init__(self, model: Any, params: list[Any], cfg: EngineConfig, dist: DistInfo) -> None:
        from deepeyes_cli.train.loss import logprob_module

        self.wrapped = logprob_module(model)
        self.module, self.params, self.cfg, self.dist = model, params, cfg, dist
        self.optimizer, self.scheduler = _optimizer_and_scheduler(params, cfg)
        if dist.world_size > 1:  # identical start on every rank
            import torch.distributed as tdist

            for p in model.parameters():
                tdist.broadcast(p.data, src=0)

    @property
    def device(self) -> Any:
        return next(self.module.parameters()).device

    def logprobs(self, inputs: dict[str, Any], loss_mask: Any) -> Any:
        """Log-probabilities of the mask-1 tokens (see :func:`deepeyes_cli.train.loss.masked_logprobs`)."""
        return self.wrapped(inputs, loss_mask)

    @property
    def dtype(self) -> Any:
        return next(self.module.parameters()).dtype

    def backward(self, loss: Any) -> None:
        loss.backward()

    def step(self) -> dict[str, float]:
        import torch

        if self.dist.world_size > 1:
            import torch.distributed as tdist

            for p in self.params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                tdist.all_reduce(p.grad)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"grad_norm": float(norm), "lr": float(lr)}

    def save(self, directory: Path) -> None:
        import torch

        directory.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict()}, directory / "torch_state.pt")

    def load(self, directory: Path) -> None:
        import torch

        state = torch.load(directory / "torch_state.pt", map_location="cpu", weights_only=False)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def full_state_dict(self) -> dict[str, Any] | None:
        return self.module.state_dict() if self.dist.is_main else None

    def train(self) -> None:
        self.module.train()

    def eval(self) -> None:
        self.module.eval()


def deepspeed_config(cfg: EngineConfig) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": cfg.zero_stage, "overlap_comm": False, "contiguous_gradients": True,
                            "reduce_bucket_size": 5e8}
    if cfg.zero_stage == 3:
        zero.update(stage3_gather_16bit_weights_on_model_save=True, stage3_prefetch_bucket_size=5e8,
                    stage3_param_persistence_threshold=1e5)
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if cfg.offload_param and cfg.zero_stage == 3:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "gradient_clipping": cfg.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": cfg.mixed_precision == "bf16"},
        "fp16": {"enabled": cfg.mixed_precision == "fp16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    config.update(cfg.extra_ds_config)
    return config


class DeepSpeedEngine:
    """DeepSpeed ZeRO 1-3 with torch AdamW as the client optimizer. Every micro-batch calls
    ``engine.step()`` (DeepSpeed counts the accumulation window itself); our ``step``
    returns the window's statistics after the optimizer stepped."""

    kind = "deepspeed"

    def __init__(self, model: Any, params: list[Any], cfg: EngineConfig, dist: DistInfo) -> None:
        import deepspeed

        from deepeyes_cli.train.loss import logprob_module

        self.cfg, self.dist = cfg, dist
        if dist.world_size == 1:  # DeepSpeed always wants a process group: one of one
            for k, v in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500"), ("RANK", "0"), ("WORLD_SIZE", "1"),
                         ("LOCAL_RANK", "0")):
                os.environ.setdefault(k, v)
        optimizer, scheduler = _optimizer_and_scheduler(params, cfg)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=logprob_module(model), optimizer=optimizer, lr_scheduler=scheduler, model_parameters=params,
            config=deepspeed_config(cfg))
        self.module = self.engine.module.hf

    def logprobs(self, inputs: dict[str, Any], loss_mask: Any) -> Any:
        return self.engine(inputs, loss_mask)

    @property
    def device(self) -> Any:
        return self.engine.device

    @property
    def dtype(self) -> Any:
        import torch

        if self.cfg.mixed_precision == "bf16":
            return torch.bfloat16
        return torch.float16 if self.cfg.mixed_precision == "fp16" else torch.float32

    def backward(self, loss: Any) -> None:
        # DeepSpeed averages over data-parallel ranks; scale_wrt_gas=False keeps it from
        # also dividing by the accumulation steps: the loss is already the exact share.
        self.engine.backward(loss * self.dist.world_size, scale_wrt_gas=False)
        if not self.engine.is_gradient_accumulation_boundary():
            self.engine.step()  # only advances DeepSpeed's micro-step counter

    def step(self) -> dict[str, float]:
        lr = float(self.scheduler.get_last_lr()[0])
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return {"grad_norm": float(norm) if norm is not None else float("nan"), "lr": lr}

    def save(self, directory: Path) -> None:
        self.engine.save_checkpoint(str(directory), tag="state", save_latest=False)

    def load(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag="state", load_optimizer_states=True,
                                              load_lr_scheduler_states=True)
        if path is None:
            from deepeyes_cli.errors import RunDirError

            raise RunDirError(f"no DeepSpeed state in {directory}", hint="the checkpoint is incomplete")

    def full_state_dict(self) -> dict[str, Any] | None:
        """Full weights on rank 0 (ZeRO-3 gathers one parameter at a time); None elsewhere."""
        if self.cfg.zero_stage < 3:
            return self.module.state_dict() if self.dist.is_main else None
        import deepspeed

        out: dict[str, Any] | None = {} if self.dist.is_main else None
        for name, p in self.module.named_parameters():
            with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                if out is not None:
                    out[name] = p.data.detach().cpu().clone()
        if out is not None:
            for name, b in self.module.named_buffers():
                out[name] = b.detach().cpu().clone()
        return out

    def train(self) -> None:
        self.engine.train()

    def eval(self) -> None:
        self.engine.eval()
