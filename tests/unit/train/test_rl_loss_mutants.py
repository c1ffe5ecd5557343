"""The GRPO loss's corners for `make mutation`: the low clip, every statistic, TIS only when
asked, the rank-averaging factor of the token-mean scale, and the old policy's logprobs and
entropies from one forward (a two-layer torch model stands in for Qwen2.5-VL: the function
reads only ``model.model(...).last_hidden_state`` and ``model.lm_head``)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from deepeyes_cli.train.rl.loss import LossStats, old_logprobs_and_entropy, policy_loss, token_mean_scale


def test_token_mean_scale_for_each_engine_behaviour() -> None:
    assert token_mean_scale(50, world=4, gas=2, engine_averages_over_ranks=False) == pytest.approx(2 / 50)
    assert token_mean_scale(50, world=4, gas=2, engine_divides_by_gas=False,
                            engine_averages_over_ranks=False) == pytest.approx(1 / 50)
    assert token_mean_scale(1, world=1, gas=1) == 1.0
    assert token_mean_scale(-3, world=2, gas=2) == 0.0


def test_negative_advantage_clipped_at_one_minus_eps_low() -> None:
    logp = torch.tensor([math.log(0.5)])  # ratio 0.5, below 1 - 0.2
    total, stats = policy_loss(logp, torch.zeros(1), torch.tensor([-1.0]), clip_low=0.2, clip_high=0.3,
                               dual_clip_c=None)
    assert float(total) == pytest.approx(0.8) and stats.clipped == 1 and stats.dual_clipped == 0
    total, stats = policy_loss(logp, torch.zeros(1), torch.tensor([-1.0]), clip_low=0.6, clip_high=0.3,
                               dual_clip_c=None)
    assert float(total) == pytest.approx(0.5) and stats.clipped == 0  # inside [0.4, 1.3]: the ratio itself


def test_every_statistic_of_a_batch() -> None:
    logp = torch.log(torch.tensor([1.0, 1.5, 10.0, 0.5]))
    adv = torch.tensor([1.0, 1.0, -1.0, 0.0])
    total, stats = policy_loss(logp, torch.zeros(4), adv, clip_low=0.2, clip_high=0.2,
                               dual_clip_c=3.0)
    # token 1: -1; token 2: clipped to -1.2; token 3: dual-clipped to 3; token 4: A = 0 gives 0
    assert float(total) == pytest.approx(-1.0 - 1.2 + 3.0)
    assert stats.tokens == 4 and stats.clipped == 1 and stats.dual_clipped == 1 and stats.tis_clipped == 0
    assert stats.ratio_sum == pytest.approx(1.0 + 1.5 + 10.0 + 0.5)
    assert stats.loss_sum == pytest.approx(float(total))


def test_a_dual_clip_cap_above_the_loss_changes_nothing() -> None:
    logp = torch.log(torch.tensor([2.0]))  # ratio 2, A = -1: loss 2 < cap 3
    total, stats = policy_loss(logp, torch.zeros(1), torch.tensor([-1.0]), clip_low=0.2, clip_high=0.2,
                               dual_clip_c=3.0)
    assert float(total) == pytest.approx(2.0) and stats.dual_clipped == 0


def test_tis_needs_both_a_cap_and_rollout_logprobs() -> None:
    rollout = torch.tensor([-3.0])  # weight e^3 before the cap
    base = {"clip_low": 0.2, "clip_high": 0.2}
    plain, _ = policy_loss(torch.zeros(1), torch.zeros(1), torch.tensor([1.0]), **base)
    capped, stats = policy_loss(torch.zeros(1), torch.zeros(1), torch.tensor([1.0]), rollout_logp=rollout,
                                tis_cap=2.0, **base)
    assert float(plain) == pytest.approx(-1.0) and float(capped) == pytest.approx(-2.0) and stats.tis_clipped == 1
    no_cap, stats = policy_loss(torch.zeros(1), torch.zeros(1), torch.tensor([1.0]), rollout_logp=rollout, **base)
    assert float(no_cap) == pytest.approx(-1.0) and stats.tis_clipped == 0
    no_rollout, _ = policy_loss(torch.zeros(1), torch.zeros(1), torch.tensor([1.0]), tis_cap=2.0, **base)
    assert float(no_rollout) == pytest.approx(-1.0)
    under, stats = policy_loss(torch.zeros(1), torch.zeros(1), torch.tensor([1.0]),
                               rollout_logp=torch.tensor([-0.5]), tis_cap=2.0, **base)
    assert float(under) == pytest.approx(-math.exp(0.5)) and stats.tis_clipped == 0  # under the cap: the weight


def test_loss_stats_add_up_field_by_field() -> None:
    a = LossStats(tokens=1, clipped=2, dual_clipped=3, ratio_sum=0.5, tis_clipped=4, loss_sum=-1.0)
    a.add(LossStats(tokens=10, clipped=20, dual_clipped=30, ratio_sum=5.0, tis_clipped=40, loss_sum=-10.0))
    assert a == LossStats(tokens=11, clipped=22, dual_clipped=33, ratio_sum=5.5, tis_clipped=44, loss_sum=-11.0)


class _Core(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(11, 6)
        self.rope_deltas: Any = torch.ones(1)  # left over from generation
        self.seen_rope: list[Any] = []

    def forward(self, input_ids: torch.Tensor, use_cache: bool = True, **_: Any) -> SimpleNamespace:
        assert use_cache is False
        self.seen_rope.append(getattr(self, "rope_deltas", "absent"))
        return SimpleNamespace(last_hidden_state=torch.tanh(self.embed(input_ids)))


class _Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = _Core()
        self.lm_head = torch.nn.Linear(6, 11, bias=False)


def _reference(model: _Model, ids: torch.Tensor, mask: torch.Tensor) -> tuple[list[float], list[float]]:
    """Token by token: position t-1 predicts token t where mask[t] is 1 (row-major order)."""
    lps, ents = [], []
    with torch.no_grad():
        for b in range(ids.shape[0]):
            for t in range(1, ids.shape[1]):
                if mask[b, t]:
                    h = torch.tanh(model.model.embed(ids[b, t - 1]))
                    lp = torch.log_softmax(model.lm_head(h), -1)
                    lps.append(float(lp[ids[b, t]]))
                    ents.append(float(-(lp.exp() * lp).sum()))
    return lps, ents


@pytest.mark.parametrize("chunk", [1, 2, 2048])
def test_old_logprobs_and_entropy_of_the_trained_tokens(chunk: int) -> None:
    model = _Model()
    ids = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 1, 0, 0, 1]])  # position 0 is never predicted
    logp, ent = old_logprobs_and_entropy(model, {"input_ids": ids}, mask, chunk_tokens=chunk)
    want_lp, want_ent = _reference(model, ids, mask)
    assert logp.tolist() == pytest.approx(want_lp, abs=1e-6) and len(want_lp) == 4
    assert ent.tolist() == pytest.approx(want_ent, abs=1e-6)
    assert logp.dtype == torch.float32 and not logp.requires_grad and not ent.requires_grad
    assert model.model.seen_rope == [None] and model.model.rope_deltas is None  # M-RoPE recomputed


def test_no_trained_token_gives_empty_results() -> None:
    model = _Model()
    logp, ent = old_logprobs_and_entropy(model, {"input_ids": torch.tensor([[1, 2, 3]])}, torch.zeros(1, 3))
    assert logp.shape == (0,) and ent.shape == (0,) and logp.dtype == torch.float32 and ent.dtype == torch.float32


def test_a_model_without_rope_deltas_is_left_as_it_is() -> None:
    model = _Model()
    del model.model.rope_deltas
    logp, _ = old_logprobs_and_entropy(model, {"input_ids": torch.tensor([[1, 2]])}, torch.tensor([[0, 1]]))
    assert logp.shape == (1,) and not hasattr(model.model, "rope_deltas")


def test_the_ratio_is_against_the_old_policy() -> None:
    old = torch.tensor([-2.0, -0.5])
    logp = old + torch.log(torch.tensor([1.1, 0.9]))
    total, stats = policy_loss(logp, old, torch.tensor([1.0, -1.0]), clip_low=0.2, clip_high=0.2)
    assert float(total) == pytest.approx(-1.1 + 0.9, rel=1e-5) and stats.ratio_sum == pytest.approx(2.0, rel=1e-5)


def test_dual_clip_defaults_to_three() -> None:
    total, stats = policy_loss(torch.log(torch.tensor([10.0])), torch.zeros(1), torch.tensor([-1.0]), clip_low=0.2,
                               clip_high=0.2)
    assert float(total) == pytest.approx(3.0, rel=1e-5) and stats.dual_clipped == 1


def test_dual_clip_counts_only_losses_above_the_cap_of_negative_advantages() -> None:
    at_cap, stats = policy_loss(torch.log(torch.tensor([2.0])), torch.zeros(1), torch.tensor([-1.0]), clip_low=0.2,
                                clip_high=0.2, dual_clip_c=2.0)
    assert float(at_cap) == 2.0 and stats.dual_clipped == 0  # exactly at the cap: nothing to clip
    small, stats = policy_loss(torch.zeros(2), torch.zeros(2), torch.tensor([0.5, 0.9]), clip_low=0.2,
                               clip_high=0.2, dual_clip_c=3.0)
    assert float(small) == pytest.approx(-1.4) and stats.dual_clipped == 0  # positive A, even below 1


def test_a_weight_exactly_at_the_tis_cap_is_not_counted_as_clipped() -> None:
    total, stats = policy_loss(torch.zeros(1), torch.zeros(1), torch.tensor([1.0]), clip_low=0.2, clip_high=0.2,
                               rollout_logp=-torch.log(torch.tensor([2.0])), tis_cap=2.0)
    assert float(total) == pytest.approx(-2.0) and stats.tis_clipped == 0
