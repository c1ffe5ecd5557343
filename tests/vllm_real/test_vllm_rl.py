"""RL with the vLLM backend for real (vLLM's CPU build, the tiny model, the engine colocated
in this process): rollouts through vLLM, and the weight sync after an update: vLLM's greedy
output changes and then matches the trainer's updated weights.

This one syncs through ``rl.rollout.weight_sync=reload`` (safetensors + ``reload_weights``),
the plain torch engine training; test_vllm_rl_zero3.py pushes in-process under ZeRO-3. On the
CPU build sleep mode is refused (``rl.rollout.sleep_level`` is ignored) and vLLM's
``load_weights`` fails on its repacked Linears: the GPU's push kernel is tested in tests/gpu.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from sync_check import assert_update_reached_vllm

pytestmark = pytest.mark.vllm

ARGS = ["rl.datasets=[builtin:count]", "rl.rollout.backend=vllm", "rl.rollout.weight_sync=reload", "agent.tools=[code]", "rl.train_batch_size=1",
        "rl.rollouts_per_prompt=4", "rl.ppo_mini_batch_size=1", "rl.rollout.max_steps=1", "rl.save_freq=100",
        "rl.learning_rate=0.5", "policy.vllm.max_model_len=4096", "policy.vllm.enforce_eager=true",
        "policy.vllm.max_num_batched_tokens=4096", "model.dtype=float32", "agent.max_tokens_per_turn=48", "rl.report_to=[]"]


def _greedy(policy, n: int = 12) -> tuple[list[int], list[float]]:
    from deepeyes_cli.policy.base import ChatMessage, Conversation, SamplingParams

    conv = Conversation([ChatMessage("user", ["How many red squares are in the image?"])])
    out = asyncio.run(policy.generate([conv], SamplingParams(max_tokens=n, temperature=0.0)))[0]
    return list(out.token_ids or []), list(out.logprobs or [])


@pytest.mark.timeout(1500)  # vLLM's EngineCore takes minutes to start on a loaded CPU
def test_rollouts_through_vllm_and_weight_sync(vllm_ready: None, tmp_path: Path) -> None:
    from deepeyes_cli.policy.hf import TransformersPolicy
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.train.rl.loop import Trainer

    trainer = Trainer(load_recipe("tiny", ARGS).recipe, tmp_path / "run")
    hf = TransformersPolicy(trainer.model, trainer.processor)
    trainer.model.eval()
    hf_before = _greedy(hf)
    v_before = _greedy(trainer.start_rollout_engine().policy)  # vLLM's output before the update
    weight = trainer.model.lm_head.weight.detach().clone()
    trainer.model.train()
    res = trainer.train_step()  # rollouts through vLLM, one update (a large lr), then the sync
    m = res.metrics
    assert (trainer.rollout_engine.kind, trainer.rollout_engine.weight_sync) == ("vllm", "reload")
    assert m["actor/train_tokens"] > 0 and m["rollout/infra_error_rate"] == 0  # the pad check passed every turn
    assert m["rollout/logprob_gap"] == m["rollout/logprob_gap"]  # vLLM gave logprobs; the gap is measured
    assert m["time/weight_sync_s"] > 0
    vllm = trainer.rollout_engine.policy
    trainer.model.eval()
    assert not torch.equal(weight, trainer.model.lm_head.weight)  # the update changed the model
    # vLLM's output changed with the update as the trainer's did (the update here is weight decay
    # alone: the random model never answers, so every advantage is 0)
    assert_update_reached_vllm(hf_before, v_before, _greedy(hf), _greedy(vllm))
    dump = trainer.run_dir / "rollouts" / "step_000001.jsonl"
    assert dump.is_file()
    asyncio.run(vllm.aclose())
    assert torch.isfinite(torch.tensor(m["actor/grad_norm"]))
