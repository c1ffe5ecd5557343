"""GRPO advantages, the stability filters, and micro-batch plans that give every rank the
same number of micro-batches.

Advantages are z-scored per group (the rollouts of one prompt): ``(r − mean) / (std + ε)``
with the unbiased std, as verl's ``grpo`` estimator the original used. The filters decide
which trajectories enter the loss (``in_loss``) and which count in their group's
statistics (``in_stats``); a trajectory out of the loss still costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from deepeyes_cli.train.rl.config import StabilityConfig

EPS = 1e-6

# Flags a scored rollout may carry (set by the driver).
INFRA_ERROR = "infra_error"  # sandbox/search/judge failure, image-pad mismatch, backend error
TRUNCATED = "truncated"  # a token, turn or context limit cut it
VOID_TURN = "void_turn"  # a turn with neither a tool call nor an answer
FORMAT_ERROR = "format_error"


@dataclass
class Scored:
    """What advantages need to know about one rollout."""

    group: str
    reward: float | None  # None: unscorable (an infra failure)
    flags: set[str] = field(default_factory=set)
    correct: bool = False
    tool_calls: int = 0
    advantage: float = 0.0
    in_loss: bool = True
    in_stats: bool = True
    dropped_by: str | None = None  # the filter that took it out of the loss


@dataclass
class AdvantageStats:
    groups: int = 0
    zero_variance_groups: int = 0
    mean_group_std: float = 0.0
    dropped: dict[str, int] = field(default_factory=dict)

    def as_metrics(self) -> dict[str, float]:
        out = {"grpo/groups": float(self.groups), "grpo/zero_variance_groups": float(self.zero_variance_groups),
               "grpo/reward_std": self.mean_group_std}
        out |= {f"grpo/dropped_{k}": float(v) for k, v in self.dropped.items()}
        return out


def shaped_reward(item: Scored, cfg: StabilityConfig) -> float | None:
    """The reward with the conditional tool bonus (only for a correct answer after a tool call)."""
    if item.reward is None:
        return None
    bonus = cfg.tool_bonus if cfg.tool_bonus and item.correct and item.tool_calls > 0 else 0.0
    return item.reward + bonus


def _drop(item: Scored, why: str, stats: AdvantageStats) -> None:
    if item.in_loss:
        item.in_loss = False
        item.dropped_by = why
        stats.dropped[why] = stats.dropped.get(why, 0) + 1


def grpo_advantages(items: Sequence[Scored], cfg: StabilityConfig) -> AdvantageStats:
    """Set ``advantage``, ``in_loss`` and ``in_stats`` on every item; return the statistics."""
    stats = AdvantageStats()
    groups: dict[str, list[Scored]] = {}
    for it in items:
        it.in_loss, it.in_stats, it.dropped_by = True, True, None
        it.advantage = 0.0  # pragma: no mutate (every item's advantage is set again below)
        groups.setdefault(it.group, []).append(it)
    stds = []
    for members in groups.values():
        stats.groups += 1
        for it in members:
            infra = INFRA_ERROR in it.flags or it.reward is None
            if infra and (cfg.mask_infra_errors or it.reward is None):
                it.in_stats = False
                _drop(it, INFRA_ERROR, stats)
        counted = [it for it in members if it.in_stats]
        rewards = [float(shaped_reward(it, cfg) or 0.0) for it in counted]  # counted ones have a reward
        # verl: one member -> mean 0, std 1 (and a group with no member counted has no advantage to give)
        mean = sum(rewards) / len(rewards) if len(rewards) > 1 else 0.0
        std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1)) if len(rewards) > 1 else 1.0
        stds.append(std if len(rewards) > 1 else 0.0)
        zero_var = std < EPS  # pragma: no mutate ("<=" differs only for a std of exactly EPS)
        stats.zero_variance_groups += int(zero_var)
        for it, r in zip(counted, rewards, strict=True):  # pragma: no mutate (one list is made from the other)
            it.advantage = (r - mean) / (std + EPS)
        for it in members:
            if zero_var and cfg.drop_zero_variance_groups:
                _drop(it, "zero_variance", stats)
            if cfg.mask_truncated and TRUNCATED in it.flags:
                _drop(it, TRUNCATED, stats)
            if cfg.void_turn_filter and VOID_TURN in it.flags:
                _drop(it, VOID_TURN, stats)
            if not it.in_stats:
                it.advantage = 0.0
    stats.mean_group_std = sum(stds) / len(stds) if stds else 0.0
    return stats


# ---------------------------------------------------------------- micro-batch plans

Plan = list[list[list[int]]]  # [rank][micro-batch] -> item indices; [] is a dummy micro-batch


def balance_ranks(lengths: Sequence[int], world: int) -> list[list[int]]:
    """Assign items to ranks: counts as even as possible (at most ceil(n/world) each, so the
    micro-batch count per rank is known in advance), tokens balanced within that (longest
    first, to the lightest rank with room; ties by rank). Deterministic: every rank computes
    the same answer from the same all-gathered lengths."""
    cap = math.ceil(len(lengths) / world)
    # tokens, count, rank: the lists compare in that order (no mutate: the same start on every rank)
    loads = [[0, 0, r] for r in range(world)]  # pragma: no mutate
    out: list[list[int]] = [[] for _ in range(world)]
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        load = min(x for x in loads if x[1] < cap)
        out[load[2]].append(i)
        load[0] += lengths[i]
        load[1] += 1
    return [sorted(x) for x in out]


def micro_batches(indices: Sequence[int], lengths: Sequence[int], per_micro: int,
                  max_tokens: int | None = None) -> list[list[int]]:
    """Split one rank's items into micro-batches: ``per_micro`` items each, or packed up to
    ``max_tokens`` (an item longer than that gets a micro-batch of its own)."""
    out: list[list[int]] = []
    cur: list[int] = []
    tokens = 0
    for i in indices:
        full = (len(cur) >= per_micro) if max_tokens is None else (cur and tokens + lengths[i] > max_tokens)
        if full:
            out.append(cur)
            cur, tokens = [], 0
        cur.append(i)
        tokens += lengths[i]
    if cur:
        out.append(cur)
    return out


def plan_micro_batches(lengths: Sequence[int], world: int, per_micro: int = 1,
                       max_tokens: int | None = None, min_count: int = 1) -> Plan:
    """Balance items over ranks, split each rank's share into micro-batches, and pad every
    rank with dummy (empty) micro-batches to the same count: under ZeRO-3 each forward is
    collective, so a rank with fewer micro-batches would hang the others."""
    per_rank = [micro_batches(idx, lengths, per_micro, max_tokens) for idx in balance_ranks(lengths, world)]
    n = max((len(m) for m in per_rank), default=0)  # pragma: no mutate (one list per rank: never empty)
    # every rank runs at least one (dummy) forward: the collective must happen; DeepSpeed
    # wants its configured accumulation count (min_count) every mini-batch
    n = max(n, min_count, 1)
    return [m + [[] for _ in range(n - len(m))] for m in per_rank]
