"""`builtin:synthetic`: generated questions on generated images, designed so tools help.

Each image is cluttered with large faint shapes; the answer hides in a small detail:

- ``corner_number`` (perception): a two-digit number in tiny print near one corner: crop and zoom;
- ``count_shapes`` (perception): small shapes of three colours: count one colour with code;
- ``product`` (reason): two numbers in small print: read them, multiply in code;
- ``landmark_year`` (search): a landmark's name in small print: read it, search for the year
  (the facts are those of the built-in offline search corpus).

A row carries its generation plan in ``metadata["synthetic"]`` (kind, boxes, colour) so the
built-in scripted teacher (``curate/teacher.py``) can write a tool-using trajectory for it.
Rows are generated one at a time from ``(seed, index)``: the same seed gives the same data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

    from deepeyes_cli.curate.config import SyntheticConfig

COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (30, 170, 60)}
CORNERS = {"top-left": (0, 0), "top-right": (1, 0), "bottom-left": (0, 1), "bottom-right": (1, 1)}
# (name in the corpus, the verb the corpus uses, the year it gives)
LANDMARKS = [("Eiffel Tower", "completed", "1889"), ("Statue of Liberty", "dedicated", "1886"),
             ("Golden Gate Bridge", "opened", "1937"), ("Sydney Opera House", "opened", "1973")]
KIND_SOURCE = {"corner_number": ("perception", "zoom"), "count_shapes": ("perception", "counting"),
               "product": ("reason", "arithmetic"), "landmark_year": ("search", "knowledge")}


def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _canvas(rng: random.Random, size: int) -> Image:
    """A pale background with big faint distractor shapes (no saturated colour: counting stays exact)."""
    from PIL import Image, ImageDraw

    bg = tuple(rng.randint(225, 245) for _ in range(3))
    im = Image.new("RGB", (size, size), bg)  # type: ignore[arg-type]
    d = ImageDraw.Draw(im)
    for _ in range(rng.randint(3, 6)):
        x0, y0 = rng.randint(0, size - 40), rng.randint(0, size - 40)
        x1, y1 = min(size, x0 + rng.randint(30, size // 2)), min(size, y0 + rng.randint(30, size // 2))
        fill = tuple(rng.randint(170, 215) for _ in range(3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)((x0, y0, x1, y1), fill=fill)  # type: ignore[arg-type]
    return im


def _text(im: Image, xy: tuple[int, int], text: str, size: int) -> list[int]:
    from PIL import ImageDraw

    d = ImageDraw.Draw(im)
    font = _font(size)
    d.text(xy, text, fill=(20, 20, 20), font=font)
    x0, y0, x1, y1 = d.textbbox(xy, text, font=font)
    return [int(x0), int(y0), int(x1), int(y1)]


def _pad(box: list[int], size: int, pad: int) -> list[int]:
    return [max(0, box[0] - pad), max(0, box[1] - pad), min(size, box[2] + pad), min(size, box[3] + pad)]


def _corner_number(rng: random.Random, size: int) -> tuple[Image, str, str, dict[str, Any]]:
    im = _canvas(rng, size)
    corner = rng.choice(sorted(CORNERS))
    cx, cy = CORNERS[corner]
    num = str(rng.randint(10, 99))
    margin = rng.randint(4, 12)
    x = margin if cx == 0 else size - margin - 14
    y = margin if cy == 0 else size - margin - 12
    box = _text(im, (x, y), num, 10)
    q = f"What is the small number written near the {corner} corner of the image?"
    return im, q, num, {"box": _pad(box, size, 12), "corner": corner}


def _count_shapes(rng: random.Random, size: int) -> tuple[Image, str, str, dict[str, Any]]:
    from PIL import ImageDraw

    im = _canvas(rng, size)
    d = ImageDraw.Draw(im)
    target = rng.choice(sorted(COLOURS))
    placed: list[tuple[int, int, int, int]] = []
    counts = {name: rng.randint(1, 7) for name in COLOURS}
    for name, n in counts.items():
        for _ in range(n):
            for _try in range(200):
                s = rng.randint(10, 22)
                x, y = rng.randint(2, size - s - 2), rng.randint(2, size - s - 2)
                box = (x, y, x + s, y + s)
                if all(box[2] + 3 < b[0] or b[2] + 3 < box[0] or box[3] + 3 < b[1] or b[3] + 3 < box[1]
                       for b in placed):
                    placed.append(box)
                    (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=COLOURS[name])
                    break
            else:
                counts[name] -= 1  # no room left: the answer counts what was drawn
    q = f"How many {target} shapes are in the image?"
    return im, q, str(counts[target]), {"colour": target, "rgb": list(COLOURS[target])}


def _product(rng: random.Random, size: int) -> tuple[Image, str, str, dict[str, Any]]:
    im = _canvas(rng, size)
    a, b = rng.randint(11, 49), rng.randint(11, 49)
    half = size // 2
    box_a = _text(im, (rng.randint(8, half - 30), rng.randint(8, size - 24)), str(a), 11)
    box_b = _text(im, (rng.randint(half + 8, size - 30), rng.randint(8, size - 24)), str(b), 11)
    q = "What is the product of the two numbers written in small print in the image?"
    return im, q, str(a * b), {"boxes": [_pad(box_a, size, 10), _pad(box_b, size, 10)], "numbers": [a, b]}


def _landmark_year(rng: random.Random, size: int) -> tuple[Image, str, str, dict[str, Any]]:
    im = _canvas(rng, size)
    name, verb, year = rng.choice(LANDMARKS)
    box = _text(im, (rng.randint(6, size - 110), rng.randint(6, size - 20)), name, 10)
    q = f"In what year was the landmark named in the small caption of this image {verb}?"
    return im, q, year, {"box": _pad(box, size, 10), "name": name, "verb": verb}


_KINDS = {"corner_number": _corner_number, "count_shapes": _count_shapes, "product": _product,
          "landmark_year": _landmark_year}


def generate_rows(cfg: SyntheticConfig) -> Iterator[dict[str, Any]]:
    """Rows ready for ingest: ``id, question, answer, image (PIL), data_source, metadata``."""
    kinds = list(cfg.kinds)
    for i in range(cfg.n):
        rng = random.Random(f"{cfg.seed}:{i}")
        kind = kinds[i % len(kinds)]
        image, question, answer, plan = _KINDS[kind](rng, cfg.size)
        source, capability = KIND_SOURCE[kind]
        yield {"id": f"syn-{cfg.seed}-{i:05d}", "question": question, "answer": answer, "image": image,
               "data_source": source, "metadata": {"capability": capability, "synthetic": {"kind": kind, **plan}}}
