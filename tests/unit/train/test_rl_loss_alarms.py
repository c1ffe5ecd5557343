"""PPO clip (clip-higher, dual-clip), TIS, the token-mean scale, alarms and HF->vLLM names."""

from __future__ import annotations

import pytest
import torch

from deepeyes_cli.train.rl.alarms import Alarms
from deepeyes_cli.train.rl.config import AlarmConfig
from deepeyes_cli.train.rl.loss import policy_loss, token_mean_scale
from deepeyes_cli.train.rl.weight_sync import vllm_name


def _loss(logp, old, adv, **kw):
    kw.setdefault("clip_low", 0.2)
    kw.setdefault("clip_high", 0.2)
    return policy_loss(torch.tensor(logp, requires_grad=True), torch.tensor(old), torch.tensor(adv), **kw)


def test_unclipped_ratio_gives_minus_advantage_times_ratio() -> None:
    r = torch.tensor([1.1, 0.9])
    total, stats = _loss(r.log().tolist(), [0.0, 0.0], [1.0, -1.0])
    assert float(total) == pytest.approx(-1.1 + 0.9, rel=1e-5)
    assert stats.clipped == 0 and stats.tokens == 2


def test_positive_advantage_clipped_at_one_plus_eps_high() -> None:
    logp = torch.tensor([1.5]).log().tolist()
    total, stats = _loss(logp, [0.0], [2.0])
    assert float(total) == pytest.approx(-2.0 * 1.2, rel=1e-5) and stats.clipped == 1
    total, _ = _loss(logp, [0.0], [2.0], clip_high=0.28)  # DAPO clip-higher
    assert float(total) == pytest.approx(-2.0 * 1.28, rel=1e-5)
    lp = torch.tensor(logp, requires_grad=True)
    t, _ = policy_loss(lp, torch.tensor([0.0]), torch.tensor([2.0]), clip_low=0.2, clip_high=0.2)
    t.backward()
    assert float(lp.grad) == 0.0  # clipped: no gradient


def test_dual_clip_caps_negative_advantage_loss() -> None:
    logp = torch.tensor([10.0]).log().tolist()  # ratio 10, A < 0: unbounded without dual-clip
    total, stats = _loss(logp, [0.0], [-1.0], dual_clip_c=None)
    assert float(total) == pytest.approx(10.0, rel=1e-5)
    total, stats = _loss(logp, [0.0], [-1.0], dual_clip_c=3.0)
    assert float(total) == pytest.approx(3.0, rel=1e-5) and stats.dual_clipped == 1
    total, stats = _loss(logp, [0.0], [1.0], dual_clip_c=3.0)  # A > 0: dual-clip does not apply
    assert float(total) == pytest.approx(-1.2, rel=1e-5) and stats.dual_clipped == 0


def test_tis_weights_tokens_by_truncated_trainer_over_rollout_ratio() -> None:
    old = torch.tensor([0.0, 0.0])
    rollout = torch.tensor([0.0, -3.0])  # the second token: trainer prob e^3 x the rollout's
    total, stats = policy_loss(torch.zeros(2, requires_grad=True), old, torch.tensor([1.0, 1.0]), clip_low=0.2,
                               clip_high=0.2, rollout_logp=rollout, tis_cap=2.0)
    assert float(total) == pytest.approx(-(1.0 + 2.0)) and stats.tis_clipped == 1


def test_token_mean_scale() -> None:
    assert token_mean_scale(100, world=4, gas=2) == pytest.approx(8 / 100)
    assert token_mean_scale(100, world=4, gas=2, engine_divides_by_gas=False) == pytest.approx(4 / 100)
    assert token_mean_scale(0, 2, 2) == 0.0


def _feed(alarms: Alarms, n: int, **metrics: float) -> list:
    out = []
    for _ in range(n):
        out = alarms.update(metrics)
    return out


def test_alarms_fire_on_a_scripted_tool_collapse_within_a_few_steps() -> None:
    a = Alarms(AlarmConfig(ema=0.5, warmup_steps=1), max_response_length=1000)
    healthy = {"rollout/tool_calls": 1.5, "rollout/tool_calls_code": 1.0, "grpo/reward_std": 0.3,
               "actor/entropy": 1.0, "rollout/response_tokens": 300.0}
    assert _feed(a, 5, **healthy) == []
    fired: list[str] = []
    for step in range(1, 6):  # noqa: B007  # tool calls drop to zero
        fired = [x.name for x in a.update({**healthy, "rollout/tool_calls": 0.0, "rollout/tool_calls_code": 0.0})]
        if fired:
            break
    assert step <= 2 and "tool_drop_any" in fired and "tool_drop_code" in fired
    fired = [x.name for x in _feed(a, 6, **{**healthy, "rollout/tool_calls": 0.0, "rollout/tool_calls_code": 0.0})]
    assert "tool_collapse_any" in fired and "tool_collapse_code" in fired


def test_alarms_std_entropy_grad_norm_and_stop() -> None:
    a = Alarms(AlarmConfig(warmup_steps=0, stop_on=["grad_norm"]), max_response_length=100)
    fired = a.update({"grpo/reward_std": 0.0, "actor/entropy": 0.001, "actor/grad_norm": 1e4,
                      "rollout/response_tokens": 99.0})
    names = {x.name for x in fired}
    assert {"reward_std", "entropy", "grad_norm", "long_responses"} <= names
    assert a.should_stop(fired).name == "grad_norm"
    assert Alarms(AlarmConfig(warmup_steps=0), 100).should_stop(fired) is None


def test_alarm_state_round_trip_fires_identically() -> None:
    cfg = AlarmConfig(ema=0.3, warmup_steps=0)
    a, b = Alarms(cfg, 100), Alarms(cfg, 100)
    seq = [{"rollout/tool_calls": v} for v in (2.0, 1.5, 0.5, 0.1, 0.0, 0.0)]
    for m in seq[:3]:
        a.update(m)
    b.load_state_dict(a.state_dict())
    for m in seq[3:]:
        assert [x.name for x in a.update(m)] == [x.name for x in b.update(m)]
    assert a.state_dict() == b.state_dict()


@pytest.mark.parametrize(("hf", "want"), [
    ("model.language_model.layers.3.self_attn.q_proj.weight", ("language_model.model.layers.3.self_attn.qkv_proj.weight", "q")),
    ("model.language_model.layers.0.self_attn.v_proj.bias", ("language_model.model.layers.0.self_attn.qkv_proj.bias", "v")),
    ("model.language_model.layers.0.mlp.up_proj.weight", ("language_model.model.layers.0.mlp.gate_up_proj.weight", 1)),
    ("model.language_model.layers.0.self_attn.o_proj.weight", ("language_model.model.layers.0.self_attn.o_proj.weight", None)),
    ("lm_head.weight", ("language_model.lm_head.weight", None)),
    ("model.visual.blocks.0.mlp.gate_proj.weight", ("visual.blocks.0.mlp.gate_up_proj.weight", 0)),
    ("model.visual.merger.mlp.0.weight", ("visual.merger.mlp.0.weight", None)),
])
def test_vllm_names(hf: str, want: tuple) -> None:
    assert vllm_name(hf) == want
