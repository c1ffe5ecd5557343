"""GRPO advantages, the stability filters and micro-batch plans."""

from __future__ import annotations

import math
import random

import pytest

from deepeyes_cli.train.rl.advantage import (
    INFRA_ERROR,
    TRUNCATED,
    VOID_TURN,
    Scored,
    balance_ranks,
    grpo_advantages,
    plan_micro_batches,
)
from deepeyes_cli.train.rl.config import StabilityConfig


def _group(name: str, rewards: list[float | None], **kw) -> list[Scored]:
    return [Scored(group=name, reward=r, **kw) for r in rewards]


def test_advantages_are_z_scores_per_group_with_unbiased_std() -> None:
    a = _group("a", [1.0, 0.0, 0.0, 1.0])
    b = _group("b", [0.2, 0.8])
    grpo_advantages(a + b, StabilityConfig())
    std_a = math.sqrt(sum((r - 0.5) ** 2 for r in [1, 0, 0, 1]) / 3)
    assert [x.advantage for x in a] == pytest.approx([0.5 / std_a, -0.5 / std_a, -0.5 / std_a, 0.5 / std_a], rel=1e-5)
    std_b = math.sqrt(2 * 0.3 ** 2)
    assert [x.advantage for x in b] == pytest.approx([-0.3 / std_b, 0.3 / std_b], rel=1e-5)
    assert sum(x.advantage for x in a) == pytest.approx(0, abs=1e-9)  # groups do not mix


def test_zero_variance_group_has_zero_advantage_and_can_be_dropped() -> None:
    items = _group("a", [1.0, 1.0, 1.0]) + _group("b", [0.0, 1.0])
    stats = grpo_advantages(items, StabilityConfig())
    assert all(x.advantage == 0 and x.in_loss for x in items[:3])
    assert stats.zero_variance_groups == 1
    stats = grpo_advantages(items, StabilityConfig(drop_zero_variance_groups=True))
    assert [x.in_loss for x in items] == [False, False, False, True, True]
    assert stats.dropped == {"zero_variance": 3}


def test_infra_failures_masked_from_loss_and_group_statistics() -> None:
    items = [*_group("a", [1.0, 0.0, 0.0]), Scored("a", 0.0, flags={INFRA_ERROR})]
    grpo_advantages(items, StabilityConfig())  # option off: the failure counts as a 0, like the original
    with_failure = [x.advantage for x in items[:3]]
    grpo_advantages(items, StabilityConfig(mask_infra_errors=True))
    assert not items[3].in_loss and not items[3].in_stats and items[3].advantage == 0
    std = math.sqrt(((1 - 1 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2)
    assert [x.advantage for x in items[:3]] == pytest.approx([(2 / 3) / std, -(1 / 3) / std, -(1 / 3) / std], rel=1e-5)
    assert with_failure != pytest.approx([x.advantage for x in items[:3]])


def test_unscorable_rollout_never_enters_loss_or_statistics() -> None:
    items = _group("a", [1.0, 0.0, None])
    grpo_advantages(items, StabilityConfig())
    assert not items[2].in_loss and not items[2].in_stats
    assert items[0].advantage == pytest.approx(-items[1].advantage)


def test_truncated_and_void_turn_filters() -> None:
    items = [Scored("a", 1.0, flags={TRUNCATED}), Scored("a", 0.0, flags={VOID_TURN}), Scored("a", 0.5)]
    grpo_advantages(items, StabilityConfig())
    assert all(x.in_loss for x in items)
    stats = grpo_advantages(items, StabilityConfig(mask_truncated=True, void_turn_filter=True))
    assert [x.in_loss for x in items] == [False, False, True]
    assert items[0].in_stats  # still part of its group's baseline
    assert stats.dropped == {TRUNCATED: 1, VOID_TURN: 1}


def test_tool_bonus_only_when_correct_and_tool_called() -> None:
    items = [Scored("a", 1.0, correct=True, tool_calls=1), Scored("a", 1.0, correct=True, tool_calls=0),
             Scored("a", 0.0, correct=False, tool_calls=2)]
    grpo_advantages(items, StabilityConfig())
    assert items[0].advantage == pytest.approx(items[1].advantage)
    grpo_advantages(items, StabilityConfig(tool_bonus=0.5))
    assert items[0].advantage > items[1].advantage > items[2].advantage


def test_balance_is_deterministic_and_even() -> None:
    lengths = [100, 90, 80, 70, 10, 10, 5]
    parts = balance_ranks(lengths, 2)
    assert sorted(i for p in parts for i in p) == list(range(7))
    loads = [sum(lengths[i] for i in p) for p in parts]
    assert sorted(len(p) for p in parts) == [3, 4]  # counts even first (a fixed micro-batch count)
    assert abs(loads[0] - loads[1]) <= 100
    assert balance_ranks(lengths, 2) == parts


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_every_rank_gets_the_same_number_of_micro_batches(world: int) -> None:
    rng = random.Random(world)
    for _ in range(50):
        lengths = [rng.randint(1, 500) for _ in range(rng.randint(0, 12))]
        per_micro = rng.randint(1, 3)
        max_tokens = rng.choice([None, 300, 800])
        plan = plan_micro_batches(lengths, world, per_micro, max_tokens)
        assert len(plan) == world
        assert len({len(p) for p in plan}) == 1 and len(plan[0]) >= 1
        if max_tokens is None:  # the count is known in advance: ceil(ceil(n / world) / per_micro)
            assert len(plan[0]) == max(1, math.ceil(math.ceil(len(lengths) / world) / per_micro))
        assert len(plan_micro_batches(lengths, world, per_micro, max_tokens, min_count=20)[0]) >= 20
        used = sorted(i for p in plan for m in p for i in m)
        assert used == list(range(len(lengths)))  # each item exactly once
        for p in plan:
            for m in p:
                if max_tokens is None:
                    assert len(m) <= per_micro
                elif len(m) > 1:
                    assert sum(lengths[i] for i in m) <= max_tokens


def test_uneven_counts_are_padded_with_dummies() -> None:
    plan = plan_micro_batches([10, 10, 10], 2, per_micro=1)
    assert sorted(len([m for m in p if m]) for p in plan) == [1, 2]
    assert all(len(p) == 2 for p in plan)
    assert plan_micro_batches([], 2) == [[[]], [[]]]
