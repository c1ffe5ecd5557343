"""The SFT stage, as it runs inside every launched process.

``run_sft`` loads the model through the one loader, indexes the data (the same checks
preflight runs), builds the engine, then trains one accumulation window at a time:
fetch the window's micro-batches, all-reduce its trained-token count, back-propagate each
micro-batch's exact share of the token mean, step. A checkpoint every ``sft.save_steps``
(and at the end) holds everything a resumed run needs to continue bit-identically: model,
optimizer, scheduler, RNG, epoch and data cursor.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import InputError
from deepeyes_cli.train.data.encode import DataError, ImageBudget
from deepeyes_cli.train.data.index import DataIndex, build_index
from deepeyes_cli.train.data.sources import read_conversations
from deepeyes_cli.train.engine import DistInfo, EngineConfig, build_engine, engine_kind, global_count

if TYPE_CHECKING:
    from deepeyes_cli.recipe.schema import Recipe

log = logging.getLogger(__name__)

StepObserver = Callable[[dict[str, Any]], None]


@dataclass
class SFTResult:
    steps: int
    total_steps: int
    final_loss: float | None
    export_dir: Path | None
    metrics: list[dict[str, Any]] = field(default_factory=list)


def load_sft_processor(recipe: Recipe, model_path: str) -> Any:
    from deepeyes_cli.models.loading import load_processor

    m = recipe.model
    return load_processor(model_path, min_pixels=m.min_pixels,
                          max_pixels=min(m.max_pixels, recipe.sft.image_max_pixels),
                          revision=m.revision, local_files_only=m.local_files_only)


def index_data(recipe: Recipe, processor: Any, *, verify_images: bool = False,
               on_progress: Callable[[int, int], None] | None = None) -> DataIndex:
    cfg = recipe.sft
    conversations = read_conversations(cfg.datasets, cfg.max_samples)
    return build_index(conversations, processor.tokenizer, ImageBudget.of(processor), cfg.cutoff_len,
                       verify_images=verify_images, on_progress=on_progress)


def check_index(index: DataIndex, recipe: Recipe) -> None:
    """Apply ``sft.overlong`` / ``sft.bad_samples``: raise on the first fatal problem."""
    cfg = recipe.sft
    for p in index.problems:
        fatal = cfg.overlong == "fail" if p.kind == "too_long" else cfg.bad_samples == "fail"
        if fatal:
            more = len(index.problems) - 1
            raise DataError(f"{p.origin}: {p.message}" + (f" (and {more} more problems)" if more else ""),
                            hint="run `deepeyes sft --preflight` for the full table; or set "
                                 + ("sft.overlong=drop" if p.kind == "too_long" else "sft.bad_samples=drop"))
    if not index.samples:
        raise InputError("no usable SFT samples", hint="run `deepeyes sft --preflight` to see why")


def _freeze(model: Any, recipe: Recipe) -> None:
    visual = getattr(model, "visual", None) or model.model.visual
    for name, p in visual.named_parameters():
        is_merger = name.startswith("merger.")
        if (is_merger and recipe.sft.freeze_projector) or (not is_merger and recipe.sft.freeze_vision_tower):
            p.requires_grad_(False)


def _engine_config(recipe: Recipe, total_steps: int) -> EngineConfig:
    s, la = recipe.sft, recipe.launch
    return EngineConfig(kind=engine_kind(la.launcher, la.zero_stage), zero_stage=la.zero_stage,
                        mixed_precision=la.mixed_precision, learning_rate=s.learning_rate,
                        weight_decay=s.weight_decay, max_grad_norm=s.max_grad_norm, lr_scheduler=s.lr_scheduler,
                        warmup_steps=math.ceil(s.warmup_ratio * total_steps), total_steps=total_steps,
                        micro_batch_size=s.per_device_batch_size,
                        gradient_accumulation_steps=s.gradient_accumulation_steps,
                        offload_optimizer=la.offload_optimizer, offload_param=la.offload_param)


def _batches(index: DataIndex, recipe: Recipe, processor: Any, dist: DistInfo, epoch: int, start: int,
             count: int) -> Iterator[dict[str, Any]]:
    """Micro-batches ``start … start+count`` of an epoch's plan, collated in DataLoader workers."""
    from torch.utils.data import DataLoader

    from deepeyes_cli.train.data.batch import BatchDataset, plan_batches

    s = recipe.sft
    plan = plan_batches(index.lengths, s.per_device_batch_size, seed=recipe.run.seed, epoch=epoch,
                        world_size=dist.world_size, rank=dist.rank, group_by_length=s.group_by_length,
                        pack_tokens=s.cutoff_len if s.packing else None)[start:start + count]
    ds = BatchDataset(index.samples, plan, processor, processor.tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                      packed=s.packing)
    loader = DataLoader(ds, batch_size=None, shuffle=False, num_workers=s.dataloader_workers,
                        prefetch_factor=4 if s.dataloader_workers else None,
                        persistent_workers=False)
    yield from loader


def windows_per_epoch(index: DataIndex, recipe: Recipe, world_size: int) -> int:
    from deepeyes_cli.train.data.batch import plan_batches

    s = recipe.sft
    plan = plan_batches(index.lengths, s.per_device_batch_size, seed=recipe.run.seed, epoch=0,
                        world_size=world_size, group_by_length=s.group_by_length,
                        pack_tokens=s.cutoff_len if s.packing else None)
    return len(plan) // s.gradient_accumulation_steps


def run_sft(recipe: Recipe, run_dir: str | Path, dist: DistInfo, *, resume: bool = False,
            on_step: StepObserver | None = None) -> SFTResult:
    import torch

    from deepeyes_cli.models.loading import load_model, resolve_model_path
    from deepeyes_cli.train.ckpt import Checkpointer, export_hf
    from deepeyes_cli.train.data.batch import model_inputs
    from deepeyes_cli.train.metrics import MetricsLogger, loss_curve, read_metrics

    run_dir = Path(run_dir)
    s = recipe.sft
    torch.manual_seed(recipe.run.seed)
    model_path = resolve_model_path(recipe.model.path, cache_dir=recipe.run.cache_dir,
                                    revision=recipe.model.revision, local_files_only=recipe.model.local_files_only)
    processor = load_sft_processor(recipe, model_path)
    index = index_data(recipe, processor)
    check_index(index, recipe)
    per_epoch = windows_per_epoch(index, recipe, dist.world_size)
    if per_epoch == 0:
        raise InputError(f"{len(index.samples)} samples make no full accumulation window on {dist.world_size} ranks",
                         hint="lower sft.gradient_accumulation_steps or add samples")
    total = max(1, round(s.epochs * per_epoch))
    if s.max_steps is not None:
        total = min(total, s.max_steps)
    dtype = "float32" if recipe.launch.zero_stage > 0 else recipe.model.dtype  # DeepSpeed casts for bf16
    model = load_model(model_path, dtype=dtype, device=dist.device,
                       attn_implementation=recipe.model.attn_implementation,
                       revision=recipe.model.revision, local_files_only=recipe.model.local_files_only)
    _freeze(model, recipe)
    if recipe.launch.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    engine = build_engine(model, _engine_config(recipe, total), dist)
    engine.train()
    ckpt = Checkpointer(run_dir / "checkpoints", dist, keep=s.save_total_limit)
    step, epoch, cursor = 0, 0, 0
    latest = ckpt.latest() if resume else None
    if latest is not None:
        state = ckpt.load(engine, latest)
        if int(state.get("world_size", dist.world_size)) != dist.world_size:
            from deepeyes_cli.errors import RunDirError

            raise RunDirError(f"{latest} was written by {state['world_size']} ranks, this run has {dist.world_size}",
                              hint="resume with the same launch.nnodes x launch.gpus_per_node")
        step, epoch, cursor = int(state["step"]), int(state["epoch"]), int(state["cursor"])
        log.info("resumed from %s (step %d, epoch %d, window %d)", latest, step, epoch, cursor)
    metrics = MetricsLogger(run_dir, report_to=s.report_to, enabled=dist.is_main, every=s.logging_steps,
                            wandb_project=s.wandb_project, wandb_mode=s.wandb_mode,
                            config=recipe.model_dump(mode="json"))
    gas = s.gradient_accumulation_steps
    rope = engine.module.model.get_rope_index
    loss = None
    t_start = time.perf_counter()
    try:
        while step < total:
            it = _batches(index, recipe, processor, dist, epoch, cursor * gas, (per_epoch - cursor) * gas)
            while cursor < per_epoch and step < total:
                t0 = time.perf_counter()
                window = [next(it) for _ in range(gas)]
                t_data = time.perf_counter() - t0
                local = sum(int(b["loss_mask"][:, 1:].sum()) for b in window)
                n_tokens = global_count(local, dist)
                share = 0.0
                for b in window:
                    inputs = model_inputs(b, rope, engine.device, engine.dtype)
                    lp = engine.logprobs(inputs, b["loss_mask"].to(engine.device))
                    part = -lp.sum() / n_tokens
                    engine.backward(part)
                    share += float(part.detach())
                stats = engine.step()
                loss = global_count(share, dist)
                seq_tokens = global_count(sum(int(b["mm_token_type_ids"].numel()) for b in window), dist)
                step, cursor = step + 1, cursor + 1
                dt = time.perf_counter() - t0
                row = {"loss": loss, "lr": stats["lr"], "grad_norm": stats["grad_norm"], "epoch": epoch,
                       "trained_tokens": n_tokens, "tokens": seq_tokens, "tokens_per_s": seq_tokens / dt,
                       "step_s": dt, "data_s": t_data, "data_share": t_data / dt, "total_steps": total}
                metrics.log(step, row)
                if on_step is not None and dist.is_main:
                    on_step({"step": step, **row})
                if step % s.save_steps == 0 or step == total:
                    epoch_done = cursor >= per_epoch
                    ckpt.save(engine, step, {"epoch": epoch + 1 if epoch_done else epoch,
                                             "cursor": 0 if epoch_done else cursor, "loss": loss})
            if cursor >= per_epoch:
                epoch, cursor = epoch + 1, 0
        export_dir = None
        if s.export:
            export_dir = export_hf(engine, processor, run_dir / "export", dist, source_dir=model_path)
    finally:
        metrics.close()
    if dist.is_main:
        loss_curve(run_dir)
    log.info("sft finished: %d steps in %.1f s", step, time.perf_counter() - t_start)
    return SFTResult(step, total, loss, export_dir, read_metrics(run_dir / "metrics.jsonl") if dist.is_main else [])
