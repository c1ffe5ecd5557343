"""A synthetic RL task the tiny model can learn on CPU in minutes, where using a tool pays.

"How many red squares are in the image?" The image holds 1–``max_count`` red squares on
grey. The tiny model cannot count from pixels, but one fixed code cell can: it prints the
count, and the model only has to copy that digit into ``<answer>``. Without the tool the
expected accuracy is 1/max_count; with it, 1. ``scripted_turn`` is the ideal policy (for the
SFT warm start and scripted rollouts); ``p_tool`` and ``p_copy`` make it imperfect.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from deepeyes_cli.agent.trajectory import ImageRef, Sample

QUESTION = "How many red squares are in the image?"
SIDE = 112
CELL = 28
# fixed, so the model can memorise it: red pixels divided by the pixels of one square
CODE = f"import numpy as np\nprint((np.array(image_1)[..., 1] < 50).sum() // {CELL * CELL})"
THINK_TOOL = "Count with code."
THINK_ANSWER = "Counted."
# A short system prompt keeps CPU steps cheap (the built-in one describes every tool at length).
SYSTEM_PROMPT = "You answer questions about images. Run Python in <code> blocks; image_1 is the image."


def make_image(count: int, rng: random.Random) -> Any:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (SIDE, SIDE), (128, 128, 128))
    draw = ImageDraw.Draw(im)
    cells = [(x, y) for x in range(SIDE // CELL) for y in range(SIDE // CELL)]
    for x, y in rng.sample(cells, count):
        draw.rectangle([x * CELL, y * CELL, x * CELL + CELL - 1, y * CELL + CELL - 1], fill=(255, 0, 0))
    return im


def write_dataset(path: str | Path, n: int, seed: int = 0, max_count: int = 4) -> Path:
    """``n`` samples as sample records (JSONL, images inline)."""
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            count = rng.randint(1, max_count)
            ref = ImageRef.from_pil(make_image(count, rng), inline=True)
            s = Sample(id=f"count-{seed}-{i}", question=QUESTION, answer=str(count), data_source="synthetic",
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
            found = re.search(r"stdout:\n```\n(\d+)", text)
            return found.group(1) if found else None
    return None


def scripted_turn(p_tool: float = 1.0, p_copy: float = 1.0, max_count: int = 4,
                  rng: random.Random | None = None) -> Any:
    """A script for the scripted policy: call the tool with probability ``p_tool``, then
    copy the printed count with probability ``p_copy`` (else guess)."""
    r = rng or random

    def turn(conversation: Any) -> str:
        n_assistant = sum(1 for m in conversation.messages if m.role == "assistant")
        if n_assistant == 0:
            if r.random() < p_tool:
                return tool_turn()
            return f"<think>{THINK_ANSWER}</think>\n<answer>{r.randint(1, max_count)}</answer>"
        seen = observed_count(conversation)
        guess = seen if seen is not None and r.random() < p_copy else str(r.randint(1, max_count))
        return answer_turn(guess)

    return turn
