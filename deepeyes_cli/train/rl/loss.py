"""The GRPO policy loss: the PPO clip with clip-higher and dual-clip, optional truncated
importance sampling, and the exact token-mean scale across ranks and accumulation steps.

Logprobs with grad come from the shared :func:`deepeyes_cli.train.loss.masked_logprobs`
(through the engine, mask-1 positions only, ``lm_head`` in checkpointed chunks); the old
policy's no-grad pass here also gives the entropy.
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


def old_logprobs_and_entropy(model: Any, inputs: dict[str, Any], target_mask: Any,
                             chunk_tokens: int = 2048) -> tuple[Any, Any]:
    """No-grad logprobs of the mask-1 tokens (the same positions and order as
    :func:`deepeyes_cli.train.loss.masked_logprobs`, which the update uses) and the entropy
    of each predicting distribution, from one forward: the "old" policy of the step."""
    import torch

    core = model.model
    if getattr(core, "rope_deltas", None) is not None:
        core.rope_deltas = None  # left over from generation; the forward recomputes M-RoPE
    with torch.no_grad():
        hidden = core(**inputs, use_cache=False).last_hidden_state
        targets = target_mask[:, 1:].to(hidden.device).bool()
        h = hidden[:, :-1][targets]
        labels = inputs["input_ids"][:, 1:][targets]
        outs, ents = [], []
        for s in range(0, h.shape[0], chunk_tokens):
            lp = torch.log_softmax(model.lm_head(h[s:s + chunk_tokens]).float(), -1)
            outs.append(lp.gather(-1, labels[s:s + chunk_tokens, None])[:, 0])
            ents.append(-(lp.exp() * lp).sum(-1))
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return (torch.cat(outs) if outs else empty), (torch.cat(ents) if ents else empty)


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
    dual = torch.zeros_like(loss, dtype=torch.bool)  # pragma: no mutate (only its sum is read)
    if dual_clip_c is not None:
        cap = -advantages * dual_clip_c
        # no mutate: "<=" is equivalent, where A = 0 both the loss and the cap are 0
        negative = advantages < 0  # pragma: no mutate
        dual = negative & (clipped > cap)
        loss = torch.where(negative, torch.minimum(clipped, cap), clipped)
    stats = LossStats(tokens=int(logp.numel()), clipped=int((loss2 > loss1).sum()), dual_clipped=int(dual.sum()),
                      ratio_sum=float(ratio.detach().sum()))
    if tis_cap is not None and rollout_logp is not None:
        w = torch.exp(old_logp - rollout_logp).detach()
        stats.tis_clipped = int((w > tis_cap).sum())
        loss = loss * torch.clamp(w, max=tis_cap)
    total = loss.sum()
    stats.loss_sum = float(total.detach())
    return total, stats
