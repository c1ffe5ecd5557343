"""``mini``: a benchmark generated offline, for demos and tests (no download).

Eight solid-colour squares, each asked as a four-option question ("What colour is the
square?"). A model that reads the image gets them all; the tiny random model guesses.
:func:`write_mini_tsv` writes the same rows as a VLMEvalKit TSV, to try the file loaders.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 60, 220), "yellow": (235, 210, 40),
           "black": (10, 10, 10), "white": (250, 250, 250), "purple": (130, 40, 160), "orange": (245, 130, 20)}
QUESTION = "What colour is the square?"


def _png(rgb: tuple[int, int, int], size: int = 32) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, format="PNG")
    return buf.getvalue()


def mini_rows(n: int = 8) -> list[dict[str, Any]]:
    names = list(COLOURS)
    rows = []
    for i in range(n):
        colour = names[i % len(names)]
        others = [c for c in names if c != colour]
        options = [others[(i + k) % len(others)] for k in range(3)]
        slot = i % 4
        options.insert(slot, colour)
        rows.append({"index": str(i), "image": base64.b64encode(_png(COLOURS[colour])).decode(),
                     "question": QUESTION, **{"ABCD"[k]: o for k, o in enumerate(options)},
                     "answer": "ABCD"[slot], "category": "warm" if colour in ("red", "yellow", "orange") else "other"})
    return rows


def write_mini_tsv(path: str | Path, n: int = 8) -> Path:
    import csv

    path = Path(path)
    rows = mini_rows(n)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    return path
