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
from sync_check import assert_update_reached_vllm, gap

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

ARGS = ["rl.datasets=[builtin:count]", "rl.rollout.backend=vllm", "rl.rollout.weight_sync=push", "agent.tools=[code]",
        "rl.train_batch_size=2", "rl.rollouts_per_prompt=8", "rl.ppo_mini_batch_size=1", "rl.rollout.max_steps=2",
        "rl.temperature=0.5",  # mostly well-formed answers from the warm start, the digit still random
        "agent.system_prompt=Count.", "agent.user_instruction=Answer.",  # prompts as short as the warm start's
        "rl.save_freq=100", "rl.learning_rate=3e-3", "launch.zero_stage=3",
        "policy.vllm.max_model_len=4096", "policy.vllm.enforce_eager=true", "policy.vllm.max_num_batched_tokens=4096",
        "model.dtype=float32", "agent.max_tokens_per_turn=48", "rl.report_to=[]",
        "rl.alarms.warmup_steps=0", "rl.alarms.min_entropy=1000"]  # an alarm that fires: it must reach metrics.jsonl


def warm_start(out: Path, steps: int = 120, seed: int = 0) -> Path:
    """The tiny model taught the answer format (``<think></think><answer>N</answer>``, N a
    random count) in a few seconds: a random model never answers, so every reward would be
    0, every advantage 0 and the loss 0. After this some answers are right and some wrong."""
    import random
    import shutil

    from deepeyes_cli.models.loading import load_model, load_processor, resolve_model_path
    from deepeyes_cli.testing.rl_task import answer_turn

    src = Path(resolve_model_path("builtin:tiny"))
    model, tok = load_model(str(src), dtype="float32", device="cpu"), load_processor(str(src)).tokenizer
    rng = random.Random(seed)
    torch.manual_seed(seed)
    head = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        rows = []
        for _ in range(8):  # some random context, then the assistant turn
            ctx = [rng.randrange(100, 500) for _ in range(rng.randrange(20, 80))]
            rows.append((ctx + head, tok("<think>" + answer_turn(str(rng.randint(1, 4)), thought="") + "<|im_end|>",
                                         add_special_tokens=False)["input_ids"]))
        n = max(len(a) + len(b) for a, b in rows)
        ids, att = torch.zeros(len(rows), n, dtype=torch.long), torch.zeros(len(rows), n, dtype=torch.long)
        labels = torch.full((len(rows), n), -100)
        for i, (a, b) in enumerate(rows):
            ids[i, :len(a) + len(b)] = torch.tensor(a + b)
            att[i, :len(a) + len(b)] = 1
            labels[i, len(a):len(a) + len(b)] = torch.tensor(b)
        model(input_ids=ids, attention_mask=att, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    shutil.copytree(src, out)  # tokenizer, processor and video processor configs (vLLM reads them all)
    model.save_pretrained(out)
    return out


def _infra_errors(run_dir: Path, step: int) -> list[Any]:
    rows = [json.loads(x) for x in (run_dir / "rollouts" / f"step_{step:06d}.jsonl").read_text().splitlines()]
    return [(t["end_reason"], t["metadata"].get("rl_error") or t["metadata"].get("error"), t["messages"][2:])
            for t in rows if "infra_error" in t["metadata"].get("rl_flags", [])]


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


def _hf_copy(trainer: Any) -> Any:
    """A plain transformers policy over the trainer's full (gathered) weights."""
    from deepeyes_cli.models.loading import load_model
    from deepeyes_cli.policy.hf import TransformersPolicy

    state = trainer.engine.full_state_dict()
    model = load_model(str(trainer.model_path), dtype="float32", device="cpu")
    missing, _ = model.load_state_dict(state, strict=False)  # (extra: rotary buffers the engine also lists)
    assert not missing
    model.eval()
    return TransformersPolicy(model, trainer.processor)


@pytest.mark.timeout(1500)
def test_zero3_steps_beside_vllm_with_in_process_push(vllm_ready: None, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.train.rl import weight_sync
    from deepeyes_cli.train.rl.loop import Trainer

    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    start = warm_start(tmp_path / "start")
    trainer = Trainer(load_recipe("tiny", [*ARGS, f"rl.init_from={start}"]).recipe, tmp_path / "run")
    assert trainer.engine.kind == "deepspeed"
    lm_head = trainer.model.lm_head.weight
    assert hasattr(lm_head, "ds_id") and lm_head.numel() == 0  # ZeRO-3 really partitioned it
    hf_before = _greedy(_hf_copy(trainer))
    v_before = _greedy(trainer.start_rollout_engine().policy)  # vLLM's output before the updates

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
    assert res[0].metrics["grpo/reward_std"] > 0 and res[0].metrics["actor/grad_norm"] > 0  # a real update
    for r in res:
        m = r.metrics
        assert m["actor/train_tokens"] > 0
        assert m["rollout/infra_error_rate"] == 0, _infra_errors(trainer.run_dir, r.step)  # pad check passed
        assert m["rollout/logprob_gap"] == m["rollout/logprob_gap"] and m["time/weight_sync_s"] > 0
        assert torch.isfinite(torch.tensor(m["actor/grad_norm"]))
    # the second step rolled out on the pushed weights: rollout and trainer logprobs still agree
    assert res[1].metrics["rollout/logprob_gap"] < 0.05, res[1].metrics["rollout/logprob_gap"]

    after = _hf_copy(trainer)
    vllm = eng.policy
    assert_update_reached_vllm(hf_before, v_before, _greedy(after), _greedy(vllm))
    k = 4
    # the vision tower was not pushed, and the engine still sees images as the trainer does
    hv_ids, hv_lp = _greedy(after, image=True)
    vv_ids, vv_lp = _greedy(vllm, image=True)
    assert vv_ids[:k] == hv_ids[:k] and gap(vv_lp, hv_lp, k) < 0.05, (vv_lp[:k], hv_lp[:k])

    rows = [json.loads(x) for x in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all("entropy" in r["alarms"] for r in rows), rows
    assert all(any(key.startswith("ema/") for key in r) for r in rows)
    assert (trainer.run_dir / "rollouts" / "step_000002.jsonl").is_file()
    asyncio.run(vllm.aclose())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(1500)
def test_deepeyes_rl_on_two_ranks_each_with_its_engine(vllm_ready: None, tmp_path: Path) -> None:
    """`deepeyes rl` through torchrun: 2 ranks of ZeRO-3 (gloo), a vLLM engine colocated in each
    (``external_launcher``), the push gathering each layer across both ranks."""
    import os
    import subprocess
    import sys

    start = warm_start(tmp_path / "start")
    run = tmp_path / "run"
    args = [a for a in ARGS if not a.startswith(("rl.train_batch_size", "rl.alarms.warmup"))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-m", "deepeyes_cli", "rl", "-r", "tiny", "--run-dir", str(run), *args,
                          f"rl.init_from={start}", "rl.train_batch_size=2", "launch.launcher=torchrun",
                          "launch.gpus_per_node=2", f"launch.master_port={_free_port()}",
                          "policy.vllm.cpu_kvcache_space_gib=1", "rl.alarms.warmup_steps=0"],
                         capture_output=True, text=True, env=env, timeout=1400)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "Traceback" not in out.stderr, out.stderr[-4000:]  # the engines shut down before the process groups
    assert out.stderr.count("Using external launcher") >= 2  # one engine in each rank's process
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    # a real update: a nonzero gradient. (Not pg_loss: on-policy its value is -sum(A_i len_i) / sum(len_i),
    # exactly 0 when a group's answers are all the same length, as the warm start's often are; once in 3 runs.)
    assert any(r["grpo/reward_std"] > 0 and r["actor/grad_norm"] > 0 for r in rows), rows
    assert all(r["actor/train_tokens"] > 0 for r in rows)
    assert all(r["rollout/infra_error_rate"] == 0 and r["time/weight_sync_s"] > 0 for r in rows), rows
    assert rows[1]["rollout/logprob_gap"] < 0.05  # both ranks' engines rolled out on the pushed weights
    assert all("entropy" in r["alarms"] for r in rows)
    for name in ("step_000002.jsonl", "step_000002.rank1.jsonl"):
        assert (run / "rollouts" / name).is_file()
    shards = {p.name for p in (run / "checkpoints" / "step-000002" / "engine" / "state").iterdir()}
    assert any("zero_pp_rank_1" in s for s in shards), shards  # ZeRO-3 partitioned over both ranks
