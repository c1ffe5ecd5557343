"""RL steps with the update under DeepSpeed ZeRO-3 (CPU accelerator, gloo) and the rollouts on
a vLLM engine in the same process (vLLM's CPU build, the tiny model), the weights pushed
in-process after each update (``rl.rollout.weight_sync=push``: on the CPU build vLLM's
layerwise ``reload_weights`` fed from the ZeRO-3 gathers, a decoder layer at a time).

What is real here: the trainer's parameters are partitioned (ZeRO-3), the push gathers
them a group at a time, the second step's rollouts come from the pushed weights, vLLM's
greedy output after the sync matches the trainer's updated weights (text, and an image
prompt through the vision tower the push skipped), and the run leaves metrics with alarms.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

ARGS = ["rl.datasets=[builtin:count]", "rl.rollout.backend=vllm", "rl.rollout.weight_sync=push", "agent.tools=[code]",
        "rl.train_batch_size=1", "rl.rollouts_per_prompt=4", "rl.ppo_mini_batch_size=1", "rl.rollout.max_steps=2",
        "rl.save_freq=100", "rl.learning_rate=0.5", "launch.zero_stage=3", "launch.mixed_precision=no",
        "policy.vllm.max_model_len=4096", "policy.vllm.enforce_eager=true", "policy.vllm.max_num_batched_tokens=4096",
        "model.dtype=float32", "agent.max_tokens_per_turn=48", "rl.report_to=[]",
        "rl.alarms.warmup_steps=0", "rl.alarms.min_entropy=1000"]  # an alarm that fires: it must reach metrics.jsonl


def _conv(image: bool) -> Any:
    from deepeyes_cli.policy.base import ChatMessage, Conversation

    if not image:
        return Conversation([ChatMessage("user", ["How many red squares are in the image?"])])
    img = Image.new("RGB", (112, 84), (20, 30, 40))  # multiples of 28 inside the pixel budget: no resize
    for x in range(0, 112, 7):
        img.putpixel((x, x % 84), (250, 10, 10))
    return Conversation([ChatMessage("user", [img, "\nHow many red squares?"])])


def _greedy(policy: Any, image: bool = False, n: int = 8) -> tuple[list[int], list[float]]:
    from deepeyes_cli.policy.base import SamplingParams

    out = asyncio.run(policy.generate([_conv(image)], SamplingParams(max_tokens=n, temperature=0.0)))[0]
    return list(out.token_ids or []), list(out.logprobs or [])


def _gap(a: list[float], b: list[float], k: int) -> float:
    return sum(abs(x - y) for x, y in zip(a[:k], b[:k], strict=False)) / k


def _hf_copy(trainer: Any) -> Any:
    """A plain transformers policy over the trainer's full (gathered) weights."""
    from deepeyes_cli.models.loading import load_model
    from deepeyes_cli.policy.hf import TransformersPolicy

    state = trainer.engine.full_state_dict()
    model = load_model(str(trainer.model_path), dtype="float32", device="cpu")
    model.load_state_dict(state)
    model.eval()
    return TransformersPolicy(model, trainer.processor)


@pytest.mark.timeout(1500)
def test_zero3_steps_beside_vllm_with_in_process_push(vllm_ready: None, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.train.rl import weight_sync
    from deepeyes_cli.train.rl.loop import Trainer

    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    trainer = Trainer(load_recipe("tiny", ARGS).recipe, tmp_path / "run")
    assert trainer.engine.kind == "deepspeed"
    lm_head = trainer.model.lm_head.weight
    assert hasattr(lm_head, "ds_id") and lm_head.numel() == 0  # ZeRO-3 really partitioned it
    before = _hf_copy(trainer)
    base_ids, base_lp = _greedy(before)

    pushed: list[int] = []
    real_push = weight_sync.push_in_process

    def counting_push(*a: Any, **k: Any) -> int:
        pushed.append(real_push(*a, **k))
        return pushed[-1]

    monkeypatch.setattr(weight_sync, "push_in_process", counting_push)
    res = trainer.run()
    assert [r.step for r in res] == [1, 2]
    eng = trainer.rollout_engine
    assert (eng.kind, eng.weight_sync, eng.push_kernel) == ("vllm", "push", "layerwise_reload")
    text = [n for n, _ in trainer.model.named_parameters() if not weight_sync.is_vision(n)]
    assert pushed == [len(text), len(text)]  # every trained tensor, each step, the vision tower left out
    for r in res:
        m = r.metrics
        assert m["actor/train_tokens"] > 0 and m["actor/pg_loss"] != 0
        assert m["rollout/infra_error_rate"] == 0  # vLLM's prompt lengths passed the pad check every turn
        assert m["rollout/logprob_gap"] == m["rollout/logprob_gap"] and m["time/weight_sync_s"] > 0
        assert torch.isfinite(torch.tensor(m["actor/grad_norm"]))
    # the second step rolled out on the pushed weights: rollout and trainer logprobs still agree
    assert res[1].metrics["rollout/logprob_gap"] < 0.05, res[1].metrics["rollout/logprob_gap"]

    after = _hf_copy(trainer)
    vllm = eng.policy
    hf_ids, hf_lp = _greedy(after)
    v_ids, v_lp = _greedy(vllm)
    k = 4
    assert v_ids[:k] == hf_ids[:k], (v_ids, hf_ids)
    moved = _gap(hf_lp, base_lp, k) if hf_ids[:k] == base_ids[:k] else float("inf")
    assert moved > 0.05  # the updates changed the model (a large lr)
    assert _gap(v_lp, hf_lp, k) < 0.1 * moved, (v_lp[:k], hf_lp[:k], base_lp[:k])
    # the vision tower was not pushed, and the engine still sees images as the trainer does
    hv_ids, hv_lp = _greedy(after, image=True)
    vv_ids, vv_lp = _greedy(vllm, image=True)
    assert vv_ids[:k] == hv_ids[:k] and _gap(vv_lp, hv_lp, k) < 0.05, (vv_lp[:k], hv_lp[:k])

    rows = [json.loads(x) for x in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all("entropy" in r["alarms"] for r in rows), rows
    assert all(any(key.startswith("ema/") for key in r) for r in rows)
    assert (trainer.run_dir / "rollouts" / "step_000002.jsonl").is_file()
    asyncio.run(vllm.aclose())
