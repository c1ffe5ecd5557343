"""Golden rendering: a whole trajectory (code result with 2 images, a search result, an
answer) through the tiny model's real Qwen2.5-VL chat template, to an exact string; and
image tokens that always match the processor's grid."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from deepeyes_cli.models.loading import load_processor
from deepeyes_cli.policy.base import ChatMessage, Conversation
from deepeyes_cli.policy.tokens import TokenIds, encode_prompt, expand_image_pads
from deepeyes_cli.protocol import observation as obs
from deepeyes_cli.protocol import tags
from deepeyes_cli.protocol.render import prompt_images, render_prompt
from deepeyes_cli.tools.base import ToolResult

VISION = "<|vision_start|><|image_pad|><|vision_end|>"
CODE_TURN = ("<think>The sign is small; crop and zoom.</think>\n<code>\n```python\n"
             "crop = image_1.crop((400, 180, 480, 280)).resize((320, 400))\nplt.imshow(crop); plt.show()\n"
             "plt.imshow(crop.convert('L')); plt.show()\n```\n</code>")
SEARCH_TURN = ('It reads STOP. Check the number.</think>\n<tool_call>\n{"name": "search", "arguments": '
               '{"query": "No. 42 street sign"}}\n</tool_call>')
ANSWER_TURN = "The sign says STOP.</think>\n<answer>STOP</answer>"
SEARCH_TEXT = ("A Google search for 'No. 42 street sign' found 1 results:\n\n## Web Results\n"
               "1. [Street signs](https://example.org/signs)\n\nA page about signs.")

EXPECTED = (
    "<|im_start|>system\nSYSTEM PROMPT<|im_end|>\n"
    f"<|im_start|>user\n{VISION}\nWhat does the sign say?\n\nINSTRUCTION<|im_end|>\n"
    f"<|im_start|>assistant\n{CODE_TURN}<|im_end|>\n"
    "<|im_start|>user\nCode execution result:\nstdout:\n```\n\n```\n\nstderr:\n```\n\n```\n\n"
    f"Images:\n{VISION}{VISION}<|im_end|>\n"
    f"<|im_start|>assistant\n<think>{SEARCH_TURN}<|im_end|>\n"
    f"<|im_start|>user\n<tool_response>\n{SEARCH_TEXT}\n</tool_response><|im_end|>\n"
    f"<|im_start|>assistant\n<think>{ANSWER_TURN}<|im_end|>\n"
)


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path):
    return load_processor(str(tiny_model_dir), min_pixels=3136, max_pixels=200704)


def _trajectory() -> tuple[list[ChatMessage], list[Image.Image]]:
    photo = Image.new("RGB", (640, 480), (120, 160, 230))
    figs = [Image.new("RGB", (320, 400), (200, 20, 30)), Image.new("RGB", (333, 250), (90, 90, 90))]
    msgs = obs.initial_messages("SYSTEM PROMPT", "What does the sign say?", [photo], "INSTRUCTION")
    msgs.append(ChatMessage("assistant", [CODE_TURN]))
    code = obs.code_observation(ToolResult(text=tags.format_code_result("", "", 2), images=figs), limit=10)
    msgs.append(ChatMessage("user", code.content))
    msgs.append(ChatMessage("assistant", ["<think>" + SEARCH_TURN], prefill="<think>"))
    msgs.append(ChatMessage("user", obs.tool_observation(ToolResult(text=SEARCH_TEXT), limit=10).content))
    msgs.append(ChatMessage("assistant", ["<think>" + ANSWER_TURN], prefill="<think>"))
    return msgs, [photo, *figs]


def _as_hf(messages: list[ChatMessage]) -> list[dict]:
    return [{"role": m.role, "content": [{"type": "text", "text": p} if isinstance(p, str) else {"type": "image"}
                                         for p in m.content]} for m in messages]


def test_whole_trajectory_renders_to_the_golden_string(processor) -> None:
    msgs, images = _trajectory()
    via_template = processor.apply_chat_template(_as_hf(msgs), tokenize=False)
    assert via_template == EXPECTED
    # our renderer gives the same prompt at every turn, prefill included
    for cut, prefix in ((2, ""), (4, "<think>"), (6, "<think>")):
        ours = render_prompt(msgs[:cut], prefix)
        template = processor.apply_chat_template(_as_hf(msgs[:cut]), tokenize=False, add_generation_prompt=True)
        assert ours == template + prefix
        assert EXPECTED.startswith(ours)
    assert prompt_images(msgs) == images


def test_image_pads_match_the_processor_grid_for_every_image(processor) -> None:
    msgs, images = _trajectory()
    text = render_prompt(msgs[:6], "<think>")
    inputs = processor(text=[text], images=images, return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    grid = inputs["image_grid_thw"].tolist()
    per_image = [t * h * w // processor.merge_size**2 for t, h, w in grid]
    start = processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    runs = []
    for i, tok in enumerate(ids):
        if tok == start:
            n = 0
            while ids[i + 1 + n] == processor.image_token_id:
                n += 1
            runs.append(n)
    assert runs == per_image and len(runs) == 3
    # our collapsed ids, expanded by the one expansion function, are exactly the processor's
    token_ids = TokenIds(processor.tokenizer)
    collapsed, imgs = encode_prompt(Conversation(msgs[:6], "<think>"), processor.tokenizer, token_ids)
    assert collapsed.count(token_ids.image_pad) == 3 and imgs == images
    expanded, types = expand_image_pads(collapsed, grid, processor.merge_size, token_ids.image_pad)
    assert expanded == ids and types == inputs["mm_token_type_ids"][0].tolist()


def test_expansion_refuses_mismatched_counts(processor) -> None:
    from deepeyes_cli.errors import BackendError

    pad = processor.image_token_id
    with pytest.raises(BackendError, match="more image pads"):
        expand_image_pads([1, pad, pad], [[1, 4, 4]], 2, pad)
    with pytest.raises(BackendError, match="1 image pads for 2 images"):
        expand_image_pads([1, pad], [[1, 4, 4], [1, 2, 2]], 2, pad)
    bad = Conversation([ChatMessage("user", ["hi"]), ChatMessage("assistant", ["x"], token_ids=[pad])])
    with pytest.raises(BackendError, match="image pads for 0 images"):
        encode_prompt(bad, processor.tokenizer, TokenIds(processor.tokenizer))
