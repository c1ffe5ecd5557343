"""The transformers backend on the tiny model: M-RoPE positions for multi-image multi-turn
inputs, generated ids kept verbatim, stop strings, batching, determinism in the loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from PIL import Image

from deepeyes_cli.agent.config import AgentConfig
from deepeyes_cli.agent.loop import AgentRuntime, run_trajectories
from deepeyes_cli.agent.records import Task
from deepeyes_cli.agent.trajectory import Sample
from deepeyes_cli.models.loading import load_model, load_processor
from deepeyes_cli.policy.base import ChatMessage, Conversation, SamplingParams
from deepeyes_cli.policy.hf import TransformersPolicy, build_model_inputs
from deepeyes_cli.policy.tokens import encode_prompt
from deepeyes_cli.protocol.images import image_token_count, smart_resize


@pytest.fixture(scope="module")
def policy(tiny_model_dir: Path) -> TransformersPolicy:
    model = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    return TransformersPolicy(model, load_processor(str(tiny_model_dir), min_pixels=3136, max_pixels=200704),
                              max_batch_size=4, batch_wait_s=0.02)


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (280, 140), (1, 2, 3)), Image.new("RGB", (140, 280), (200, 2, 1)),
            Image.new("RGB", (300, 300), (5, 200, 9))]


def _multi_turn(generated: list[int]) -> Conversation:
    a, b, c = _images()
    return Conversation([ChatMessage("system", ["S"]), ChatMessage("user", [a, "\nWhat is it?"]),
                         ChatMessage("assistant", ["<code>…</code>"], token_ids=generated),
                         ChatMessage("user", ["Code execution result: …\n\nImages:\n", b, c])], "<think>")


def test_smart_resize_agrees_with_the_processor() -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as reference

    for h, w in [(480, 640), (32, 6400), (3000, 4000), (50, 50), (1080, 1920), (333, 777)]:
        for lo, hi in [(3136, 200704), (3136, 12845056)]:
            assert smart_resize(h, w, lo, hi) == reference(h, w, factor=28, min_pixels=lo, max_pixels=hi)
    h, w = smart_resize(480, 640, 3136, 200704)
    assert image_token_count(640, 480, 3136, 200704) == (h // 28) * (w // 28)


def test_multi_image_multi_turn_inputs_get_mrope_positions(policy: TransformersPolicy) -> None:
    model, proc = policy.model, policy.processor
    prompt = encode_prompt(_multi_turn([11, 12, 13]), proc.tokenizer, policy.ids)
    inputs = build_model_inputs(model, proc, [prompt], policy.ids.endoftext)
    with torch.inference_mode():
        first = model.generate(**inputs, max_new_tokens=1, do_sample=False, output_logits=True,
                               return_dict_in_generate=True).logits[0][0]
        pos, deltas = model.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                                 image_grid_thw=inputs["image_grid_thw"],
                                                 attention_mask=inputs["attention_mask"])
        assert int(deltas[0]) < 0  # three images: fewer positions than tokens
        model.model.rope_deltas = None
        plain = {k: v for k, v in inputs.items() if k != "mm_token_type_ids"}
        reference = model(**plain, position_ids=pos).logits[0, -1]
        model.model.rope_deltas = None
        one_d = model(**plain).logits[0, -1]  # what transformers silently does without them
    assert torch.allclose(first, reference, atol=1e-4)
    assert not torch.allclose(one_d, reference, atol=1e-2)


def test_generated_ids_are_kept_verbatim_in_the_next_prompt(policy: TransformersPolicy) -> None:
    tok = policy.tokenizer
    generated = tok("<code>\n```python\nx = 1\n```\n</code>\nq", add_special_tokens=False)["input_ids"]
    ids, _ = encode_prompt(_multi_turn(generated), tok, policy.ids)
    i = ids.index(generated[0])
    assert ids[i:i + len(generated)] == generated
    assert tok.decode(ids[i + len(generated):]).startswith("<|im_end|>\n<|im_start|>user\nCode execution result:")


def test_stop_strings_cut_text_not_ids(policy: TransformersPolicy) -> None:
    tok = policy.tokenizer
    ids = tok("a</code>\nbc", add_special_tokens=False)["input_ids"]
    out = policy._completion(list(ids), [0.0] * len(ids), 10, SamplingParams(stop=["</code>"]))
    assert (out.text, out.stop_reason, out.finish_reason, out.token_ids) == ("a</code>", "</code>", "stop", ids)
    eos = policy.ids.im_end
    out = policy._completion([*ids, eos, policy.ids.endoftext], [0.0] * (len(ids) + 2), 10, SamplingParams())
    assert out.text == "a</code>\nbc" and out.token_ids == [*ids, eos] and out.finish_reason == "stop"
    out = policy._completion(list(ids), [0.0] * len(ids), 10, SamplingParams(stop=["</tool_call>"]))
    assert out.finish_reason == "length"


def test_a_stop_string_inside_a_token_cuts_the_text_but_keeps_the_generated_ids(policy: TransformersPolicy) -> None:
    from deepeyes_cli.testing.stops import mid_token_stop

    conv = Conversation([ChatMessage("user", ["What is in the picture?"])])
    free = asyncio.run(policy.generate([conv], SamplingParams(max_tokens=40)))[0]
    found = mid_token_stop(policy.tokenizer, free.token_ids or [])
    assert found is not None, "the tiny model's greedy output has no token to end a stop string in"
    stop, kept = found
    out = asyncio.run(policy.generate([conv], SamplingParams(max_tokens=40, stop=["</code>", stop])))[0]
    assert (out.finish_reason, out.stop_reason) == ("stop", stop) and out.text.endswith(stop)
    assert out.token_ids == (free.token_ids or [])[:kept]  # as generated, up to the token holding the stop's end
    assert policy.tokenizer.decode(out.token_ids).startswith(out.text)
    assert len(policy.tokenizer.decode(out.token_ids)) > len(out.text)  # the ids run past the stop string


def test_an_abandoned_batch_stops_between_decoding_steps(policy: TransformersPolicy) -> None:
    conv = Conversation([ChatMessage("user", [_images()[0], "\nDescribe it."])])
    params = SamplingParams(max_tokens=24, stop=[])
    full = policy._generate_batch([conv], params)[0]
    assert len(full.token_ids or []) > 4, "pick a prompt the tiny model answers at length"
    steps = iter(range(10**6))
    cut = policy._generate_batch([conv], params, should_stop=lambda: next(steps) >= 3)[0]
    assert cut.token_ids == (full.token_ids or [])[:len(cut.token_ids or [])] and len(cut.token_ids or []) <= 4


def test_concurrent_calls_are_batched_and_match_single_generation(policy: TransformersPolicy) -> None:
    convs = [Conversation([ChatMessage("user", [img, f"\nQuestion {i}?" * (i + 1)])]) for i, img in enumerate(_images())]
    # and multi-image multi-turn prompts of other lengths: left padding under M-RoPE
    convs += [_multi_turn([11, 12, 13]), _multi_turn(list(range(20, 60)))]
    batcher = TransformersPolicy(policy.model, policy.processor, max_batch_size=len(convs), batch_wait_s=0.05)
    params = SamplingParams(max_tokens=12, stop=["</code>"])

    async def together() -> list:
        return [r[0] for r in await asyncio.gather(*(batcher.generate([c], params) for c in convs))]

    async def one_by_one() -> list:
        return [(await policy.generate([c], params))[0] for c in convs]

    batched, single = asyncio.run(together()), asyncio.run(one_by_one())
    assert [b.token_ids for b in batched] == [s.token_ids for s in single]
    assert [b.prompt_tokens for b in batched] == [s.prompt_tokens for s in single]
    assert all(b.logprobs is not None and len(b.logprobs) == len(b.token_ids or []) for b in batched)


def test_loop_on_the_tiny_model_is_deterministic(policy: TransformersPolicy) -> None:
    cfg = AgentConfig(max_tokens_per_turn=24, max_turns=2, on_no_action="remind")
    rt = AgentRuntime(policy, {}, cfg, "SYS", "INSTR", min_pixels=3136, max_pixels=200704)
    tasks = [Task(Sample(id=f"s{i}", question=f"q{i}?"), [_images()[i]]) for i in range(3)]
    a = asyncio.run(run_trajectories(tasks, rt))
    b = asyncio.run(run_trajectories(tasks, rt))
    assert [[t.completion_ids for t in x.turns] for x in a] == [[t.completion_ids for t in x.turns] for x in b]
    for traj in a:
        assert traj.end_reason in ("length", "max_turns", "empty", "answered", "no_action")
        first = traj.turns[0]
        assert first.prompt_tokens and first.completion_tokens == len(first.completion_ids or [])
        assert traj.backend == "transformers"


def test_trajectory_tokens_rebuild_every_turns_prompt(policy: TransformersPolicy, tmp_path: Path) -> None:
    from deepeyes_cli.agent.trajectory import append_jsonl, read_jsonl
    from deepeyes_cli.policy.tokens import trajectory_tokens

    # a stop string ends a turn without an action, the reminder starts the next: the first of the
    # images whose random greedy text hits a stop within 16 tokens gives a multi-turn trajectory
    cfg = AgentConfig(max_tokens_per_turn=16, max_turns=3, on_no_action="remind", stop=["e", "t"])
    rt = AgentRuntime(policy, {}, cfg, "SYS", "INSTR", min_pixels=3136, max_pixels=200704)
    tasks = [Task(Sample(id=f"s{i}", question="q?"), [image]) for i, image in enumerate(_images())]
    traj = next((t for t in asyncio.run(run_trajectories(tasks, rt)) if len(t.turns) >= 2), None)
    assert traj is not None, "no image gave a second turn"
    path = tmp_path / "t.jsonl"
    append_jsonl(path, [traj])
    back = next(read_jsonl(path))
    ids, mask, images = trajectory_tokens(back, policy.tokenizer, tmp_path)
    assert (ids, mask) == trajectory_tokens(traj, policy.tokenizer)[:2] and len(images) == 1
    grid = policy.processor.image_processor(images=images, return_tensors="pt")["image_grid_thw"][0].tolist()
    extra_pads = grid[0] * grid[1] * grid[2] // 4 - 1  # one collapsed pad stands for the whole grid
    starts = [i for i in range(len(mask)) if mask[i] == 1 and (i == 0 or mask[i - 1] == 0)]
    assert len(starts) == len(traj.turns) >= 2
    for start, turn in zip(starts, traj.turns, strict=True):
        assert ids[start:start + len(turn.completion_ids or [])] == turn.completion_ids
        assert start + extra_pads == turn.prompt_tokens  # exactly the prompt that turn was generated from
    assert sum(mask) == sum(len(t.completion_ids or []) for t in traj.turns)
