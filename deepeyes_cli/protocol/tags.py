"""The DeepEyesV2 wire format: tags, stop strings, the prefill, and the exact templates of
what goes back to the model. Every literal of the protocol lives here and nowhere else.

The framing is the original RL environment's, so the released checkpoints
(``honglyhly/DeepEyesV2_7B_1031`` and its SFT sibling) run under our loop unchanged:
generation stops at ``</code>`` or ``</tool_call>`` (stop string kept), the result comes
back as a *user* turn, and the next assistant turn is prefilled with ``<think>``. In
ChatML that is, byte for byte::

    …</code><|im_end|>\\n<|im_start|>user\\n{RESULT}<|im_end|>\\n<|im_start|>assistant\\n<think>
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
CODE_OPEN, CODE_CLOSE = "<code>", "</code>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE = "<tool_response>", "</tool_response>"

# Generation stops here (the stop string stays in the output); EOS (<|im_end|>) also stops.
STOP_STRINGS = (CODE_CLOSE, TOOL_CALL_CLOSE)
# What the assistant turn after a tool result starts with.
PREFILL_AFTER_TOOL = THINK_OPEN

# In prompts and tool results, one `<image>` stands for one image (LLaMA-Factory / verl convention).
IMAGE_PLACEHOLDER = "<image>"

# Qwen2.5-VL's ChatML and vision tokens.
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
ENDOFTEXT = "<|endoftext|>"
VISION_START, IMAGE_PAD, VISION_END = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"
IMAGE_TOKENS = VISION_START + IMAGE_PAD + VISION_END  # one image, collapsed (one pad)
VISION_SPECIALS = (VISION_START, IMAGE_PAD, VISION_END, "<|video_pad|>", "<|vision_pad|>")
# Special tokens no message text may carry: the vision ones (only real images make image
# tokens) and ChatML's own (a web page or a print() must not open or close a turn).
TEXT_FORBIDDEN = (*VISION_SPECIALS, IM_START, IM_END, ENDOFTEXT)
# The template's system message when a conversation has none.
DEFAULT_SYSTEM = "You are a helpful assistant."
# Text the model must never produce: the original rollout's bad_words (``<size>`` is plain
# text, several tokens) plus the vision specials, whose ids would break image alignment in
# the next prompt.
BAD_WORDS = (ENDOFTEXT, "<size>", IM_START, *VISION_SPECIALS)

CODE_TOOL = "code"

# ---------------------------------------------------------------------------- results

_CODE_RESULT = "Code execution result:\nstdout:\n```\n{stdout}\n```\n\nstderr:\n```\n{stderr}\n```\n\n{images}"


def format_code_result(stdout: str, stderr: str, n_images: int) -> str:
    """The code observation of the original, stripped; ``n_images`` trailing ``<image>``s."""
    images = ("Images:\n" + IMAGE_PLACEHOLDER * n_images) if n_images else ""
    return _CODE_RESULT.format(stdout=stdout, stderr=stderr, images=images).strip()


_CODE_RESULT_PARTS = re.compile(
    r"\ACode execution result:\nstdout:\n```\n(?P<stdout>.*?)\n```\n\nstderr:\n```\n(?P<stderr>.*)\n```"
    r"(?:\n\nImages:\n(?P<images>(?:" + re.escape(IMAGE_PLACEHOLDER) + r")*))?\Z", re.S)


def parse_code_result(text: str) -> tuple[str, str] | None:
    """``(stdout, stderr)`` of a code result (for display; its images are separate parts),
    or None when ``text`` is not one."""
    m = _CODE_RESULT_PARTS.match(text)
    return (m.group("stdout"), m.group("stderr")) if m else None


def format_tool_response(text: str) -> str:
    """A ``<tool_call>`` result (search, image search …) as the model reads it."""
    return f"{TOOL_RESPONSE_OPEN}\n{text}\n{TOOL_RESPONSE_CLOSE}".strip()


def format_tool_error(message: str) -> str:
    return f"Error: {message}"


# Corrective messages for malformed turns. The first three are the original's wording
# (the released checkpoints were trained on them); the rest are ours.
def invalid_tool_call_format(raw: str, error: str) -> str:
    return f"Error: Invalid tool call format: {raw}. Error: {error}"


def invalid_tool_call_name(raw: str) -> str:
    return f"Error: Invalid tool call name: {raw}."


def invalid_image_search_parameters(raw: str) -> str:
    return f"Error: Invalid tool call parameters for image search: {raw}."


def invalid_tool_parameters(name: str, raw: str, problem: str) -> str:
    return f"Error: Invalid tool call parameters for {name}: {raw}. {problem}"


FEEDBACK = {
    "answer_with_tool": "Error: A turn either calls one tool or gives the final answer, not both. "
                        "Call the tool and wait for its result, or answer.",
    "multiple_actions": "Error: Only one tool call per turn is allowed; nothing was run. "
                        "Call one tool, wait for its result, then continue.",
    "unclosed_code": "Error: The <code> block was not closed. Write <code>, a ```python fenced block, "
                     "then </code>.",
    "unclosed_tool_call": "Error: The <tool_call> was not closed with </tool_call>.",
    "unclosed_answer": "Error: The <answer> was not closed. Give the final answer as <answer> ... </answer>.",
    "code_without_fence": "Error: No ```python fenced block inside <code>; nothing was run. Write "
                          "<code>\n```python\n...\n```\n</code>.",
    "empty_code": "Error: The code block is empty; nothing was run.",
    "no_action": "Error: No tool call and no answer found. Call a tool, or give the final answer "
                 "as <answer> ... </answer>.",
}
