"""``trajectory_tokens``: a whole trajectory as the ids RL trains on — built exactly as the
prompts of its turns were, ending with the last generated id (no stray generation prompt),
with the mask on exactly the generated ids."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from deepeyes_cli.agent.trajectory import (
    ImagePart,
    ImageRef,
    Message,
    Sample,
    TextPart,
    Trajectory,
    TurnRecord,
)
from deepeyes_cli.models.loading import load_processor
from deepeyes_cli.policy.base import ChatMessage, Conversation
from deepeyes_cli.policy.tokens import TokenIds, encode_prompt, expand_image_pads, trajectory_tokens
from deepeyes_cli.protocol import observation as obs
from deepeyes_cli.protocol import tags
from deepeyes_cli.tools.base import ToolResult

CODE_TURN = "<think>Crop it.</think>\n<code>\n```python\nplt.imshow(image_1.crop((0, 0, 32, 32))); plt.show()\n```\n</code>"
ANSWER_TURN = "It is blue.</think>\n<answer>blue</answer>"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return load_processor(str(tiny_model_dir), min_pixels=3136, max_pixels=200704).tokenizer


def _parts(m: ChatMessage) -> list:
    return [TextPart(text=p) if isinstance(p, str) else ImagePart(image=ImageRef.from_pil(p, inline=True))
            for p in m.content]


def _trajectory(tokenizer, end_with_im_end: bool = True) -> tuple[Trajectory, list[list[int]]]:
    """system, question + photo, a code turn, its figure, the answer turn (prefilled ``<think>``)."""
    photo, fig = Image.new("RGB", (64, 48), (20, 60, 200)), Image.new("RGB", (32, 32), (20, 60, 200))
    msgs = obs.initial_messages("SYSTEM", "What colour is it?", [photo], "INSTRUCTION")
    end = tokenizer.convert_tokens_to_ids(tags.IM_END)
    generated = [tokenizer(CODE_TURN, add_special_tokens=False)["input_ids"],
                 tokenizer(ANSWER_TURN, add_special_tokens=False)["input_ids"] + ([end] if end_with_im_end else [])]
    records = [Message(role=m.role, content=_parts(m)) for m in msgs]
    records.append(Message(role="assistant", content=[TextPart(text=CODE_TURN)]))
    turns = [TurnRecord(index=0, action="code", completion_ids=generated[0], message_index=len(records) - 1)]
    code = obs.code_observation(ToolResult(text=tags.format_code_result("", "", 1), images=[fig]), limit=10)
    records.append(Message(role="user", content=_parts(ChatMessage("user", code.content))))
    records.append(Message(role="assistant", content=[TextPart(text="<think>" + ANSWER_TURN)]))
    turns.append(TurnRecord(index=1, action="answer", completion_ids=generated[1], prefill="<think>",
                            message_index=len(records) - 1))
    traj = Trajectory(id="t", sample=Sample(id="s", question="What colour is it?"), messages=records, turns=turns)
    return traj, generated


def test_the_sequence_ends_with_the_last_generated_id(tokenizer) -> None:
    traj, generated = _trajectory(tokenizer)
    ids, mask, images = trajectory_tokens(traj, tokenizer)
    assert ids[-len(generated[1]):] == generated[1] and mask[-1] == 1
    text = tokenizer.decode(ids, skip_special_tokens=False)
    assert text.endswith(ANSWER_TURN + tags.IM_END)
    assert not text.endswith(f"{tags.IM_START}assistant\n") and text.count(f"{tags.IM_START}assistant") == 2
    assert len(images) == 2 and ids.count(TokenIds(tokenizer).image_pad) == 2


def test_generated_ids_without_a_final_im_end_are_kept_as_generated(tokenizer) -> None:
    traj, generated = _trajectory(tokenizer, end_with_im_end=False)  # cut by the token limit
    ids, mask, _ = trajectory_tokens(traj, tokenizer)
    assert ids[-len(generated[1]):] == generated[1] and mask[-1] == 1


def test_the_mask_covers_exactly_the_generated_ids(tokenizer) -> None:
    traj, generated = _trajectory(tokenizer)
    ids, mask, _ = trajectory_tokens(traj, tokenizer)
    assert len(mask) == len(ids) and set(mask) == {0, 1}
    assert [i for i, m in zip(ids, mask, strict=True) if m] == generated[0] + generated[1]
    # two runs of ones: one per assistant turn, each preceded by its prompt text
    runs = "".join(map(str, mask)).split("0")
    assert [len(r) for r in runs if r] == [len(generated[0]), len(generated[1])]


def test_each_turns_prompt_is_a_prefix_of_the_trajectory(tokenizer) -> None:
    """The ids RL trains on are the ids each turn was generated from, not a re-tokenization."""
    from deepeyes_cli.agent.records import chat_messages

    traj, generated = _trajectory(tokenizer)
    ids, _, _ = trajectory_tokens(traj, tokenizer)
    messages = chat_messages(traj)
    token_ids = TokenIds(tokenizer)
    for turn, gen in zip(traj.turns, generated, strict=True):
        assert turn.message_index is not None
        prompt, _ = encode_prompt(Conversation(messages[:turn.message_index], turn.prefill), tokenizer, token_ids)
        assert ids[:len(prompt)] == prompt
        assert ids[len(prompt):len(prompt) + len(gen)] == gen


def test_expanding_pads_follows_each_images_grid() -> None:
    ids = [5, 9, 6, 9, 7]
    expanded, types = expand_image_pads(ids, [[1, 4, 6], [1, 2, 2]], 2, pad_id=9)
    assert expanded == [5, *[9] * 6, 6, 9, 7] and types == [0, *[1] * 6, 0, 1, 0]
    from deepeyes_cli.errors import BackendError

    with pytest.raises(BackendError, match="more image pads"):
        expand_image_pads(ids, [[1, 2, 2]], 2, pad_id=9)
    with pytest.raises(BackendError, match="2 image pads for 3 images"):
        expand_image_pads(ids, [[1, 2, 2]] * 3, 2, pad_id=9)


class _NoPadTokenizer:
    unk_token_id = 0

    def convert_tokens_to_ids(self, token: str) -> int:
        return 0 if token == tags.IMAGE_PAD else 5

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [1]}


def test_a_tokenizer_without_the_protocols_tokens_is_refused() -> None:
    from deepeyes_cli.errors import BackendError

    with pytest.raises(BackendError, match=r"no <\|image_pad\|> token") as e:
        TokenIds(_NoPadTokenizer())
    assert e.value.hint == "is this a Qwen2.5-VL checkpoint?"


def test_token_ids_are_the_tokenizers(tokenizer) -> None:
    ids = TokenIds(tokenizer)
    assert ids.im_end == tokenizer.convert_tokens_to_ids(tags.IM_END)
    assert ids.image_pad == tokenizer.convert_tokens_to_ids(tags.IMAGE_PAD)
    assert ids.endoftext == tokenizer.convert_tokens_to_ids(tags.ENDOFTEXT)
    assert ids.bad_words == [tokenizer(w, add_special_tokens=False)["input_ids"] for w in tags.BAD_WORDS]
    assert len({ids.im_end, ids.image_pad, ids.endoftext}) == 3


def test_a_generated_image_pad_is_refused(tokenizer) -> None:
    from deepeyes_cli.errors import BackendError

    ids = TokenIds(tokenizer)
    msgs = [ChatMessage("user", ["q"]), ChatMessage("assistant", ["x"], token_ids=[ids.image_pad, ids.im_end])]
    with pytest.raises(BackendError, match="1 image pads for 0 images") as e:
        encode_prompt(Conversation(msgs), tokenizer, ids)
    assert e.value.hint == "an assistant turn contains image tokens; regenerate it"


def test_a_turn_that_ended_with_im_end_is_not_closed_twice(tokenizer) -> None:
    """Generated ids that end with <|im_end|> (EOS) are followed by the newline only, in the
    prompt of the next turn and in the whole trajectory."""
    ids = TokenIds(tokenizer)
    gen = tokenizer("no idea", add_special_tokens=False)["input_ids"] + [ids.im_end]
    msgs = [ChatMessage("user", ["q"]), ChatMessage("assistant", ["no idea"], token_ids=gen),
            ChatMessage("user", ["Please answer."])]
    prompt, _ = encode_prompt(Conversation(msgs), tokenizer, ids)
    assert tokenizer.decode(prompt, skip_special_tokens=False).count(tags.IM_END) == 4  # system, 2 users, 1 assistant
    traj, generated = _trajectory(tokenizer)
    traj.turns[0].completion_ids = generated[0] + [ids.im_end]  # this turn ended on EOS too
    out, _, _ = trajectory_tokens(traj, tokenizer)
    text = tokenizer.decode(out, skip_special_tokens=False)
    assert text.count(tags.IM_END) == 5  # system, question, code turn, its result, answer: each closed once


def test_images_kept_as_files_are_read_relative_to_the_records_folder(tokenizer, tmp_path: Path) -> None:
    from deepeyes_cli.agent.trajectory import externalize_images

    traj, _ = _trajectory(tokenizer)
    inline_ids, _, inline_images = trajectory_tokens(traj, tokenizer)
    saved = externalize_images(traj, tmp_path / "t.jsonl")
    assert all(ref.path and not Path(ref.path).is_absolute() for ref in saved.image_refs() if ref.path)
    ids, _, images = trajectory_tokens(saved, tokenizer, base_dir=tmp_path)
    assert ids == inline_ids and [im.tobytes() for im in images] == [im.tobytes() for im in inline_images]
