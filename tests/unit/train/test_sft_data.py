"""The SFT data path: the one loss_mask against the loop's own token layout, the
formats that feed it, image token accounting, M-RoPE positions, batching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepeyes_cli.agent.trajectory import read_jsonl
from deepeyes_cli.policy.tokens import TokenIds, trajectory_tokens
from deepeyes_cli.protocol import tags
from deepeyes_cli.train.data import DataError, ImageBudget, encode, plan_batches
from deepeyes_cli.train.data.sources import from_record, read_conversations


def _with_generated_ids(traj, tokenizer):
    """The record as a token-level backend writes it: each turn's generated ids kept."""
    ids = TokenIds(tokenizer)
    for turn in traj.turns:
        text = traj.messages[turn.message_index].text[len(turn.prefill):]
        gen = tokenizer(text, add_special_tokens=False)["input_ids"]
        turn.completion_ids = gen if turn.stop_reason else [*gen, ids.im_end]
    return traj


def test_loss_mask_token_by_token_matches_trajectory_tokens(traj_file: Path, processor) -> None:
    tok = processor.tokenizer
    for traj in read_jsonl(traj_file):
        traj = _with_generated_ids(traj, tok)
        want_ids, want_mask, want_images = trajectory_tokens(traj, tok, traj_file.parent)
        conv = from_record(json.loads(traj.model_dump_json()), traj_file, 1)
        got = encode(conv, tok)
        assert got.input_ids == want_ids
        assert got.loss_mask == want_mask
        assert len(got.images) == len(want_images) == want_ids.count(tok.convert_tokens_to_ids(tags.IMAGE_PAD))


def test_loss_mask_covers_exactly_the_generated_text(traj_file: Path, processor) -> None:
    """Text-only records (no ids): mask-1 tokens are each turn's generated text (not the
    <think> prefill), plus <|im_end|> only where the turn ended at EOS."""
    tok = processor.tokenizer
    convs = read_conversations([str(traj_file)])
    searched = 0
    for conv, traj in zip(convs, read_jsonl(traj_file), strict=True):
        enc = encode(conv, tok)
        spans, cur = [], []
        for t, m in zip(enc.input_ids, enc.loss_mask, strict=True):
            if m:
                cur.append(t)
            elif cur:
                spans.append(cur)
                cur = []
        if cur:
            spans.append(cur)
        expected = []
        for turn in traj.turns:
            text = traj.messages[turn.message_index].text
            gen = text[len(turn.prefill):]
            expected.append(gen + ("" if turn.stop_reason else tags.IM_END))
        assert [tok.decode(s) for s in spans] == expected
        if len(traj.turns) > 1:
            searched += 1
            assert traj.turns[1].prefill == tags.PREFILL_AFTER_TOOL
        # nothing of the system prompt, the question or the tool result is trained on
        masked_text = tok.decode([t for t, m in zip(enc.input_ids, enc.loss_mask, strict=True) if m])
        assert "tool_response" not in masked_text and "<|im_start|>" not in masked_text
    assert searched > 0  # the fixture holds multi-turn samples with an observation


def test_sharegpt_sample_encodes_like_the_trajectory(traj_file: Path, processor, tmp_path: Path) -> None:
    """A LLaMA-Factory sharegpt export of a record trains on the same ids and mask."""
    tok = processor.tokenizer
    traj = next(t for t in read_jsonl(traj_file) if len(t.turns) > 1)
    images, messages = [], []
    for m in traj.messages:
        text = ""
        for p in m.content:
            if p.type == "image":
                images.append(str(traj_file.parent / p.image.path))
                text += tags.IMAGE_PLACEHOLDER
            else:
                text += p.text
        messages.append({"role": m.role, "content": text})
    f = tmp_path / "sharegpt.json"
    f.write_text(json.dumps([{"messages": messages, "images": images}]))
    conv = read_conversations([str(f)])[0]
    want = encode(from_record(json.loads(traj.model_dump_json()), traj_file, 1), tok)
    got = encode(conv, tok)
    assert got.input_ids == want.input_ids
    assert got.loss_mask == want.loss_mask


def test_image_placeholders_that_do_not_match_images_are_rejected(tmp_path: Path, processor) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"messages": [{"role": "user", "content": "<image><image>What is it?"},
                                          {"role": "assistant", "content": "<answer>x</answer>"}],
                             "images": ["a.png"]}) + "\n")
    conv = read_conversations([str(f)])[0]
    with pytest.raises(DataError, match="2 <image> placeholders for 1 images"):
        encode(conv, processor.tokenizer)


@pytest.mark.parametrize("size", [(224, 224), (300, 200), (1000, 90), (56, 60), (2000, 1500)])
def test_image_budget_matches_the_processor(processor, size: tuple[int, int]) -> None:
    from PIL import Image

    grid = processor.image_processor(images=[Image.new("RGB", size)], return_tensors="pt")["image_grid_thw"]
    assert ImageBudget.of(processor).grid(*size) == tuple(grid[0].tolist())


def test_plan_batches_is_deterministic_and_shares_evenly() -> None:
    lengths = [10 + (i * 37) % 200 for i in range(103)]
    a = [plan_batches(lengths, 2, seed=1, epoch=0, world_size=3, rank=r) for r in range(3)]
    b = [plan_batches(lengths, 2, seed=1, epoch=0, world_size=3, rank=r) for r in range(3)]
    assert a == b
    assert len({len(p) for p in a}) == 1  # every rank runs the same number of micro-batches
    seen = [i for p in a for batch in p for i in batch]
    assert len(seen) == len(set(seen))
    assert plan_batches(lengths, 2, seed=1, epoch=1, world_size=3) != a[0]
    # length grouping: rows of a micro-batch have similar lengths
    grouped = plan_batches(lengths, 4, seed=0, epoch=0)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in grouped)
    plain = plan_batches(lengths, 4, seed=0, epoch=0, group_by_length=False)
    assert spread < sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in plain)
    packed = plan_batches(lengths, 1, seed=0, epoch=0, pack_tokens=512)
    assert all(sum(lengths[i] for i in b) <= 512 for b in packed if len(b) > 1)
    assert sorted(i for b in packed for i in b) == list(range(len(lengths)))


def test_bad_samples_fail_or_drop_by_recipe(tmp_path: Path, processor, tiny_recipe) -> None:
    from deepeyes_cli.train.data import build_index
    from deepeyes_cli.train.sft import check_index

    rows = [{"messages": [{"role": "user", "content": "<image>Hi"}, {"role": "assistant", "content": "<answer>a</answer>"}],
             "images": ["missing.png"]},  # unreadable image
            {"messages": [{"role": "user", "content": "Hi " * 50}, {"role": "assistant", "content": "ok"}]},  # long
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<answer>b</answer>"}]}]
    f = tmp_path / "mixed.json"
    f.write_text(json.dumps(rows))
    index = build_index(read_conversations([str(f)]), processor.tokenizer, ImageBudget.of(processor), cutoff_len=60)
    assert [p.kind for p in index.problems] == ["image_unreadable", "too_long"] and len(index.samples) == 1
    with pytest.raises(DataError, match="missing.png"):
        check_index(index, tiny_recipe)  # bad_samples: fail (default)
    lenient = tiny_recipe.model_copy(deep=True)
    lenient.sft.bad_samples = "drop"
    check_index(index, lenient)  # overlong: drop (default), bad: drop
    lenient.sft.overlong = "fail"
    with pytest.raises(DataError, match="cutoff_len 60"):
        check_index(index, lenient)
