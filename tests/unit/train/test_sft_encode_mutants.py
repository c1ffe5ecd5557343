"""``train/data/encode.py`` without the tiny model: the one loss mask, built with the tiny
model's real Qwen2 tokenizer (built in a second, no weights), and the image-token budget
checked against transformers' own ``smart_resize``. Written for `make mutation`, whose every
mutant reruns these (the model-backed tests in test_sft_data.py take ~20 s a run)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest

from deepeyes_cli.policy.tokens import TokenIds
from deepeyes_cli.protocol import tags
from deepeyes_cli.protocol.messages import ChatMessage
from deepeyes_cli.train.data.encode import DataError, Encoded, ImageBudget, encode, expanded_length
from deepeyes_cli.train.data.sources import ImageSource, SFTConversation


@pytest.fixture(scope="module")
def tok() -> Any:
    from deepeyes_cli.testing.tiny import _tokenizer

    return _tokenizer()


def _ids(tok: Any, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _conv(*messages: ChatMessage, eos: dict[int, bool] | None = None, problem: str | None = None) -> SFTConversation:
    return SFTConversation("s1", "data.jsonl:3", list(messages), eos or {}, problem)


def _trained(enc: Encoded) -> list[list[int]]:
    """The runs of mask-1 ids, in order."""
    runs: list[list[int]] = []
    for key, group in itertools.groupby(zip(enc.input_ids, enc.loss_mask, strict=True), key=lambda x: x[1]):
        if key == 1:
            runs.append([i for i, _ in group])
    return runs


def test_only_the_generated_text_and_its_end_token_are_trained(tok: Any) -> None:
    ids = TokenIds(tok)
    enc = encode(_conv(ChatMessage("user", ["What is 3?"]), ChatMessage("assistant", ["It is three."])), tok, ids)
    assert len(enc.input_ids) == len(enc.loss_mask)
    assert _trained(enc) == [[*_ids(tok, "It is three."), ids.im_end]]  # ended at EOS (the default)
    assert enc.loss_mask[-1] == 1 and enc.trained_tokens == len(_ids(tok, "It is three.")) + 1
    prompt = tok.decode(enc.input_ids[:enc.loss_mask.index(1)])
    assert prompt.endswith(f"{tags.IM_START}user\nWhat is 3?{tags.IM_END}\n{tags.IM_START}assistant\n")
    assert enc.images == []


def test_a_turn_cut_before_eos_trains_no_end_token(tok: Any) -> None:
    ids = TokenIds(tok)
    conv = _conv(ChatMessage("user", ["q"]), ChatMessage("assistant", ["<code>print(1)</code>"]),
                 ChatMessage("user", ["obs"]), ChatMessage("assistant", ["done"]), eos={1: False})
    enc = encode(conv, tok)
    assert _trained(enc) == [_ids(tok, "<code>print(1)</code>"), [*_ids(tok, "done"), ids.im_end]]
    # the cut turn's <|im_end|> comes from the framing, untrained, before the observation
    between = tok.decode(enc.input_ids[:len(enc.input_ids) - len(_ids(tok, "done")) - 1])
    assert f"</code>{tags.IM_END}\n{tags.IM_START}user\nobs{tags.IM_END}\n" in between


def test_the_prefill_is_framing_and_never_trained(tok: Any) -> None:
    ids = TokenIds(tok)
    turn = ChatMessage("assistant", ["<think>look</think><answer>3</answer>"], prefill="<think>")
    enc = encode(_conv(ChatMessage("user", ["q"]), turn), tok, ids)
    assert _trained(enc) == [[*_ids(tok, "look</think><answer>3</answer>"), ids.im_end]]
    assert tok.decode(enc.input_ids[:enc.loss_mask.index(1)]).endswith(f"{tags.IM_START}assistant\n<think>")


def test_a_prefill_the_text_does_not_start_with_is_ignored(tok: Any) -> None:
    ids = TokenIds(tok)
    turn = ChatMessage("assistant", ["<answer>3</answer>"], prefill="<think>")
    enc = encode(_conv(ChatMessage("user", ["q"]), turn), tok, ids)
    assert _trained(enc) == [[*_ids(tok, "<answer>3</answer>"), ids.im_end]]
    assert not tok.decode(enc.input_ids[:enc.loss_mask.index(1)]).endswith("<think>")


def test_generated_ids_a_record_kept_are_trained_verbatim(tok: Any) -> None:
    ids = TokenIds(tok)
    kept = [*_ids(tok, "It is"), *_ids(tok, " three."), ids.im_end]  # as generated, not re-tokenized
    enc = encode(_conv(ChatMessage("user", ["q"]), ChatMessage("assistant", ["ignored text"], token_ids=kept)), tok)
    assert _trained(enc) == [kept]


def test_images_come_in_pad_order_with_one_pad_each(tok: Any) -> None:
    a, b = ImageSource(path="a.png"), ImageSource(path="b.png")
    conv = _conv(ChatMessage("user", [a, "first", b]), ChatMessage("assistant", ["ok"]))
    enc = encode(conv, tok)
    assert enc.images == [a, b]
    assert enc.input_ids.count(TokenIds(tok).image_pad) == 2
    assert expanded_length(enc, [4, 6]) == len(enc.input_ids) - 2 + 10


def test_a_sample_with_a_problem_or_nothing_to_train_is_refused(tok: Any) -> None:
    with pytest.raises(DataError) as err:
        encode(_conv(ChatMessage("user", ["q"]), ChatMessage("assistant", ["a"]), problem="2 <image> for 1 image"), tok)
    assert str(err.value) == "data.jsonl:3: 2 <image> for 1 image"
    with pytest.raises(DataError) as err:
        encode(_conv(ChatMessage("user", ["q"])), tok)
    assert str(err.value) == "data.jsonl:3: no assistant turn to train on"


def test_image_tokens_in_a_generated_turn_are_refused(tok: Any) -> None:
    ids = TokenIds(tok)
    turn = ChatMessage("assistant", ["x"], token_ids=[ids.image_pad, ids.im_end])
    with pytest.raises(DataError) as err:
        encode(_conv(ChatMessage("user", ["q"]), turn), tok, ids)
    assert str(err.value) == "data.jsonl:3: 1 image tokens for 0 images"
    assert err.value.hint == "an assistant turn holds <|image_pad|> ids; fix or drop the sample"


# (width, height) -> (grid h, grid w) as transformers' own ``smart_resize`` (Qwen2-VL, factor 28)
# gives them, computed with transformers 5 for these three budgets; test_sft_data.py checks
# ImageBudget against the tiny model's real processor too.
GRIDS = {
    (3136, 262144): {"1x1": (4, 4), "10x10": (4, 4), "27x29": (6, 4), "28x28": (4, 4), "56x56": (4, 4),
                     "100x30": (2, 8), "300x200": (14, 22), "512x512": (36, 36), "640x480": (30, 42),
                     "1000x20": (2, 72), "1920x1080": (26, 48), "4000x3000": (30, 42), "14x2000": (48, 2),
                     "2000x10": (2, 58)},
    (6272, 100000): {"1x1": (6, 6), "10x10": (6, 6), "27x29": (6, 6), "28x28": (6, 6), "56x56": (6, 6),
                     "100x30": (4, 12), "300x200": (14, 22), "512x512": (22, 22), "640x480": (18, 26),
                     "1000x20": (2, 72), "1920x1080": (16, 30), "4000x3000": (18, 26), "14x2000": (68, 2),
                     "2000x10": (2, 80)},
    (3136, 1003520): {"1x1": (4, 4), "10x10": (4, 4), "27x29": (6, 4), "28x28": (4, 4), "56x56": (4, 4),
                      "100x30": (2, 8), "300x200": (14, 22), "512x512": (36, 36), "640x480": (34, 46),
                      "1000x20": (2, 72), "1920x1080": (52, 94), "4000x3000": (60, 82), "14x2000": (48, 2),
                      "2000x10": (2, 58)},
}


@pytest.mark.parametrize("budget", list(GRIDS), ids=["default", "small", "qwen"])
def test_the_image_grid_is_the_processors_own_arithmetic(budget: tuple[int, int]) -> None:
    image_budget = ImageBudget(min_pixels=budget[0], max_pixels=budget[1])
    for size, (gh, gw) in GRIDS[budget].items():
        w, h = map(int, size.split("x"))
        assert image_budget.grid(w, h) == (1, gh, gw), size
        assert image_budget.tokens(w, h) == gh * gw // 4, size


def test_an_extreme_aspect_ratio_is_refused() -> None:
    assert ImageBudget().grid(2000, 10) == (1, 2, 58)  # 200:1 is still an image
    with pytest.raises(DataError) as err:
        ImageBudget().grid(2010, 10)
    assert str(err.value) == "image 2010x10: aspect ratio above 200" and err.value.hint == "crop or pad the image"
    with pytest.raises(DataError):
        ImageBudget().grid(10, 2010)


def _processor(size: object, patch: int = 14, merge: int = 2, temporal: int = 2) -> SimpleNamespace:
    """What ImageBudget.of reads of a processor: its image processor's sizes (a SizeDict's fields)."""
    return SimpleNamespace(image_processor=SimpleNamespace(patch_size=patch, merge_size=merge,
                                                           temporal_patch_size=temporal, size=size))


def test_the_budget_is_read_from_the_processor() -> None:
    edges = SimpleNamespace(shortest_edge=6272, longest_edge=100000, min_pixels=None, max_pixels=None)
    assert ImageBudget.of(_processor(edges)) == ImageBudget(14, 2, 2, 6272, 100000)
    pixels = SimpleNamespace(shortest_edge=None, longest_edge=None, min_pixels=1000, max_pixels=9000)
    assert ImageBudget.of(_processor(pixels, 16, 3, 4)) == ImageBudget(16, 3, 4, 1000, 9000)


def test_tokens_use_the_merge_size() -> None:
    assert ImageBudget(merge_size=1).tokens(280, 280) == 400
    assert ImageBudget(merge_size=2).tokens(280, 280) == 100


def test_a_turn_in_several_text_parts_is_trained_as_one_text(tok: Any) -> None:
    ids = TokenIds(tok)
    turn = ChatMessage("assistant", ["<think>lo", "ok</think>", "<answer>3</answer>"], prefill="<think>")
    enc = encode(_conv(ChatMessage("user", ["q"]), turn), tok, ids)
    assert _trained(enc) == [[*_ids(tok, "look</think><answer>3</answer>"), ids.im_end]]
    assert tok.decode(enc.input_ids[:enc.loss_mask.index(1)]).endswith(f"{tags.IM_START}assistant\n<think>")


def test_no_prefill_leaves_the_bare_assistant_header(tok: Any) -> None:
    enc = encode(_conv(ChatMessage("user", ["q"]), ChatMessage("assistant", ["<answer>3</answer>"], prefill="<think>")),
                 tok)
    assert tok.decode(enc.input_ids[:enc.loss_mask.index(1)]).endswith(f"{tags.IM_END}\n{tags.IM_START}assistant\n")


def test_a_turn_that_ended_at_eos_is_not_closed_twice(tok: Any) -> None:
    ids = TokenIds(tok)
    conv = _conv(ChatMessage("user", ["q"]), ChatMessage("assistant", ["first"]), ChatMessage("user", ["more"]),
                 ChatMessage("assistant", ["second"]))
    enc = encode(conv, tok, ids)
    assert enc.input_ids.count(ids.im_end) == 5  # system, q, first (generated), more, second (generated)
    first_end = enc.input_ids.index(ids.im_end, enc.loss_mask.index(1))
    assert enc.loss_mask[first_end] == 1 and tok.decode(enc.input_ids[first_end + 1:first_end + 8]).startswith(
        f"\n{tags.IM_START}user")


def test_grids_are_whole_numbers() -> None:
    grid = ImageBudget().grid(640, 480)
    assert all(type(v) is int for v in grid) and type(ImageBudget().tokens(640, 480)) is int


def test_the_aspect_ratio_of_a_one_pixel_side() -> None:
    assert ImageBudget().grid(200, 1) == (1, 2, 58)  # 200:1 passes
    with pytest.raises(DataError):
        ImageBudget().grid(201, 1)


def test_a_grid_exactly_at_the_pixel_limit_is_not_scaled_down() -> None:
    assert ImageBudget(max_pixels=280 * 280).grid(275, 285) == (1, 20, 20)  # 280 x 280 after rounding: kept


def test_a_prefill_split_across_text_parts_is_still_the_prefill(tok: Any) -> None:
    ids = TokenIds(tok)
    turn = ChatMessage("assistant", ["<th", "ink>look</think><answer>3</answer>"], prefill="<think>")
    enc = encode(_conv(ChatMessage("user", ["q"]), turn), tok, ids)
    assert _trained(enc) == [[*_ids(tok, "look</think><answer>3</answer>"), ids.im_end]]
    assert tok.decode(enc.input_ids[:enc.loss_mask.index(1)]).endswith(f"{tags.IM_START}assistant\n<think>")
