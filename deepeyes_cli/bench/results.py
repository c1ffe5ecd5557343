"""What a bench run keeps per item (``scores.jsonl``, append-only: the last line for an id wins)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DecidedBy = Literal["official", "rule", "judge", "unjudged", "error"]


class ItemResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    base_id: str
    category: str
    answer: str | None
    prediction: str | None
    score: float | None  # 0..1 (F1 for MMSearch); None while unjudged
    decided_by: DecidedBy
    rule: str | None = None
    attempted: bool = True
    end_reason: str | None = None
    turns: int = 0
    tool_calls: dict[str, int] = Field(default_factory=dict)
    trajectory_id: str | None = None
    error: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)  # cycle, l2, version, split … (what aggregation reads)

    @property
    def correct(self) -> bool | None:
        return None if self.score is None else self.score >= 0.5


def repair_tail(path: Path) -> None:
    """Cut a torn last line (a writer killed mid-line) so appending starts on a fresh line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        cut = data.rfind(b"\n") + 1
        f.truncate(cut)


def append_results(path: Path, results: Iterable[ItemResult]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for r in results:
            f.write(r.model_dump_json() + "\n")
        f.flush()


def read_results(path: Path) -> dict[str, ItemResult]:
    """The latest result per item id; a torn last line is skipped."""
    out: dict[str, ItemResult] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            r = ItemResult.model_validate(json.loads(line))
        except ValueError:
            continue  # a torn line from a killed writer
        out[r.id] = r
    return out
