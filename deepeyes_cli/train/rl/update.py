"""The trainer side of one GRPO step: rebalance, old logprobs, and the updates.

``rl.ppo_mini_batch_size`` prompts per update (8 updates per step in the original). For
every mini-batch the ranks all-gather their trajectories, each computes the same token
balanced plan (``advantage.plan_micro_batches``) and takes its share, padded with dummy
micro-batches to the same count. The gradient of a micro-batch is its token-loss sum times
``token_mean_scale``: the whole mini-batch's token mean, exactly, whatever its split.
The engine is the training floor's (``deepeyes_cli.train.engine``): its ``backward`` takes
each micro-batch's share of the global mean and undoes its own rank/accumulation averaging.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from deepeyes_cli.train.rl.advantage import plan_micro_batches
from deepeyes_cli.train.rl.batch import Encoded, MicroBatch, collate, dummy
from deepeyes_cli.train.rl.loss import LossStats, old_logprobs_and_entropy, policy_loss, token_mean_scale


def dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_items(items: list[Encoded]) -> list[Encoded]:
    """Every rank's items, rank order (a single process: its own)."""
    import torch.distributed as dist

    _, world = dist_info()
    if world == 1:
        return list(items)
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, items)
    return [e for part in parts for e in part]


def all_reduce_sum(x: float) -> float:
    import torch
    import torch.distributed as dist

    if dist_info()[1] == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


@dataclass
class StepStats:
    loss: LossStats = field(default_factory=LossStats)
    grad_norms: list[float] = field(default_factory=list)
    entropy_sum: float = 0.0
    entropy_n: int = 0
    gap_sum: float = 0.0
    gap_n: int = 0
    micro_batches: int = 0
    dummies: int = 0
    old_logprob_s: float = 0.0
    update_s: float = 0.0

    def metrics(self) -> dict[str, float]:
        L = self.loss
        nan = float("nan")
        return {
            "actor/pg_loss": L.loss_sum / L.tokens if L.tokens else 0.0,
            "actor/clip_fraction": L.clipped / L.tokens if L.tokens else 0.0,
            "actor/dual_clip_fraction": L.dual_clipped / L.tokens if L.tokens else 0.0,
            "actor/ratio_mean": L.ratio_sum / L.tokens if L.tokens else nan,
            "actor/tis_clip_fraction": L.tis_clipped / L.tokens if L.tokens else 0.0,
            "actor/grad_norm": max(self.grad_norms) if self.grad_norms else nan,
            "actor/entropy": self.entropy_sum / self.entropy_n if self.entropy_n else nan,
            "rollout/logprob_gap": self.gap_sum / self.gap_n if self.gap_n else nan,
            "actor/train_tokens": float(L.tokens),
            "actor/micro_batches": float(self.micro_batches),
            "actor/dummy_micro_batches": float(self.dummies),
            "time/old_logprob_s": self.old_logprob_s,
            "time/update_s": self.update_s,
        }


def mini_batches(groups: Sequence[Sequence[Encoded]], n_updates: int) -> list[list[Encoded]]:
    """This rank's groups split into ``n_updates`` mini-batches of whole groups."""
    out: list[list[Encoded]] = [[] for _ in range(n_updates)]
    per = max(1, math.ceil(len(groups) / n_updates))
    for i, g in enumerate(groups):
        out[min(i // per, n_updates - 1)] += list(g)
    return out


def accumulation_steps(rl: Any, world: int) -> int:
    """Micro-batches per rank per mini-batch when none is filtered out (DeepSpeed's fixed
    accumulation window; filtered mini-batches are padded up to it with dummies)."""
    items = rl.ppo_mini_batch_size * rl.rollouts_per_prompt
    return math.ceil(math.ceil(items / world) / rl.micro_batch_size_per_gpu)


def plan_rank(items: list[Encoded], per_micro: int, max_tokens: int | None, min_count: int = 1
              ) -> list[list[Encoded]]:
    """This rank's micro-batches of a mini-batch (rebalanced over all ranks); [] = dummy."""
    rank, world = dist_info()
    everything = all_gather_items(items)
    plan = plan_micro_batches([len(e) for e in everything], world, per_micro, max_tokens, min_count)
    return [[everything[i] for i in micro] for micro in plan[rank]]


class Updater:
    def __init__(self, engine: Any, processor: Any, rl: Any, device: str = "cpu", dtype: Any = None) -> None:
        self.engine, self.processor, self.rl, self.device, self.dtype = engine, processor, rl, device, dtype
        self.pad_id = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")

    def _collate(self, micro: list[Encoded]) -> MicroBatch:
        return collate(micro or [dummy(self.processor)], self.processor, self.pad_id, self.device, self.dtype)

    def run(self, per_update: list[list[Encoded]]) -> StepStats:
        """Old logprobs for every mini-batch first (the pre-step policy), then one update each."""
        import time

        import torch

        rl, model, stats = self.rl, self.engine.module, StepStats()
        t0 = time.perf_counter()
        prepared = [self.prepare(items) for items in per_update]
        plans = [p for p, _ in prepared]
        batches = [b for _, b in prepared]
        olds: list[list[Any]] = []
        with torch.no_grad():
            for plan, mbs in zip(plans, batches, strict=True):
                row = []
                for micro, mb in zip(plan, mbs, strict=True):
                    lp, ent = old_logprobs_and_entropy(model, mb.inputs, mb.target_mask, rl.logprob_chunk_tokens)
                    row.append(lp)
                    if micro and ent.numel():
                        stats.entropy_sum += float(ent.sum())
                        stats.entropy_n += int(ent.numel())
                    if micro and mb.rollout_logprobs is not None and mb.rollout_logprobs.numel():
                        stats.gap_sum += float((lp - mb.rollout_logprobs).abs().sum())
                        stats.gap_n += int(lp.numel())
                olds.append(row)
        t1 = time.perf_counter()
        stats.old_logprob_s = t1 - t0  # rebalancing and collating included
        for plan, mbs, old in zip(plans, batches, olds, strict=True):
            if self.accumulate(plan, mbs, old, stats):
                stats.grad_norms.append(float(self.engine.step()["grad_norm"]))
        stats.update_s = time.perf_counter() - t1
        return stats

    def prepare(self, items: list[Encoded]) -> tuple[list[list[Encoded]], list[MicroBatch]]:
        """This rank's rebalanced micro-batches of one mini-batch, collated."""
        fixed = getattr(self.engine, "kind", "torch") == "deepspeed"
        plan = plan_rank(items, self.rl.micro_batch_size_per_gpu, self.rl.micro_batch_max_tokens,
                         accumulation_steps(self.rl, self.engine.dist.world_size) if fixed else 1)
        return plan, [self._collate(m) for m in plan]

    def accumulate(self, plan: list[list[Encoded]], mbs: list[MicroBatch], old: list[Any], stats: StepStats) -> bool:
        """Forward and backward every micro-batch of one mini-batch, each scaled so the summed
        gradient (after the engine's rank average) is the mini-batch's exact token mean.
        False when the mini-batch has no token to train on (then nothing was run)."""
        rl = self.rl
        n_global = int(all_reduce_sum(float(sum(mb.n_targets for m, mb in zip(plan, mbs, strict=True) if m))))
        if n_global == 0:  # every trajectory filtered out: no update (weight decay would still move)
            return False
        scale = token_mean_scale(n_global, self.engine.dist.world_size, len(mbs), engine_divides_by_gas=False,
                                 engine_averages_over_ranks=False)  # the floor's engines take the share
        for micro, mb, old_lp in zip(plan, mbs, old, strict=True):
            lp = self.engine.logprobs(mb.inputs, mb.target_mask)
            total, ls = policy_loss(lp, old_lp, mb.advantages, clip_low=rl.clip_ratio_low,
                                    clip_high=rl.clip_ratio_high, dual_clip_c=rl.dual_clip_c,
                                    rollout_logp=mb.rollout_logprobs, tis_cap=rl.stability.tis_cap)
            self.engine.backward(total * scale if micro else total * 0.0)
            stats.micro_batches += 1
            stats.dummies += int(not micro)
            if micro:
                stats.loss.add(ls)
        return True
