"""Find a benchmark's files and load its items.

Where: ``--data PATH`` (a file, or a folder searched for the benchmark's files), else
``$DEEPEYES_BENCH_DATA/<name>/``. A missing file is one error that says where to download
it and what the folder must hold. Rows that cannot become items are counted, with the
first few reasons, in :class:`Loaded`; they never stop a run.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from deepeyes_cli.bench.adapters import ADAPTERS, MalformedRow
from deepeyes_cli.bench.formats import detect_format, read_rows
from deepeyes_cli.bench.items import BenchItem
from deepeyes_cli.bench.registry import BenchSpec
from deepeyes_cli.errors import InputError

DATA_ENV = "DEEPEYES_BENCH_DATA"
_SHOWN_REASONS = 5


@dataclass
class Loaded:
    spec: BenchSpec
    source: Path
    items: list[BenchItem]
    rows: int = 0
    malformed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # "row 7: no image"
    duplicates: int = 0

    def to_json(self) -> dict[str, object]:
        return {"source": str(self.source), "rows": self.rows, "items": len(self.items),
                "malformed": self.malformed, "malformed_reasons": dict(self.reasons), "examples": self.examples,
                "duplicate_ids": self.duplicates}


def data_root(spec: BenchSpec, data: str | Path | None) -> Path:
    if data is not None:
        return Path(data).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser() / spec.name
    raise InputError(f"no data for {spec.name}: pass --data or set ${DATA_ENV}",
                     hint=f"download {spec.download} and put {spec.layout} in ${DATA_ENV}/{spec.name}/ "
                          "(or pass --data PATH)")


def find_file(spec: BenchSpec, data: str | Path | None) -> Path:
    root = data_root(spec, data)
    if root.is_file() or (root.is_dir() and detect_format(root) == "disk"):
        return root
    if root.is_dir():
        for pattern in spec.files:
            hits = sorted(p for p in root.glob(pattern) if not p.name.endswith("_qtype.jsonl"))
            if hits:
                return hits[0]
    where = "no such file or folder" if not root.exists() else "none of " + ", ".join(spec.files) + " found"
    raise InputError(f"{spec.name}: {root}: {where}",
                     hint=f"download {spec.download}; expected {spec.layout}")


def _vstar_folders(root: Path) -> list[dict[str, object]]:
    """The original V* layout without test_questions.jsonl: <type>/<name>.json + <name>.jpg."""
    rows: list[dict[str, object]] = []
    for sub in ("direct_attributes", "relative_position"):
        for ann in sorted((root / sub).glob("*.json")):
            try:
                row = json.loads(ann.read_text(encoding="utf-8"))
            except ValueError:
                row = {}
            image = next((p for p in (ann.with_suffix(e) for e in (".jpg", ".png", ".jpeg")) if p.is_file()), None)
            rows.append({**row, "_key": f"{sub}/{ann.stem}", "_image": str(image) if image else None,
                         "category": sub})
    return rows


def _resolve_references(rows: list[dict[str, object]]) -> None:
    """VLMEvalKit: an ``image`` of at most 64 characters is the ``index`` of the row holding the image."""
    by_index = {str(r.get("index")): r.get("image") for r in rows if isinstance(r.get("image"), str)
                and len(str(r["image"])) > 64}
    for r in rows:
        v = r.get("image")
        if isinstance(v, str) and len(v) <= 64 and v in by_index:
            r["image"] = by_index[v]


def load_benchmark(spec: BenchSpec, data: str | Path | None = None, limit: int | None = None,
                   split: str | None = None) -> Loaded:
    """The benchmark's items, in file order (the first ``limit`` when given)."""
    if spec.name == "mini":
        from deepeyes_cli.bench.mini import mini_rows

        rows, path, base = mini_rows(), Path("builtin:mini"), Path(".")
    else:
        path = find_file(spec, data)
        base = path if path.is_dir() else path.parent
        if path.is_dir() and path.name in ("direct_attributes", "data") and spec.name == "vstar":
            path, base = path.parent, path.parent
        if spec.name == "vstar" and path.is_dir() and (path / "direct_attributes").is_dir() \
                and detect_format(path) != "disk":
            rows = _vstar_folders(path)
        else:
            rows = read_rows(path, split=split)
        if detect_format(path) == "tsv":
            _resolve_references(rows)
    adapter = ADAPTERS[spec.adapter]
    out = Loaded(spec, path, [])
    seen: set[str] = set()
    for n, row in enumerate(rows):
        out.rows += 1
        try:
            if not isinstance(row, dict):
                raise MalformedRow("not a record")
            if "_malformed" in row:
                raise MalformedRow(str(row["_malformed"]))
            item = adapter({"_n": str(n), **row}, base)
        except (MalformedRow, KeyError, TypeError, ValueError) as e:
            reason = str(e) if isinstance(e, MalformedRow) else f"{type(e).__name__}: {e}"
            out.malformed += 1
            out.reasons[reason] += 1
            if len(out.examples) < _SHOWN_REASONS:
                out.examples.append(f"row {n + 1}: {reason}")
            continue
        if item.id in seen:  # two rows with one id would share one result
            out.duplicates += 1
            item.id = f"{item.id}#{n}"
        seen.add(item.id)
        out.items.append(item)
        if limit is not None and len(out.items) >= limit:
            break
    if not out.items:
        raise InputError(f"{spec.name}: no usable items in {path} ({out.rows} rows, {out.malformed} malformed"
                         + (f": {out.examples[0]}" if out.examples else "") + ")",
                         hint=f"is this the right file? expected {spec.layout}")
    return out
