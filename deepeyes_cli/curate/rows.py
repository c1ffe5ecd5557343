"""One raw row to the fields of a :class:`Sample`, whatever layout it came in.

Recognised without options: plain rows (``question``/``answer``/``image``… and the usual
synonyms), the released DeepEyesV2 RL parquet and our verl export (``prompt``,
``reward_model.ground_truth``, ``extra_info``), LLaMA-Factory sharegpt (``messages`` +
``images``; the answer is the last ``<answer>``), our trajectory JSONL (``sample``) and
RealX-Bench-style parquet. ``ColumnMap`` names the columns of any other layout.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from deepeyes_cli.curate.config import ColumnMap

QUESTION = ("question", "problem", "query", "Question", "instruction", "text")
ANSWER = ("answer", "solution", "label", "ground_truth", "gt", "Answer", "final_answer")
IMAGE = ("images", "image", "image_path", "image_paths", "img", "img_path", "image_file")
ID = ("id", "question_id", "qid", "uid", "idx", "index", "sample_id")
SOURCE = ("data_source", "source", "category", "task")
CHOICES = ("choices", "options")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
_IMAGE_TAG = "<image>"


@dataclass
class RowFields:
    question: Any = None
    answer: Any = None
    images: list[Any] = field(default_factory=list)  # paths, bytes, {bytes, path} structs, PIL images
    id: Any = None
    data_source: Any = None
    choices: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    sample: dict[str, Any] | None = None  # a whole Sample (our own exports): taken as it is


def _first(row: dict[str, Any], names: tuple[str, ...], given: str | None) -> tuple[str | None, Any]:
    if given is not None:
        return given, _dig(row, given)
    for n in names:
        if n in row and row[n] is not None:
            return n, row[n]
    return None, None


def _dig(row: dict[str, Any], dotted: str) -> Any:
    cur: Any = row
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _strip_placeholders(text: str) -> str:
    return text.replace(_IMAGE_TAG, "").strip()


def from_row(row: dict[str, Any], cols: ColumnMap) -> RowFields:
    if isinstance(row.get("sample"), dict) and "schema_version" in row:  # our trajectory record
        return RowFields(sample=row["sample"])
    extra: dict[str, Any] = row["extra_info"] if isinstance(row.get("extra_info"), dict) else {}
    if isinstance(extra.get("sample"), str):  # our verl export: the sample rides along whole
        return _with_images(RowFields(sample=json.loads(extra["sample"])), row.get("images"))
    if isinstance(row.get("sample"), str) and "messages" in row:  # our sharegpt export
        users = [m for m in row["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        n = str(users[0].get("content", "")).count(_IMAGE_TAG) if users else 0  # later ones are tool results
        return _with_images(RowFields(sample=json.loads(row["sample"])), _as_list(row.get("images"))[:n])
    if "prompt" in row and isinstance(row.get("reward_model"), dict) and cols.question is None:
        return _verl_row(row, extra, cols)
    if isinstance(row.get("messages"), list) and cols.question is None:
        return _sharegpt_row(row, cols)
    used: set[str] = set()
    out = RowFields()
    for attr, names in (("question", QUESTION), ("answer", ANSWER), ("id", ID), ("data_source", SOURCE),
                        ("choices", CHOICES)):
        name, value = _first(row, names, getattr(cols, attr))
        if name:
            used.add(name.split(".")[0])
        setattr(out, attr, value)
    name, value = _first(row, IMAGE, cols.image)
    if name:
        used.add(name.split(".")[0])
    out.images = _as_list(value)
    out.metadata = {k: v for k, v in row.items() if k not in used and k != "metadata" and _jsonable(v)}
    if isinstance(row.get("metadata"), dict):
        out.metadata.update(row["metadata"])
    return out


def _with_images(out: RowFields, images: Any) -> RowFields:
    """Our exports carry the pixels in their own image column: they replace the sample's paths."""
    if out.sample is not None and images is not None:
        out.images = _as_list(images)
        out.sample = {**out.sample, "images": []}
    return out


def _images_col(row: dict[str, Any], cols: ColumnMap) -> Any:
    return row.get(cols.image) if cols.image and cols.image in row else row.get("images")


def _verl_row(row: dict[str, Any], extra: dict[str, Any], cols: ColumnMap) -> RowFields:
    question = extra.get("question")
    if not question:
        users = [m.get("content") for m in row.get("prompt") or [] if isinstance(m, dict) and m.get("role") == "user"]
        question = _strip_placeholders(str(users[0])) if users else None
    meta = {k: v for k, v in extra.items() if k not in ("question", "index") and _jsonable(v)}
    for k in ("env_name", "ability"):
        if row.get(k) is not None:
            meta[k] = row[k]
    return RowFields(question=question, answer=(row.get("reward_model") or {}).get("ground_truth"),
                     images=_as_list(_images_col(row, cols)), id=extra.get("index", row.get("id")),
                     data_source=row.get("data_source"), metadata=meta)


def _sharegpt_row(row: dict[str, Any], cols: ColumnMap) -> RowFields:
    msgs = [m for m in row["messages"] if isinstance(m, dict)]
    role = "role" if any("role" in m for m in msgs) else "from"
    text = "content" if any("content" in m for m in msgs) else "value"
    users = [m.get(text) for m in msgs if m.get(role) in ("user", "human")]
    bots = [str(m.get(text) or "") for m in msgs if m.get(role) in ("assistant", "gpt")]
    answer = None
    for b in reversed(bots):
        found = _ANSWER_TAG.findall(b)
        if found:
            answer = found[-1].strip()
            break
    _, ident = _first(row, ID, cols.id)
    _, source = _first(row, SOURCE, cols.data_source)
    return RowFields(question=_strip_placeholders(str(users[0])) if users else None, answer=answer,
                     images=_as_list(_images_col(row, cols)), id=ident, data_source=source,
                     metadata={"turns": len(msgs)})
