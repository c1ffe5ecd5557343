"""`builtin:oracle`: the scripted teacher that stands in for strong models offline.

It solves `builtin:synthetic` questions the way a good model would, through the live tools:
crop and zoom where the detail is, count pixels of one colour with code, multiply in code,
search the offline corpus for a fact. Its answers come from what the tools returned
(stdout, search results) where they can; a detail only the zoomed crop shows is taken from
the generation plan, as a strong model would read it. A question it has no plan for gets a
plain answer without tools, which synthesis then drops (no tool call). It runs through the
scripted backend (``ScriptedPolicy`` with a function), so it is one more policy of the loop.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deepeyes_cli.agent.trajectory import Sample

if TYPE_CHECKING:
    from pathlib import Path

    from PIL.Image import Image

    from deepeyes_cli.policy.base import Conversation
    from deepeyes_cli.policy.scripted import ScriptedPolicy

_NUMBER = re.compile(r"-?\d+")


def image_key(image: Image) -> str:
    """Identifies an input image by size and an 8x8 thumbnail (cheap, stable across encodings)."""
    h = hashlib.sha256(f"{image.width}x{image.height}".encode())
    h.update(image.convert("RGB").resize((8, 8)).tobytes())
    return h.hexdigest()[:20]


def _code(thought: str, code: str) -> str:
    return f"<think>{thought}</think>\n<code>\n```python\n{code}\n```\n</code>"


def _answer(thought: str, answer: str, prefilled: bool = True) -> str:
    """After a tool result the loop prefills ``<think>``: the script starts after it."""
    return f"{'' if prefilled else '<think>'}{thought}</think>\n<answer>{answer}</answer>"


def _zoom(boxes: Sequence[Sequence[int]]) -> str:
    lines = []
    for i, (x0, y0, x1, y1) in enumerate(boxes, 1):
        lines += [f"crop_{i} = image_1.crop(({x0}, {y0}, {x1}, {y1}))",
                  f"crop_{i} = crop_{i}.resize((crop_{i}.width * 4, crop_{i}.height * 4))",
                  f"crop_{i}.show()"]
    return "\n".join(lines)


_COUNT = """import numpy as np
pixels = np.asarray(image_1.convert("RGB")).astype(int)
mask = np.abs(pixels - np.array({rgb})).sum(axis=2) < 60
seen = np.zeros_like(mask)
count = 0
height, width = mask.shape
for y, x in zip(*np.nonzero(mask)):
    if seen[y, x]:
        continue
    count += 1
    stack = [(y, x)]
    seen[y, x] = True
    while stack:
        cy, cx = stack.pop()
        for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
            if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                seen[ny, nx] = True
                stack.append((ny, nx))
print("{name} shapes:", count)"""


def _last_text(conv: Conversation) -> str:
    return "".join(p for p in conv.messages[-1].content if isinstance(p, str))


def _last_number(text: str) -> str | None:
    stdout = text.split("stdout:", 1)[-1].split("stderr:", 1)[0]
    found = _NUMBER.findall(stdout)
    return found[-1] if found else None


def oracle_turn(plan: dict[str, Any], answer: str, turn: int, observation: str) -> str:
    kind = plan.get("kind")
    if kind == "corner_number":
        if turn == 0:
            return _code(f"The number is tiny and sits near the {plan['corner']} corner. I will crop that corner "
                         "and zoom in to read it.", _zoom([plan["box"]]))
        return _answer(f"The zoomed crop of the {plan['corner']} corner clearly shows the number {answer}.", answer)
    if kind == "count_shapes":
        if turn == 0:
            return _code(f"The {plan['colour']} shapes are small and scattered among the others. I will count the "
                         f"connected regions of {plan['colour']} pixels with code.",
                         _COUNT.format(rgb=list(plan["rgb"]), name=plan["colour"]))
        counted = _last_number(observation) or answer
        return _answer(f"The code found {counted} separate {plan['colour']} regions, so there are {counted} "
                       f"{plan['colour']} shapes.", counted)
    if kind == "product":
        a, b = plan["numbers"]
        if turn == 0:
            return _code("The two numbers are printed small. I will zoom into both to read them exactly.",
                         _zoom(plan["boxes"]))
        if turn == 1:
            return (f"The zoomed crops show the numbers {a} and {b}. I will multiply them in code to avoid "
                    f"mistakes.</think>\n<code>\n```python\nprint({a} * {b})\n```\n</code>")
        result = _last_number(observation) or answer
        return _answer(f"The product of {a} and {b} is {result}.", result)
    if kind == "landmark_year":
        if turn == 0:
            return _code("The caption is too small to read reliably. I will zoom into it first.", _zoom([plan["box"]]))
        if turn == 1:
            call = json.dumps({"name": "search", "arguments": {"query": f"{plan['name']} year {plan['verb']}"}})
            return (f"The caption reads \"{plan['name']}\". I do not know the year for certain, so I will search "
                    f"for it.</think>\n<tool_call>\n{call}\n</tool_call>")
        years = re.findall(rf"{plan['verb']} (?:in |on )?(?:\d+ \w+ )?(\d{{4}})", observation)
        year = years[0] if years else answer
        return _answer(f"The search result says the {plan['name']} was {plan['verb']} in {year}.", year)
    return _answer("I answer from the image alone.", answer, prefilled=turn > 0)


def oracle_policy(samples: Sequence[Sample], base_dir: str | Path | None = None) -> ScriptedPolicy:
    """The oracle teacher for ``samples`` (their images are read once to recognise them)."""
    from deepeyes_cli.policy.scripted import ScriptedPolicy

    plans: dict[str, tuple[dict[str, Any], str]] = {}
    for s in samples:
        plan = s.metadata.get("synthetic")
        if isinstance(plan, dict) and s.images and s.answer is not None:
            plans[image_key(s.images[0].load(base_dir))] = (plan, s.answer)

    def turn(conv: Conversation) -> str:
        from PIL.Image import Image as PILImage

        first = next((p for m in conv.messages if m.role == "user" for p in m.content if isinstance(p, PILImage)),
                     None)
        n = sum(1 for m in conv.messages if m.role == "assistant")
        known = plans.get(image_key(first)) if first is not None else None
        if known is None:
            return _answer("I cannot tell from the image.", "unknown", prefilled=n > 0)
        return oracle_turn(known[0], known[1], n, _last_text(conv))

    return ScriptedPolicy(turn, model_name="builtin:oracle")
