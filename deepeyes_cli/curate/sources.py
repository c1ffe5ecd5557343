"""Readers: every supported layout as a stream of raw rows (dicts), one at a time.

JSON (a list, or ``{"data": [...]}``), JSONL, parquet (read in record batches, never whole),
HF ``datasets`` directories (``save_to_disk``, a ``Dataset`` or a ``DatasetDict``, read from
their Arrow files in batches with images left as bytes), a folder holding JSON/JSONL/parquet
files beside its images, and ``builtin:synthetic``. Which columns mean what is decided later
(``ingest.to_sample``); here a row is only read, with the directory its relative image
paths start from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import InputError

BATCH_ROWS = 256
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass
class RawRow:
    source: str  # the file (or builtin name) it came from
    row: int  # 0-based row number within the source
    data: dict[str, Any] | None  # None: the row could not be parsed (error says why)
    base_dir: Path | None
    error: str | None = None


def list_sources(specs: list[str]) -> list[str]:
    """Expand folders into their data files (an HF datasets folder stays one source)."""
    out: list[str] = []
    for spec in specs:
        if spec.startswith("builtin:"):
            if spec != "builtin:synthetic":
                raise InputError(f"unknown built-in source {spec}", hint="the built-in source is builtin:synthetic")
            out.append(spec)
            continue
        p = Path(spec).expanduser()
        if not p.exists():
            raise InputError(f"no such source: {spec}", hint="give JSON/JSONL/parquet files, folders or builtin:synthetic")
        if p.is_dir() and not _is_hf_dir(p):
            found = sorted(str(f) for f in p.iterdir() if f.suffix in DATA_SUFFIXES and not f.name.startswith("."))
            if not found:
                raise InputError(f"{p} holds no .jsonl, .json or .parquet file and is not a datasets folder",
                                 hint="put a JSONL with question/answer/image columns beside the images")
            out.extend(found)
        else:
            out.append(str(p))
    return out


def _is_hf_dir(p: Path) -> bool:
    return (p / "dataset_dict.json").exists() or ((p / "state.json").exists() and (p / "dataset_info.json").exists())


def read_rows(source: str, synthetic: Any = None) -> Iterator[RawRow]:
    if source == "builtin:synthetic":
        from deepeyes_cli.curate.synthetic import generate_rows

        for i, row in enumerate(generate_rows(synthetic)):
            yield RawRow(source, i, row, None)
        return
    p = Path(source)
    if p.is_dir():
        yield from _hf_rows(p)
    elif p.suffix == ".parquet":
        yield from _parquet_rows(p)
    elif p.suffix == ".jsonl":
        yield from _jsonl_rows(p)
    elif p.suffix == ".json":
        yield from _json_rows(p)
    else:
        raise InputError(f"{p}: unknown format {p.suffix or '(no suffix)'}",
                         hint="supported: .json, .jsonl, .parquet, a datasets folder, a folder of those")


def _jsonl_rows(p: Path) -> Iterator[RawRow]:
    with open(p, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f):
            if not line.strip():
                yield RawRow(str(p), i, None, p.parent, "empty line")
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as e:
                yield RawRow(str(p), i, None, p.parent, f"not JSON: {e.msg}")
                continue
            if not isinstance(data, dict):
                yield RawRow(str(p), i, None, p.parent, f"not a JSON object but {type(data).__name__}")
                continue
            yield RawRow(str(p), i, data, p.parent)


def _json_rows(p: Path) -> Iterator[RawRow]:
    text = p.read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{p} is not JSON: {e.msg} (line {e.lineno})",
                         hint="a JSON file holds a list of objects; one object per line is .jsonl") from e
    if isinstance(data, dict):
        data = data.get("data", data.get("rows"))
    if not isinstance(data, list):
        raise InputError(f"{p} holds no list of rows", hint='expected [{...}, ...] or {"data": [...]}')
    for i, row in enumerate(data):
        if isinstance(row, dict):
            yield RawRow(str(p), i, row, p.parent)
        else:
            yield RawRow(str(p), i, None, p.parent, f"not a JSON object but {type(row).__name__}")


def _batches_to_rows(source: str, batches: Iterator[Any], base_dir: Path | None, start: int = 0) -> Iterator[RawRow]:
    i = start
    for batch in batches:
        for row in batch.to_pylist():
            yield RawRow(source, i, row, base_dir)
            i += 1


def _parquet_rows(p: Path) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
    except (OSError, pa.ArrowInvalid) as e:
        raise InputError(f"{p} is not a readable parquet file: {e}", hint="check the file") from e
    yield from _batches_to_rows(str(p), pf.iter_batches(batch_size=BATCH_ROWS), p.parent)


def _hf_rows(p: Path) -> Iterator[RawRow]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(p))
    except (OSError, ValueError, FileNotFoundError) as e:
        raise InputError(f"{p} is not a readable datasets folder: {e}", hint="write it with save_to_disk") from e
    splits = ds.items() if isinstance(ds, datasets.DatasetDict) else [(None, ds)]
    start = 0
    for split, part in splits:
        table = part.data  # memory-mapped Arrow: images stay {bytes, path} structs, read batch by batch
        rows = _batches_to_rows(str(p), iter(table.to_batches(max_chunksize=BATCH_ROWS)), p, start)
        for r in rows:
            if split is not None and r.data is not None:
                r.data.setdefault("split", split)
            yield r
        start += len(part)
