"""The data directory every curate stage reads and writes.

    DATA/samples.jsonl             one Sample per line (ingest)
    DATA/images/<sha256>.png       every input image, once, by content
    DATA/ingest/                   bad_rows.jsonl, progress.json, summary.json
    DATA/difficulty/               batch/ (rollouts, viewable with `deepeyes view`), questions.jsonl, summary.json
    DATA/tool_benefit/             with_tools/, without_tools/ (batches), questions.jsonl, summary.json
    DATA/synthesize/               <teacher>/ (batches), kept.jsonl, summary.json
    DATA/split/                    rl.jsonl, sft.jsonl, val.jsonl (sample ids and why), summary.json
    DATA/export/                   the exports (see export.py)
    DATA/report.html

A stage is done when its ``summary.json`` exists and records the digest of its inputs and
settings; `curate run` skips such stages, and a stage whose digest changed runs again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepeyes_cli.agent.trajectory import Sample
from deepeyes_cli.errors import InputError
from deepeyes_cli.fileio import atomic_output, atomic_write


class DataDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def samples(self) -> Path:
        return self.path / "samples.jsonl"

    @property
    def images(self) -> Path:
        return self.path / "images"

    def stage(self, name: str) -> Path:
        p = self.path / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def require_samples(self) -> None:
        if not self.samples.is_file() or not (self.path / "ingest" / "summary.json").is_file():
            raise InputError(f"{self.path} holds no ingested samples",
                             hint=f"run `deepeyes curate ingest SRC... -o {self.path}` first")

    def iter_samples(self) -> Iterator[Sample]:
        if not self.samples.exists():
            return
        with open(self.samples, encoding="utf-8") as f:
            for line in f:
                if line.endswith("\n"):
                    yield Sample.model_validate_json(line)

    def load_samples(self) -> list[Sample]:
        self.require_samples()
        return list(self.iter_samples())

    def samples_digest(self) -> str:
        h = hashlib.sha256()
        with open(self.samples, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ stage markers

    def done(self, name: str, digest: str) -> dict[str, Any] | None:
        """The stage's summary when it finished with this digest, else None."""
        p = self.path / name / "summary.json"
        if not p.exists():
            return None
        data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
        return data if data.get("digest") == digest else None

    def summary(self, name: str) -> dict[str, Any] | None:
        p = self.path / name / "summary.json"
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None

    def finish(self, name: str, digest: str, summary: dict[str, Any]) -> None:
        atomic_write(self.stage(name) / "summary.json", json.dumps({**summary, "digest": digest}, indent=2) + "\n")

    def write_jsonl(self, path: Path, rows: list[dict[str, Any]]) -> None:
        with atomic_output(path) as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")

    def read_jsonl(self, path: Path) -> list[dict[str, Any]]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def digest_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
