"""What a bench run keeps per item (``scores.jsonl``: one line per item)."""

from __future__ import annotations

import json
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
    answered: bool = True  # the model gave an <answer> (else the last response was scored, as the original did)
    end_reason: str | None = None
    turns: int = 0
    tool_calls: dict[str, int] = Field(default_factory=dict)
    trajectory_id: str | None = None
    error: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)  # cycle, l2, version, split … (what aggregation reads)

    @property
    def correct(self) -> bool | None:
        return None if self.score is None else self.score >= 0.5


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
