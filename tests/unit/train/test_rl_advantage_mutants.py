"""GRPO advantage corners for `make mutation`: exact values, metrics names, filter
bookkeeping, re-runs, and the exact rank and micro-batch assignment at ties and bounds."""

from __future__ import annotations

import math

import pytest

from deepeyes_cli.train.rl.advantage import (
    EPS,
    INFRA_ERROR,
    TRUNCATED,
    VOID_TURN,
    AdvantageStats,
    Scored,
    balance_ranks,
    grpo_advantages,
    micro_batches,
    plan_micro_batches,
    shaped_reward,
)
from deepeyes_cli.train.rl.config import StabilityConfig


def test_a_group_of_one_keeps_its_reward_as_advantage() -> None:
    item = Scored("solo", 0.7)
    stats = grpo_advantages([item], StabilityConfig())
    assert item.advantage == 0.7 / (1.0 + EPS)  # verl: mean 0, std 1 for a single member
    assert stats.zero_variance_groups == 0 and stats.mean_group_std == 0.0


def test_exact_z_scores_and_the_mean_std_over_groups() -> None:
    pair = [Scored("p", 0.0), Scored("p", 1.0)]
    flat = [Scored("f", 0.5), Scored("f", 0.5)]
    lost = [Scored("x", None)]
    stats = grpo_advantages([*pair, *flat, *lost], StabilityConfig())
    std = math.sqrt(0.5)
    assert [x.advantage for x in pair] == [-0.5 / (std + EPS), 0.5 / (std + EPS)]
    assert [x.advantage for x in flat] == [0.0, 0.0] and lost[0].advantage == 0.0
    assert stats.groups == 3 and stats.zero_variance_groups == 1
    assert stats.mean_group_std == pytest.approx(std / 3, rel=1e-12)  # the pair's std, 0, and 0 for no member


def test_metrics_names_and_values() -> None:
    stats = AdvantageStats(groups=4, zero_variance_groups=1, mean_group_std=0.25, dropped={"truncated": 2})
    assert stats.as_metrics() == {"grpo/groups": 4.0, "grpo/zero_variance_groups": 1.0, "grpo/reward_std": 0.25,
                                  "grpo/dropped_truncated": 2.0}


def test_an_item_is_dropped_once_by_the_first_filter_and_counted_per_filter() -> None:
    both = Scored("a", 1.0, flags={TRUNCATED, VOID_TURN})
    items = [both, Scored("a", 0.0, flags={TRUNCATED}), Scored("a", 0.5, flags={VOID_TURN}), Scored("a", 0.2)]
    stats = grpo_advantages(items, StabilityConfig(mask_truncated=True, void_turn_filter=True))
    assert both.dropped_by == TRUNCATED and items[2].dropped_by == VOID_TURN and items[3].dropped_by is None
    assert stats.dropped == {TRUNCATED: 2, VOID_TURN: 1}
    assert both.in_stats and both.advantage != 0.0  # out of the loss, still in its group's baseline


def test_a_second_run_starts_from_a_clean_slate() -> None:
    items = [Scored("a", 1.0, flags={TRUNCATED}), Scored("a", 0.0)]
    grpo_advantages(items, StabilityConfig(mask_truncated=True))
    assert not items[0].in_loss and items[0].dropped_by == TRUNCATED
    stats = grpo_advantages(items, StabilityConfig())
    assert items[0].in_loss and items[0].dropped_by is None and stats.dropped == {}


def test_infra_flags_count_as_rewards_unless_masked() -> None:
    failed = Scored("a", 0.0, flags={INFRA_ERROR})
    items = [Scored("a", 1.0), failed]
    grpo_advantages(items, StabilityConfig(mask_infra_errors=False))
    assert failed.in_stats and failed.in_loss and failed.advantage < 0
    stats = grpo_advantages(items, StabilityConfig(mask_infra_errors=True))
    assert not failed.in_stats and failed.dropped_by == INFRA_ERROR and stats.dropped == {INFRA_ERROR: 1}
    assert items[0].advantage == 1.0 / (1.0 + EPS)  # left alone in its group: a group of one


def test_the_tool_bonus_needs_a_bonus_a_correct_answer_and_a_tool_call() -> None:
    cfg = StabilityConfig(tool_bonus=0.5)
    assert shaped_reward(Scored("a", 1.0, correct=True, tool_calls=1), cfg) == 1.5
    assert shaped_reward(Scored("a", 1.0, correct=True, tool_calls=0), cfg) == 1.0
    assert shaped_reward(Scored("a", 0.0, correct=False, tool_calls=3), cfg) == 0.0
    assert shaped_reward(Scored("a", 1.0, correct=True, tool_calls=1), StabilityConfig(tool_bonus=0.0)) == 1.0
    assert shaped_reward(Scored("a", None, correct=True, tool_calls=1), cfg) is None


def test_ranks_fill_lightest_first_with_ties_to_fewer_items_then_lower_rank() -> None:
    # tokens tie at 1 after two items; the rank holding fewer items takes the next one
    assert balance_ranks([1, 1, 0, 0, 0, 0], 2) == [[0, 2, 4], [1, 3, 5]]
    assert balance_ranks([5, 5, 5, 5], 2) == [[0, 2], [1, 3]]  # equal loads: the lower rank
    assert balance_ranks([10, 1, 1, 1], 2) == [[0, 3], [1, 2]]  # the light rank is full at ceil(4 / 2)
    assert balance_ranks([1, 9, 5], 3) == [[1], [2], [0]]  # longest first
    assert balance_ranks([3, 3, 3], 2) == [[0, 2], [1]]
    assert balance_ranks([], 2) == [[], []]


def test_micro_batches_by_count_and_by_tokens_at_the_bounds() -> None:
    assert micro_batches([0, 1, 2], [1, 1, 1], per_micro=2) == [[0, 1], [2]]
    assert micro_batches([0, 1, 2], [1, 1, 1], per_micro=1) == [[0], [1], [2]]
    assert micro_batches([0, 1, 2], [3, 2, 4], per_micro=1, max_tokens=5) == [[0, 1], [2]]  # 3 + 2 fits exactly
    assert micro_batches([0, 1, 2], [9, 2, 4], per_micro=1, max_tokens=5) == [[0], [1], [2]]  # too long: alone
    assert micro_batches([4, 7], [0, 0, 0, 0, 2, 0, 0, 3], per_micro=1, max_tokens=5) == [[4, 7]]
    assert micro_batches([], [], per_micro=2) == []


def test_plans_pad_to_the_accumulation_count() -> None:
    assert plan_micro_batches([4, 4], 1, per_micro=1, min_count=3) == [[[0], [1], []]]
    assert plan_micro_batches([4, 4], 2, per_micro=1, min_count=0) == [[[0]], [[1]]]
    assert plan_micro_batches([4], 2, per_micro=1, min_count=1) == [[[0]], [[]]]


def test_no_rollouts_give_empty_statistics() -> None:
    stats = grpo_advantages([], StabilityConfig())
    assert (stats.groups, stats.zero_variance_groups, stats.mean_group_std, stats.dropped) == (0, 0, 0.0, {})


def test_a_group_with_every_rollout_lost_has_no_statistics() -> None:
    lost = [Scored("x", None), Scored("x", None)]
    stats = grpo_advantages(lost, StabilityConfig(drop_zero_variance_groups=True))
    assert stats.zero_variance_groups == 0 and stats.mean_group_std == 0.0 and stats.dropped == {INFRA_ERROR: 2}
    assert all(x.in_stats is False and x.in_loss is False and x.advantage == 0.0 for x in lost)


def test_token_packing_starts_counting_afresh_after_each_micro_batch() -> None:
    assert micro_batches([0, 1, 2], [5, 3, 2], per_micro=1, max_tokens=5) == [[0], [1, 2]]  # 3 + 2 fits


def test_plans_default_to_one_item_per_micro_batch() -> None:
    assert plan_micro_batches([4, 4], 1) == [[[0], [1]]]
    assert plan_micro_batches([], 2, min_count=0) == [[[]], [[]]]  # still one (dummy) forward each
