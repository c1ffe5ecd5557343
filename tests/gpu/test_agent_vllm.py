"""The vllm backend on a GPU: collapsed image pads (vLLM expands them itself, so image
tokens are never doubled), generated ids kept as generated, and the same greedy tokens as
the transformers backend on the tiny model. Skipped without CUDA and vLLM."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest
from PIL import Image


def _why_not() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "needs vLLM (the gpu extra)"
    import torch

    if not torch.cuda.is_available():
        return "needs a CUDA GPU"
    return None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")]


@pytest.fixture(scope="module")
def backends(tiny_model_dir: Path):
    from deepeyes_cli.models.loading import load_model, load_processor
    from deepeyes_cli.policy.hf import TransformersPolicy
    from deepeyes_cli.policy.vllm_engine import VLLMPolicy
    from deepeyes_cli.recipe.loader import load_recipe

    recipe = load_recipe("tiny", ["model.device=cuda", "policy.backend=vllm", "policy.vllm.max_model_len=4096",
                                  "policy.vllm.gpu_memory_utilization=0.3", "policy.vllm.enforce_eager=true",
                                  "model.dtype=float32"]).recipe
    vllm_policy = VLLMPolicy.from_recipe(recipe)
    hf = TransformersPolicy(load_model(str(tiny_model_dir), dtype="float32", device="cuda"),
                            load_processor(str(tiny_model_dir), min_pixels=recipe.model.min_pixels,
                                           max_pixels=recipe.model.max_pixels))
    yield vllm_policy, hf
    asyncio.run(vllm_policy.aclose())


def _conversation(generated: list[int] | None):
    from deepeyes_cli.policy.base import ChatMessage, Conversation

    a, b = Image.new("RGB", (280, 140), (1, 2, 3)), Image.new("RGB", (140, 280), (200, 2, 1))
    msgs = [ChatMessage("system", ["S"]), ChatMessage("user", [a, "\nWhat is it?"])]
    if generated is not None:
        msgs += [ChatMessage("assistant", ["<code>…</code>"], token_ids=generated),
                 ChatMessage("user", ["Code execution result: …\n\nImages:\n", b])]
    return Conversation(msgs, "<think>" if generated is not None else "")


def test_vllm_matches_transformers_on_multi_image_multi_turn(backends) -> None:
    from deepeyes_cli.policy.base import SamplingParams

    vllm_policy, hf = backends
    params = SamplingParams(max_tokens=16, temperature=0.0, stop=["</code>", "</tool_call>"])
    first = asyncio.run(vllm_policy.generate([_conversation(None)], params))[0]  # one event loop …
    assert first.finish_reason in ("stop", "length") and first.token_ids
    conv = _conversation(list(first.token_ids))
    v = asyncio.run(vllm_policy.generate([conv], params))[0]  # … and another: the engine keeps serving
    h = asyncio.run(hf.generate([conv], params))[0]
    assert v.prompt_tokens == h.prompt_tokens  # pads expanded once, by vLLM: no doubled image tokens
    # the same context gives the same first token (later ones may drift on a random model's near-ties)
    assert v.token_ids and h.token_ids and v.token_ids[0] == h.token_ids[0]


def test_a_stop_string_inside_a_token_keeps_the_ids_as_generated(backends) -> None:
    from deepeyes_cli.policy.base import SamplingParams
    from deepeyes_cli.testing.stops import mid_token_stop

    vllm_policy, _ = backends
    free = asyncio.run(vllm_policy.generate([_conversation(None)], SamplingParams(max_tokens=48)))[0]
    found = mid_token_stop(vllm_policy.tokenizer, free.token_ids or [])
    assert found is not None, "the tiny model's greedy output has no token to end a stop string in"
    stop, kept = found
    out = asyncio.run(vllm_policy.generate([_conversation(None)], SamplingParams(max_tokens=48, stop=[stop])))[0]
    assert (out.finish_reason, out.stop_reason) == ("stop", stop) and out.text.endswith(stop)
    assert out.token_ids == (free.token_ids or [])[:kept]
    assert len(vllm_policy.tokenizer.decode(out.token_ids)) > len(out.text)


def test_concurrent_trajectories_rebuild_to_the_prompts_vllm_saw(backends) -> None:
    from deepeyes_cli.agent.config import AgentConfig
    from deepeyes_cli.agent.loop import AgentRuntime, run_trajectories
    from deepeyes_cli.agent.records import Task
    from deepeyes_cli.agent.trajectory import Sample
    from deepeyes_cli.policy.tokens import trajectory_tokens

    vllm_policy, hf = backends
    cfg = AgentConfig(max_tokens_per_turn=16, max_turns=3, on_no_action="remind", stop=["e"])
    rt = AgentRuntime(vllm_policy, {}, cfg, "SYS", "INSTR", min_pixels=3136, max_pixels=200704)
    tasks = [Task(Sample(id=f"s{i}", question=f"q{i}?"), [Image.new("RGB", (140 + 28 * i, 140), (i, 9, 9))])
             for i in range(3)]
    for traj in asyncio.run(run_trajectories(tasks, rt)):
        assert traj.end_reason != "error", traj.metadata.get("error")
        ids, mask, images = trajectory_tokens(traj, vllm_policy.tokenizer)
        grid = hf.processor.image_processor(images=images, return_tensors="pt")["image_grid_thw"][0].tolist()
        extra_pads = grid[0] * grid[1] * grid[2] // 4 - 1
        starts = [i for i in range(len(mask)) if mask[i] == 1 and (i == 0 or mask[i - 1] == 0)]
        for start, turn in zip(starts, traj.turns, strict=True):
            assert ids[start:start + len(turn.completion_ids or [])] == turn.completion_ids
            assert start + extra_pads == turn.prompt_tokens  # vLLM saw exactly the collapsed prompt, expanded once
