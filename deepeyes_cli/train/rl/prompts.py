"""RL prompts: our JSONL (sample or trajectory records), the curate RL parquet and the
released DeepEyesV2 RL parquet, and a sampler that resumes exactly.

The released parquet (verl layout) has ``prompt`` (chat messages; the user text carries
``<image>`` placeholders), ``images`` (``[{"bytes": …}]``), ``reward_model.ground_truth``,
``data_source`` and ``extra_info``.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from deepeyes_cli.agent.records import Task
from deepeyes_cli.agent.trajectory import Sample
from deepeyes_cli.errors import InputError


def _text_of(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    users = [m for m in list(prompt) if (m.get("role") if isinstance(m, dict) else None) == "user"]
    content = users[-1]["content"] if users else ""
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _parquet_tasks(path: Path) -> Iterator[Task]:
    import pyarrow.parquet as pq
    from PIL import Image

    table = pq.read_table(path)
    for i, row in enumerate(table.to_pylist()):
        rm = row.get("reward_model") or {}
        answer = row.get("answer") or (rm.get("ground_truth") if isinstance(rm, dict) else None)
        question = row.get("question") or _text_of(row.get("prompt") or "")
        images = []
        for im in row.get("images") or []:
            data = im.get("bytes") if isinstance(im, dict) else im
            if data:
                with Image.open(io.BytesIO(data)) as pil:
                    images.append(pil.convert("RGB"))
        extra = row.get("extra_info") or {}
        sid = str(row.get("id") or (extra.get("index") if isinstance(extra, dict) else None) or f"{path.stem}-{i}")
        yield Task(Sample(id=sid, question=question, answer=None if answer is None else str(answer),
                          data_source=str(row.get("data_source") or "unknown")), images)


def _jsonl_tasks(path: Path) -> Iterator[Task]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                sample = Sample.model_validate(rec["sample"] if "sample" in rec and "messages" in rec else rec)
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(f"{path}:{n}: not a sample or trajectory record ({e})",
                                 hint="one JSON object per line with id, question, answer, images") from e
            yield Task.from_sample(sample, path.parent)


BUILTIN = {"builtin:count": "the synthetic colour-counting task (testing/rl_task.py), 64 prompts",
           "builtin:count-val": "32 held-out prompts of the same task"}


def _builtin(spec: str, cache_dir: str | Path | None) -> Path:
    from deepeyes_cli.models.loading import default_cache_dir
    from deepeyes_cli.testing.rl_task import write_dataset

    if spec not in BUILTIN:
        raise InputError(f"unknown built-in RL dataset {spec}", hint=f"built-in: {', '.join(BUILTIN)}")
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path = root / "datasets" / f"{spec.split(':', 1)[1]}-v5.jsonl"
    if not path.is_file():
        val = spec.endswith("-val")
        # a temp file per process: ranks of a job may write it at once (same content; the rename is atomic)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        write_dataset(tmp, 32 if val else 64, seed=1 if val else 0).rename(path)
    return path


def load_prompts(paths: Sequence[str | Path], limit: int | None = None,
                 cache_dir: str | Path | None = None) -> list[Task]:
    out: list[Task] = []
    files: list[Path] = []
    for spec in paths:
        p = _builtin(str(spec), cache_dir) if str(spec).startswith("builtin:") else Path(spec)
        if p.is_dir():
            files += sorted([*p.glob("*.parquet"), *p.glob("*.jsonl")])
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"no such RL dataset: {p}", hint="set rl.datasets to parquet or JSONL files")
    for f in files:
        out += _parquet_tasks(f) if f.suffix == ".parquet" else _jsonl_tasks(f)
        if limit and len(out) >= limit:
            return out[:limit]
    if not out:
        raise InputError(f"rl.datasets holds no prompts ({', '.join(map(str, paths)) or 'empty'})",
                         hint="set rl.datasets to the curate RL parquet, the DeepEyesV2 RL parquet or a JSONL")
    return out


class PromptSampler:
    """Shuffled epochs (seeded by seed and epoch), and a cursor: its state is two ints."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch, self.cursor = n, seed, 0, 0

    def _order(self) -> list[int]:
        order = list(range(self.n))
        random.Random(self.seed * 100003 + self.epoch).shuffle(order)
        return order

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            order = self._order()
            step = min(k - len(out), self.n - self.cursor)
            out += order[self.cursor:self.cursor + step]
            self.cursor += step
            if self.cursor >= self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed, "n": self.n}

    def load_state_dict(self, s: dict[str, int]) -> None:
        self.epoch, self.cursor = int(s["epoch"]), int(s["cursor"])
