"""Trainer weights into the rollout engine after each step (``rl.rollout.weight_sync``).

- **Which weights, in which order:** :func:`weight_groups` yields the trainer's parameters
  a decoder layer at a time, in model order (embeddings, layers 0…N-1, final norm,
  ``lm_head``; the frozen vision tower skipped): under ZeRO-3 every rank enters
  ``GatheredParameters`` for the same group in the same order, ~30 all-gathers instead of
  one per parameter, and never more than one layer is gathered at once.
- **push** (:func:`push_in_process`): the engine lives in this process
  (``policy/vllm_colocated.py``), so the gathered tensors go in without a copy through
  memory or disk, then the prefix cache is reset (its KV came from the old weights):
  - on CUDA, vLLM's ``load_weights`` through ``apply_model``, a group at a time (the
    design's path, ``rl_design.md`` §1.5; what colocated TRL does, per layer not per parameter);
  - on vLLM's CPU build ``load_weights`` fails (its Linears are repacked into oneDNN or
    torch-linear kernels that drop the parameters' ``weight_loader``, fp32 and bf16 alike),
    so the same groups stream, still gathered one at a time, into
    ``collective_rpc("reload_weights", weights_iterator=…)``: vLLM's layerwise reload puts
    each layer back in checkpoint form, loads it, repacks it. Layers not streamed (the
    vision tower) keep their kernels. In-process only (a generator does not cross processes).
- **reload** (:func:`push_via_reload`): the whole model as safetensors, then
  ``reload_weights(weights_path=DIR)``; any engine, slower. Never ``reload_weights``
  without either argument: it reloads the checkpoint from disk (vLLM #29341).
- **Names:** :func:`vllm_name` is the HF→vLLM mapping (vLLM's ``hf_to_vllm_mapper`` plus
  its stacked q/k/v and gate/up projections). ``load_weights`` applies it itself; we keep
  it to prove that every trainer parameter has a home in the engine.
- The transformers rollout backend shares the trainer's module: nothing to sync.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import BackendError

# vLLM's Qwen2_5_VLForConditionalGeneration.hf_to_vllm_mapper (prefix renames), longest first.
_PREFIXES = [
    ("model.language_model.", "language_model.model."),
    ("model.visual.", "visual."),
    ("lm_head.", "language_model.lm_head."),
    ("model.", "language_model.model."),  # transformers < 4.52 checkpoints
    ("visual.", "visual."),
]
# vLLM fuses these projections: (HF piece, vLLM parameter, shard id).
_STACKED: list[tuple[str, str, str | int]] = [
    (".self_attn.q_proj.", ".self_attn.qkv_proj.", "q"),
    (".self_attn.k_proj.", ".self_attn.qkv_proj.", "k"),
    (".self_attn.v_proj.", ".self_attn.qkv_proj.", "v"),
    (".mlp.gate_proj.", ".mlp.gate_up_proj.", 0),
    (".mlp.up_proj.", ".mlp.gate_up_proj.", 1),
]


def vllm_name(hf_name: str) -> tuple[str, str | int | None]:
    """The vLLM parameter an HF Qwen2.5-VL parameter loads into, and its shard (None:
    the whole tensor). Raises for a name no rule covers."""
    for old, new in _PREFIXES:
        if hf_name.startswith(old):
            name = new + hf_name[len(old):]
            break
    else:
        raise BackendError(f"no vLLM name for parameter {hf_name}", hint="is this a Qwen2.5-VL checkpoint?")
    for piece, fused, shard in _STACKED:
        if piece in name:
            return name.replace(piece, fused), shard
    return name, None


def is_vision(name: str) -> bool:
    return name.startswith(("model.visual.", "visual."))


_LAYER = re.compile(r"^(.*\.layers\.\d+)\.")


def weight_groups(model: Any, include_vision: bool = False) -> list[list[tuple[str, Any]]]:
    """The model's named parameters in sync groups: one per decoder layer, one for each
    other top-level piece (embeddings, final norm, ``lm_head``, the vision tower)."""
    groups: dict[str, list[tuple[str, Any]]] = {}
    for name, p in model.named_parameters():
        if is_vision(name) and not include_vision:
            continue
        m = _LAYER.match(name)
        key = m.group(1) if m else ("visual" if is_vision(name) else name)
        groups.setdefault(key, []).append((name, p))
    return list(groups.values())


@contextmanager
def gathered(params: list[Any]) -> Iterator[None]:
    """Full tensors of ZeRO-3-partitioned parameters for the duration (a no-op otherwise)."""
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            yield
    else:
        with nullcontext():
            yield


def iter_weights(model: Any, include_vision: bool = False) -> Iterator[list[tuple[str, Any]]]:
    """Each sync group's (HF name, full tensor) pairs, gathered group by group."""
    for group in weight_groups(model, include_vision):
        with gathered([p for _, p in group]):
            yield [(n, p.detach()) for n, p in group]


def sync_mode(setting: str) -> str:
    """``rl.rollout.weight_sync`` resolved: ``push`` or ``reload``."""
    return "reload" if setting == "reload" else "push"


def push_kernel(device: str) -> str:
    """How a push enters the engine: ``load_weights`` on CUDA, ``layerwise_reload`` on vLLM's
    CPU build (where ``load_weights`` fails on its repacked Linears)."""
    return "load_weights" if device.startswith("cuda") else "layerwise_reload"


@contextmanager
def _quiet_reload_logs() -> Iterator[None]:
    """vLLM warns once per layer a layerwise reload does not stream (the skipped vision
    tower, rotary tables without weights): expected here, so hidden for the push."""
    import logging

    names = ("vllm.model_executor.model_loader.reload.layerwise", "vllm.model_executor.model_loader.reload.inplace")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def push_in_process(policy: Any, model: Any, include_vision: bool = False, kernel: str = "load_weights") -> int:
    """Stream the sync groups, gathered one at a time, into the colocated engine (a
    :class:`~deepeyes_cli.policy.vllm_colocated.VLLMColocated`); then drop the prefix cache
    (and the multimodal caches when the vision tower changed). Returns the tensors pushed."""
    n = 0
    if kernel == "load_weights":
        for pairs in iter_weights(model, include_vision):
            def load(m: Any, pairs: list[tuple[str, Any]] = pairs) -> None:
                m.load_weights(pairs)
            policy.call(lambda llm, load=load: llm.apply_model(load))
            n += len(pairs)
    elif kernel == "layerwise_reload":
        def stream() -> Iterator[tuple[str, Any]]:
            nonlocal n
            for pairs in iter_weights(model, include_vision):
                for name, t in pairs:  # a copy: vLLM holds a layer's tensors until the layer is complete
                    n += 1
                    yield name, t.clone()

        with _quiet_reload_logs():
            policy.call(lambda llm: llm.collective_rpc("reload_weights", kwargs={
                "weights_iterator": stream(), "is_checkpoint_format": True}))
    else:
        raise BackendError(f"unknown push kernel {kernel}", hint="load_weights or layerwise_reload")
    policy.call(lambda llm: llm.reset_prefix_cache())
    if include_vision:
        policy.call(lambda llm: llm.reset_mm_cache())
    return n


def save_for_reload(model: Any, out_dir: str | Path) -> Path:
    """Write the full model (every parameter, HF names) as safetensors for
    ``reload_weights``; vLLM's loader requires all of them, the vision tower included."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Any] = {}
    for pairs in iter_weights(model, include_vision=True):
        tensors.update({n: t.contiguous().clone() for n, t in pairs})
    save_file(tensors, str(out / "model.safetensors"))
    return out


def push_via_reload(policy: Any, model: Any, scratch_dir: str | Path) -> int:
    """``rl.rollout.weight_sync=reload``, for any engine (``AsyncLLM``'s EngineCore in another
    process too): save every parameter, ``reload_weights`` from that directory, reset the
    prefix cache."""
    path = save_for_reload(model, scratch_dir)
    policy.call_engine("collective_rpc", "reload_weights", kwargs={"weights_path": str(path)})
    policy.call_engine("reset_prefix_cache")
    return sum(1 for _ in model.parameters())
