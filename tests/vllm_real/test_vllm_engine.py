"""The vllm backend (policy/vllm_engine.py) on a real engine: vLLM's CPU build and the tiny
model, one engine for the whole module.

What differs on a CPU, and is asserted or measured here rather than assumed:
- vLLM's ``AsyncLLM`` always runs its EngineCore in a separate process (there is no in-process
  mode for it; VLLM_ENABLE_V1_MULTIPROCESSING=0 only affects the synchronous ``LLM``), so the
  engine takes ~40-90 s to load here against seconds on a GPU box with warm caches.
- vLLM's image processor is transformers' torchvision-backed one, ours the PIL one. The images
  below are multiples of 28 px inside the pixel budget, so neither resizes and the pixels agree;
  a resized image may differ by a pixel value, which can move a random model's near-tie tokens.
- Greedy tokens agree with transformers' to a point: fp32 matmuls here go through oneDNN in
  vLLM and plain torch in transformers, so a random model's near-ties can flip later tokens.
  The test reports where the first difference is (GPU: bf16/fp16 kernels differ the same way).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

# an engine start takes a minute or more on a loaded 2-core machine: beyond the suite's 300 s default
pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1200)]
PARITY_TOKENS = 32


@pytest.fixture(scope="module")
def engine(vllm_ready: None, tiny_model_dir: Path) -> Any:
    from deepeyes_cli.policy.vllm_engine import VLLMPolicy
    from deepeyes_cli.recipe.loader import load_recipe

    recipe = load_recipe("tiny", ["policy.backend=vllm", "policy.vllm.max_model_len=4096",
                                  "policy.vllm.enforce_eager=true", "policy.vllm.max_num_batched_tokens=4096",
                                  "model.dtype=float32"]).recipe
    policy = VLLMPolicy.from_recipe(recipe)
    yield policy
    asyncio.run(policy.aclose())


@pytest.fixture(scope="module")
def hf(tiny_model_dir: Path) -> Any:
    from deepeyes_cli.models.loading import load_model, load_processor
    from deepeyes_cli.policy.hf import TransformersPolicy
    from deepeyes_cli.recipe.loader import load_recipe

    model = load_recipe("tiny", []).recipe.model
    return TransformersPolicy(load_model(str(tiny_model_dir), dtype="float32", device="cpu"),
                              load_processor(str(tiny_model_dir), min_pixels=model.min_pixels,
                                             max_pixels=model.max_pixels))


def _conversation(generated: list[int] | None = None, shade: int = 3) -> Any:
    """A system prompt, a user turn with one image; with ``generated``, an assistant turn (its
    ids as generated) and a tool result carrying a second image."""
    from deepeyes_cli.policy.base import ChatMessage, Conversation

    a, b = Image.new("RGB", (280, 140), (1, 2, shade)), Image.new("RGB", (140, 280), (200, 2, 1))
    for img in (a, b):  # some texture, so the vision tower's output is not uniform
        for x in range(0, img.width, 14):
            img.putpixel((x, x % img.height), (255, 255, 255))
    msgs = [ChatMessage("system", ["S"]), ChatMessage("user", [a, "\nWhat is it?"])]
    if generated is not None:
        msgs += [ChatMessage("assistant", ["<code>…</code>"], token_ids=generated),
                 ChatMessage("user", ["Code execution result: …\n\nImages:\n", b])]
    return Conversation(msgs, "<think>" if generated is not None else "")


def _greedy(n: int, stop: tuple[str, ...] = ()) -> Any:
    from deepeyes_cli.policy.base import SamplingParams

    return SamplingParams(max_tokens=n, temperature=0.0, stop=list(stop))


def test_collapsed_image_pads_are_expanded_once_by_vllm(engine: Any, hf: Any) -> None:
    from deepeyes_cli.policy.tokens import encode_prompt

    said = engine.tokenizer("<code>x</code>", add_special_tokens=False)["input_ids"]
    conv = _conversation(said)  # two images, two turns
    ids, images = encode_prompt(conv, engine.tokenizer, engine.ids)
    assert ids.count(engine.ids.image_pad) == len(images) == 2  # one pad per image goes in
    out = asyncio.run(engine.generate([conv], _greedy(1)))[0]
    assert out.finish_reason == "length", out.error
    grids = hf.processor.image_processor(images=images, return_tensors="pt")["image_grid_thw"].tolist()
    merge = hf.processor.image_processor.merge_size
    expansion = sum(t * h * w // merge**2 - 1 for t, h, w in grids)
    # prompt_tokens is len(RequestOutput.prompt_token_ids): what vLLM expanded the pads to
    assert out.prompt_tokens == len(ids) + expansion
    assert out.prompt_tokens == asyncio.run(hf.generate([conv], _greedy(1)))[0].prompt_tokens


def test_greedy_tokens_match_the_transformers_backend(engine: Any, hf: Any, record_property: Any,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    first = asyncio.run(engine.generate([_conversation()], _greedy(8)))[0]
    conv = _conversation(list(first.token_ids or []))
    v = asyncio.run(engine.generate([conv], _greedy(PARITY_TOKENS)))[0]
    h = asyncio.run(hf.generate([conv], _greedy(PARITY_TOKENS)))[0]
    assert v.prompt_tokens == h.prompt_tokens
    vt, ht = list(v.token_ids or []), list(h.token_ids or [])
    assert len(vt) == len(ht) == PARITY_TOKENS
    diff = next((i for i, (a, b) in enumerate(zip(vt, ht, strict=True)) if a != b), None)
    same = PARITY_TOKENS if diff is None else diff
    record_property("greedy_tokens_identical", same)
    with capsys.disabled():
        print(f"\n[vllm parity] {same}/{PARITY_TOKENS} greedy tokens identical to transformers "
              f"(prompt {v.prompt_tokens} tokens, 2 images, fp32, CPU)"
              + ("" if diff is None else f"; first difference at token {diff}: vllm {vt[diff]} vs hf {ht[diff]}"))
    assert same >= 1, f"the first greedy token differs: vllm {vt[:4]} vs transformers {ht[:4]}"


def test_two_concurrent_trajectories_on_one_engine(engine: Any) -> None:
    from deepeyes_cli.agent.config import AgentConfig
    from deepeyes_cli.agent.loop import AgentRuntime, run_trajectories
    from deepeyes_cli.agent.records import Task
    from deepeyes_cli.agent.trajectory import Sample
    from deepeyes_cli.policy.tokens import trajectory_tokens

    cfg = AgentConfig(max_tokens_per_turn=12, max_turns=2, on_no_action="remind")
    rt = AgentRuntime(engine, {}, cfg, "SYS", "INSTR", min_pixels=3136, max_pixels=200704)
    tasks = [Task(Sample(id=f"s{i}", question=f"q{i}?"), [Image.new("RGB", (140 + 28 * i, 140), (i, 9, 9))])
             for i in range(2)]
    in_flight: list[int] = []
    generate = engine.engine.generate  # vLLM's own method: count requests it holds at once

    active = 0

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal active
        active += 1
        in_flight.append(active)
        try:
            async for out in generate(*args, **kwargs):
                yield out
        finally:
            active -= 1

    engine.engine.generate = counting
    try:
        trajs = asyncio.run(run_trajectories(tasks, rt))
    finally:
        engine.engine.generate = generate
    assert max(in_flight) == 2  # both trajectories' requests were on the engine together
    for traj in trajs:
        assert traj.end_reason != "error", traj.metadata.get("error")
        assert traj.turns
        ids, mask, _ = trajectory_tokens(traj, engine.tokenizer)
        starts = [i for i in range(len(mask)) if mask[i] == 1 and (i == 0 or mask[i - 1] == 0)]
        for start, turn in zip(starts, traj.turns, strict=True):
            assert ids[start:start + len(turn.completion_ids or [])] == turn.completion_ids
    assert trajs[0].sample.id != trajs[1].sample.id and trajs[0].turns[0].prompt_tokens != trajs[1].turns[0].prompt_tokens


def test_the_engine_serves_across_event_loops(engine: Any) -> None:
    conv = _conversation()
    one = asyncio.run(engine.generate([conv], _greedy(6)))[0]
    two = asyncio.run(engine.generate([conv, conv], _greedy(6)))  # a second asyncio.run, two requests
    assert one.token_ids and all(c.token_ids == one.token_ids for c in two)
    # and from a loop in another thread, while the engine's own loop keeps running in its thread
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(asyncio.run(engine.generate([conv], _greedy(6)))[0]))
    worker.start()
    worker.join(timeout=300)
    assert result and result[0].token_ids == one.token_ids
    assert engine._engine_loop.loop.is_running()


def test_stop_strings_end_the_turn_with_ids_as_generated(engine: Any) -> None:
    from deepeyes_cli.testing.stops import mid_token_stop

    free = asyncio.run(engine.generate([_conversation()], _greedy(48)))[0]
    found = mid_token_stop(engine.tokenizer, free.token_ids or [])
    if found is None:
        pytest.skip("the tiny model's greedy output has no token to end a stop string in")
    stop, kept = found
    out = asyncio.run(engine.generate([_conversation()], _greedy(48, (stop,))))[0]
    assert (out.finish_reason, out.stop_reason) == ("stop", stop) and out.text.endswith(stop)
    assert out.token_ids == (free.token_ids or [])[:kept]
