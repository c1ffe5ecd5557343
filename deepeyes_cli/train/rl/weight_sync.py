"""Trainer weights into the rollout engine after each step.

- **Which weights, in which order:** :func:`weight_groups` yields the trainer's parameters
  a decoder layer at a time (embeddings and ``lm_head`` on their own, the frozen vision
  tower skipped): under ZeRO-3 every rank enters ``GatheredParameters`` for the same group
  in the same order, ~30 all-gathers instead of one per parameter.
- **How they get in:** with a colocated synchronous ``LLM`` (``external_launcher`` keeps
  the engine in this process; ``rl_design.md`` §1.5), vLLM's in-process ``load_weights``
  through ``apply_model`` (:func:`push_in_process`). The vLLM backend the rollouts use
  today is ``AsyncLLM``, whose EngineCore is another process, and on vLLM's CPU build
  in-place edits of fp32 weights are silently ignored (its Linears are repacked into
  oneDNN): there the weights go through safetensors and
  ``collective_rpc("reload_weights", weights_path=DIR)``, which repacks (:func:`push_via_reload`).
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


def push_in_process(llm: Any, model: Any, include_vision: bool = False) -> int:
    """GPU path: stream the groups into the colocated engine's ``load_weights``; then
    drop the prefix cache (its KV was computed with the old weights)."""
    n = 0
    for pairs in iter_weights(model, include_vision):
        def load(m: Any, pairs: list[tuple[str, Any]] = pairs) -> None:
            m.load_weights(pairs)
        llm.apply_model(load)
        n += len(pairs)
    llm.reset_prefix_cache()
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
    """The path through the vLLM backend's ``AsyncLLM`` (its EngineCore is another process,
    so no in-process edit reaches it; on vLLM's CPU build in-place edits of fp32 weights are
    ignored anyway): save, ``reload_weights`` from that directory, reset the prefix cache."""
    path = save_for_reload(model, scratch_dir)
    policy.call_engine("collective_rpc", "reload_weights", kwargs={"weights_path": str(path)})
    policy.call_engine("reset_prefix_cache")
    return sum(1 for _ in model.parameters())
