"""A synthetic RL task the tiny model can learn on CPU in minutes, where using a tool pays.

"How many colours are in the image?" The image holds 1–``max_count`` squares on white, each
a different colour, so the answer (white included) is 2 to ``max_count`` + 1 (2 or 3). The tiny model
cannot count from pixels, but one short fixed code cell can: it prints the number of colours
(repeated, see ``CODE``), and the model only has to copy that digit into ``<answer>``. Without the tool the expected
accuracy is 1/max_count; with it, 1. ``scripted_turn`` is the ideal policy (for the
SFT warm start and scripted rollouts); ``p_tool`` and ``p_copy`` make it imperfect.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

from deepeyes_cli.agent.trajectory import ImageRef, Sample

QUESTION = "How many colours are in the image?"
SIDE = 112
MAX_COUNT = 2
CELL = 28
# Fixed and short, so the model can memorise it: the number of colours, white included (the
# image reaches the sandbox as the original PNG), printed REPEAT times. A 2-layer random model
# cannot yet attend to one token of its context (that circuit takes thousands of steps to
# form), but a digit that fills a fifth of the context shifts every position's average, which
# it learns to read in a few hundred steps: one digit against the rest per ~700 SFT steps, so
# two possible answers by default. REPEAT has no digit an answer can have (2 or 3).
REPEAT = 50
CODE = f"print(str(len(image_1.getcolors())) * {REPEAT})"
COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (128, 128, 0)]
THINK_TOOL = "Count with code."
THINK_ANSWER = "Counted."
# A short system prompt keeps CPU steps cheap (the built-in one describes every tool at length).
SYSTEM_PROMPT = "You answer questions about images. Run Python in <code> blocks; image_1 is the image."
INSTRUCTION = "Answer in <answer> </answer>."
# the recipe overrides that put the task's short prompts and its one tool in place
AGENT_ARGS = ["agent.tools=[code]", f"agent.system_prompt={SYSTEM_PROMPT}", f"agent.user_instruction={INSTRUCTION}"]


def make_image(count: int, rng: random.Random) -> Any:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (SIDE, SIDE), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    cells = [(x, y) for x in range(SIDE // CELL) for y in range(SIDE // CELL)]
    for (x, y), colour in zip(rng.sample(cells, count), rng.sample(COLOURS, count), strict=True):
        draw.rectangle([x * CELL, y * CELL, x * CELL + CELL - 1, y * CELL + CELL - 1], fill=colour)
    return im


def write_dataset(path: str | Path, n: int, seed: int = 0, max_count: int = MAX_COUNT) -> Path:
    """``n`` samples as sample records (JSONL, images inline)."""
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            count = rng.randint(1, max_count)
            ref = ImageRef.from_pil(make_image(count, rng), inline=True)
            s = Sample(id=f"count-{seed}-{i}", question=QUESTION, answer=str(count + 1), data_source="synthetic",
                       images=[ref])
            f.write(json.dumps(s.model_dump(mode="json")) + "\n")
    return path


def tool_turn() -> str:
    return f"<think>{THINK_TOOL}</think>\n<code>\n```python\n{CODE}\n```\n</code>"


def answer_turn(answer: str, thought: str = THINK_ANSWER) -> str:
    # after a tool result the protocol prefills "<think>": the turn holds what follows it
    return f"{thought}</think>\n<answer>{answer}</answer>"


def observed_count(conversation: Any) -> str | None:
    """The number the last code result printed, if any."""
    for m in reversed(conversation.messages):
        if m.role == "user":
            text = "".join(p for p in m.content if isinstance(p, str))
            found = re.search(r"stdout:\n```\n(\d)\1*\n", text)
            return found.group(1) if found else None
    return None


def _conversation_rng(conversation: Any, seed: int, turn: int) -> random.Random:
    """A generator of its own for each (question image, turn): the same draws whatever order
    concurrent trajectories reach the policy in."""
    image = next((p for m in conversation.messages if m.role == "user" for p in m.content if not isinstance(p, str)),
                 None)
    digest = hashlib.sha256(image.tobytes() if image is not None else b"").hexdigest()
    return random.Random(f"{seed}:{digest}:{turn}")


def scripted_turn(p_tool: float = 1.0, p_copy: float = 1.0, max_count: int = MAX_COUNT,
                  rng: random.Random | None = None, guess: str | None = None, seed: int | None = None) -> Any:
    """A script for the scripted policy: call the tool with probability ``p_tool``, then
    copy the printed count with probability ``p_copy`` (else guess). Without the tool it
    answers ``guess``, or a random count when ``guess`` is None. With ``seed``, every draw
    comes from the conversation's question image and turn (``_conversation_rng``), so a
    dataset written by concurrent trajectories is the same from run to run; else from ``rng``
    (or the ``random`` module), in the order turns are asked for."""

    def turn(conversation: Any) -> str:
        n_assistant = sum(1 for m in conversation.messages if m.role == "assistant")
        r = _conversation_rng(conversation, seed, n_assistant) if seed is not None else rng or random
        if n_assistant == 0:
            if r.random() < p_tool:
                return tool_turn()
            return f"<think>{THINK_ANSWER}</think>\n<answer>{guess or r.randint(2, max_count + 1)}</answer>"
        seen = observed_count(conversation)
        said = seen if seen is not None and r.random() < p_copy else str(r.randint(2, max_count + 1))
        return answer_turn(said)

    return turn
