"""Rows out of the public file formats benchmarks ship in, as plain dicts.

- VLMEvalKit TSV (``index``, base64 ``image`` …), read with the csv module (fields of
  any size: images are inline);
- HF parquet files, or a folder of them;
- HF ``save_to_disk`` folders (Arrow stream files; a ``DatasetDict`` picks its split);
- JSON (a list, or a dict keyed by id such as MathVista's ``testmini.json``) and JSONL.

Image columns stay encoded (``{bytes, path}`` structs, base64 text, paths); nothing here
decodes an image.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import InputError

FORMATS = ("tsv", "parquet", "disk", "json", "jsonl")


def detect_format(path: Path) -> str | None:
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file() \
                or (path / "state.json").is_file():
            return "disk"
        if any(path.glob("*.parquet")):
            return "parquet"
        return None
    return {".tsv": "tsv", ".parquet": "parquet", ".json": "json", ".jsonl": "jsonl"}.get(path.suffix.lower())


def read_rows(path: Path, fmt: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
    """All rows of ``path`` (format from its name unless given)."""
    fmt = fmt or detect_format(path)
    try:
        if fmt == "tsv":
            return _tsv(path)
        if fmt == "parquet":
            return _parquet(path)
        if fmt == "disk":
            return _disk(path, split)
        if fmt == "json":
            return _json(path)
        if fmt == "jsonl":
            return _jsonl(path)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}", hint="check the path and permissions") from e
    raise InputError(f"{path}: unknown benchmark file format",
                     hint=f"give a .tsv, .parquet, .json or .jsonl file or a save_to_disk folder ({', '.join(FORMATS)})")


def _tsv(path: Path) -> list[dict[str, Any]]:
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if not reader.fieldnames:
            raise InputError(f"{path} is empty (no header line)", hint="is this a VLMEvalKit TSV?")
        # pandas writes NaN as an empty field: absent, as VLMEvalKit reads it
        return [{k: (None if v == "" else v) for k, v in row.items() if k is not None} for row in reader]


def _parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    files: Sequence[Path] = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    rows: list[dict[str, Any]] = []
    for f in files:
        try:
            rows += pq.read_table(f).to_pylist()
        except Exception as e:  # pyarrow raises its own error types for damaged files
            raise InputError(f"{f} is not a readable parquet file: {e}", hint="download it again") from e
    return rows


def _disk(path: Path, split: str | None) -> list[dict[str, Any]]:
    import pyarrow as pa

    dict_file = path / "dataset_dict.json"
    if dict_file.is_file():
        splits = json.loads(dict_file.read_text()).get("splits", [])
        chosen = split if split in splits else (splits[0] if len(splits) == 1 else None)
        if chosen is None:
            raise InputError(f"{path} holds splits {', '.join(splits)}; which one?",
                             hint=f"point --data at {path}/<split> or pass bench.split=<split>")
        path = path / chosen
    files = sorted(path.glob("*.arrow"))
    if not files:
        raise InputError(f"{path} has no .arrow files", hint="is this a datasets save_to_disk folder?")
    rows: list[dict[str, Any]] = []
    for f in files:
        with pa.memory_map(str(f)) as source:
            try:
                table = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                table = pa.ipc.open_file(source).read_all()
        rows += table.to_pylist()
    return rows


def _json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        if path.suffix == ".json":  # a JSONL file named .json
            try:
                return _jsonl(path)
            except InputError:
                pass
        raise InputError(f"{path} is not JSON: {e}", hint="download it again") from e
    if isinstance(data, dict):
        values = list(data.values())
        if values and all(isinstance(v, dict) for v in values):  # keyed by id (MathVista)
            return [{"_key": k, **v} for k, v in data.items()]
        for key in ("data", "annotations", "questions"):
            if isinstance(data.get(key), list):
                return list(data[key])
        return [data]
    if isinstance(data, list):
        return data
    raise InputError(f"{path}: expected a list or an object of records", hint="is this the benchmark's annotation file?")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                rows.append({"_malformed": f"line {n} is not JSON"})
    return rows
