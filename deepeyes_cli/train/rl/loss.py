"""The GRPO policy loss: per-token logprobs at generated positions only, the PPO clip with
clip-higher and dual-clip, optional truncated importance sampling, and the exact
token-mean scale across ranks and accumulation steps.

Logprobs are computed from the decoder's hidden states at mask-1 positions, ``lm_head``
applied in chunks (under activation checkpointing when grads are on): full logits of a
16k-token sequence would take ~10 GB in fp32 (``rl_design.md`` §2.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def token_mean_scale(tokens_global: int, world: int, gas: int, *, engine_divides_by_gas: bool = True,
                     engine_averages_over_ranks: bool = True) -> float:
    """The factor that turns a micro-batch's *sum* of token losses into its share of the
    mini-batch's token mean, whatever the engine does next. DeepSpeed divides the loss by
    the accumulation steps and ZeRO averages gradients over ranks, so
    ``loss = Σ token losses · gas · world / N`` with N the mini-batch's mask-1 tokens
    summed over all ranks."""
    if tokens_global <= 0:
        return 0.0
    scale = 1.0 / tokens_global
    if engine_divides_by_gas:
        scale *= gas
    if engine_averages_over_ranks:
        scale *= world
    return scale


def masked_logprobs(model: Any, inputs: dict[str, Any], target_mask: Any, chunk_tokens: int = 2048,
                    with_entropy: bool = False) -> tuple[Any, Any | None]:
    """Logprobs of ``input_ids[t]`` for every position t with ``target_mask[t] == 1`` (row
    major), and optionally the entropy of the distribution that predicted it (no grad).
    Position 0 can never be a target (nothing predicts it)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    ids = inputs["input_ids"]
    core = model.model
    if hasattr(core, "rope_deltas"):
        core.rope_deltas = None  # left over from generation; the forward recomputes M-RoPE
    hidden = core(**inputs, use_cache=False).last_hidden_state  # (B, L, H)
    targets = target_mask[:, 1:].bool()
    h = hidden[:, :-1][targets]  # (N, H): the states that predict each target
    labels = ids[:, 1:][targets]
    head = model.lm_head

    def chunk_logp(hc: Any, lc: Any) -> Any:
        logits = head(hc).float()
        return torch.log_softmax(logits, -1).gather(-1, lc[:, None]).squeeze(-1)

    outs, ents = [], []
    for s in range(0, h.shape[0], chunk_tokens):
        hc, lc = h[s:s + chunk_tokens], labels[s:s + chunk_tokens]
        if torch.is_grad_enabled() and hc.requires_grad:
            outs.append(checkpoint(chunk_logp, hc, lc, use_reentrant=False))
        else:
            outs.append(chunk_logp(hc, lc))
        if with_entropy:
            with torch.no_grad():
                lp = torch.log_softmax(head(hc.detach()).float(), -1)
                ents.append(-(lp.exp() * lp).sum(-1))
    empty = hidden.new_zeros(0, dtype=torch.float32)
    logp = torch.cat(outs) if outs else empty + hidden.sum() * 0  # keeps the graph (ZeRO-3 needs a backward)
    ent = (torch.cat(ents) if ents else empty) if with_entropy else None
    return logp, ent


@dataclass
class LossStats:
    tokens: int = 0
    clipped: int = 0  # tokens whose ratio left [1 − ε_low, 1 + ε_high] against the advantage
    dual_clipped: int = 0
    ratio_sum: float = 0.0
    tis_clipped: int = 0
    loss_sum: float = 0.0

    def add(self, other: LossStats) -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))


def policy_loss(logp: Any, old_logp: Any, advantages: Any, *, clip_low: float, clip_high: float,
                dual_clip_c: float | None = 3.0, rollout_logp: Any = None,
                tis_cap: float | None = None) -> tuple[Any, LossStats]:
    """Σ over tokens of the clipped PPO loss (all tensors flat, one entry per target token).

    ``−A·r`` clipped to ``[1−ε_low, 1+ε_high]`` (DAPO clip-higher when ε_high > ε_low); for
    A < 0 the loss is also capped at ``−A·c`` (dual-clip, Ye et al. 2020). With ``tis_cap``
    each token is weighted by ``min(exp(old − rollout), cap)``: the trainer/rollout-engine
    probability ratio, truncated."""
    import torch

    ratio = torch.exp(logp - old_logp)
    loss1 = -advantages * ratio
    loss2 = -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    clipped = torch.maximum(loss1, loss2)
    loss = clipped
    dual = torch.zeros_like(loss, dtype=torch.bool)
    if dual_clip_c is not None:
        cap = -advantages * dual_clip_c
        dual = (advantages < 0) & (clipped > cap)
        loss = torch.where(advantages < 0, torch.minimum(clipped, cap), clipped)
    stats = LossStats(tokens=int(logp.numel()), clipped=int((loss2 > loss1).sum()), dual_clipped=int(dual.sum()),
                      ratio_sum=float(ratio.detach().sum()))
    if tis_cap is not None and rollout_logp is not None:
        w = torch.exp(old_logp - rollout_logp).detach()
        stats.tis_clipped = int((w > tis_cap).sum())
        loss = loss * torch.clamp(w, max=tis_cap)
    total = loss.sum()
    stats.loss_sum = float(total.detach())
    return total, stats
