"""Rows of each benchmark's public files to :class:`BenchItem`, one function per benchmark
family. A row that cannot become an item raises :class:`MalformedRow` (counted and
reported, never fatal). Fields marked UNVERIFIED in the reference are read defensively:
several names are tried, and a missing optional field only loses its breakdown.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepeyes_cli.bench.items import BenchItem
from deepeyes_cli.bench.mcq import LETTERS, mcq_prompt, mme_prompt, rotation_for

Row = dict[str, Any]
Adapter = Callable[[Row, Path], BenchItem]
_INLINE_OPTION = re.compile(r"\(([A-J])\)\s*(.+?)(?=\s*\([A-J]\)|\s*$)", re.S)
_IMAGE_TOKEN = re.compile(r"<image>\s*")


class MalformedRow(ValueError):
    """A row without what its benchmark needs (question, answer, image …)."""


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and v != v) and v != ""


def _get(row: Row, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in row and _present(row[k]):
            return row[k]
    return default


def _need(row: Row, *keys: str) -> Any:
    v = _get(row, *keys)
    if v is None:
        raise MalformedRow(f"no {' / '.join(keys)}")
    return v


def _literal(v: Any) -> Any:
    """A Python/JSON literal stored as text (VLMEvalKit writes lists with repr)."""
    if not isinstance(v, str):
        return v
    s = v.strip()
    if not s or s[0] not in "[{(":
        return v
    try:
        return ast.literal_eval(s)
    except (ValueError, SyntaxError):
        try:
            return json.loads(s)
        except ValueError:
            return v


def _images(row: Row, base: Path, *keys: str) -> list[Any]:
    """The row's image sources: base64 text, a list of them, HF structs, or paths under ``base``."""
    v = _get(row, *keys)
    if v is None:
        return []
    v = _literal(v) if isinstance(v, str) and v.lstrip().startswith("[") else v
    items = v if isinstance(v, list) else [v]
    out: list[Any] = []
    for x in items:
        if isinstance(x, str) and _looks_like_path(x):
            out.append(base / x)
        else:
            out.append(x)
    return out


_IMAGE_SUFFIX = re.compile(r"\.(?:jpe?g|png|gif|bmp|webp|tiff?)$", re.I)
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}$")


def _looks_like_path(s: str) -> bool:
    """A file name rather than base64 (which has no image suffix and decodes in 4-char groups)."""
    if s.startswith("data:"):
        return False
    return bool(_IMAGE_SUFFIX.search(s)) or (len(s) < 512 and not (_BASE64.match(s) and len(s.strip()) % 4 == 0))


def _letter(v: Any, n: int) -> str:
    s = str(v).strip().strip("()").upper()[:1]
    if s not in LETTERS[:n]:
        raise MalformedRow(f"answer {v!r} is not an option letter")
    return s


def _column_options(row: Row) -> list[str]:
    opts = []
    for letter in LETTERS:
        v = row.get(letter)
        if not _present(v):
            break
        opts.append(str(v))
    return opts


def _mcq_item(item_id: str, question: str, options: list[str], answer: Any, images: list[Any],
              category: str, hint: Any = None, **meta: Any) -> BenchItem:
    if len(options) < 2:
        raise MalformedRow("fewer than two options")
    if not images:
        raise MalformedRow("no image")
    return BenchItem(item_id, mcq_prompt(question, options, hint if _present(hint) else None),
                     _letter(answer, len(options)), images, options, category,
                     meta={"raw_question": question, "hint": hint if _present(hint) else None, "style": "vlmeval",
                           **meta})


def mcq_tsv(row: Row, base: Path) -> BenchItem:
    """VLMEvalKit MCQ rows: ``index, image, question, A, B, …, answer[, category, hint]``."""
    idx = str(_need(row, "index"))
    return _mcq_item(idx, str(_need(row, "question")), _column_options(row), _need(row, "answer"),
                     _images(row, base, "image", "image_path"), str(_get(row, "category", default="all")),
                     row.get("hint"))


def vstar(row: Row, base: Path) -> BenchItem:
    if "A" in row and "index" in row:
        return mcq_tsv(row, base)
    if "options" in row:  # an annotation JSON of the original folders (the correct option listed first)
        options = list(row["options"])
        order = rotation_for(str(row["_key"]), len(options))
        shuffled = [options[i] for i in order]
        return _mcq_item(str(row["_key"]), str(_need(row, "question")), shuffled, LETTERS[order.index(0)],
                         [Path(row["_image"])] if row.get("_image") else [], str(row.get("category", "all")))
    text = str(_need(row, "text"))  # test_questions.jsonl / lmms-eval: options inline as "(A) …"
    first = text.find("(A)")
    if first < 0:
        raise MalformedRow("no '(A) …' options in text")
    options = [m.group(2).strip() for m in _INLINE_OPTION.finditer(text[first:])]
    return _mcq_item(str(_get(row, "question_id", "_key", default=row.get("_n"))), text[:first].strip(), options,
                     _need(row, "label", "answer"), _images(row, base, "image"), str(row.get("category", "all")))


def hrbench(row: Row, base: Path) -> BenchItem:
    item = mcq_tsv(row, base)
    item.meta["cycle"] = str(_get(row, "cycle_category", default="0"))
    return item


def mme(row: Row, base: Path) -> BenchItem:
    """MME-RealWorld: the original JSON, the Base64 JSON / Lite TSV, or the lmms-eval parquet."""
    if "Question_id" in row:
        qid, question = str(row["Question_id"]), str(_need(row, "Text"))
        choices, answer = _literal(_need(row, "Answer choices")), _need(row, "Ground truth")
        category = "/".join(str(row[k]) for k in ("Task", "Subtask") if _present(row.get(k))) or "all"
        l2 = str(_get(row, "Category", default=""))
        images = _images(row, base, "Image")
    else:
        qid, question = str(_need(row, "index", "question_id")), str(_need(row, "question"))
        choices, answer = _literal(_need(row, "multi-choice options", "multi_choice_options")), _need(row, "answer")
        category, l2 = str(_get(row, "category", default="all")), str(_get(row, "l2-category", default=""))
        images = _images(row, base, "image", "bytes")
    if not isinstance(choices, list) or len(choices) < 2:
        raise MalformedRow("multi-choice options is not a list")
    if not images:
        raise MalformedRow("no image")
    options = [re.sub(r"^\([A-J]\)\s*", "", str(c)) for c in choices]
    prompt = mme_prompt(question, options)
    if "attribute" in l2.lower():
        l2 = l2.split("/")[0] + "/attribute"  # as the official aggregation merges them
    return BenchItem(qid, prompt, _letter(answer, len(options)), images, options, category,
                     meta={"l2": l2, "raw_question": question, "style": "mme"})


def ocrbench(row: Row, base: Path) -> BenchItem:
    answers = _literal(_need(row, "answers", "answer"))
    answers = [str(a) for a in answers] if isinstance(answers, list | tuple) else [str(answers)]
    images = _images(row, base, "image", "image_path")
    if not images:
        raise MalformedRow("no image")
    qtype = str(_get(row, "type", "question_type", "category", default="all"))
    return BenchItem(str(_get(row, "id", "index", default=row.get("_n"))), str(_need(row, "question")), answers[0],
                     images, None, qtype, answers,
                     meta={"dataset_name": str(_get(row, "dataset_name", "dataset", default=""))})


def mathvista(row: Row, base: Path) -> BenchItem:
    meta = _literal(row.get("metadata")) or {}
    meta = meta if isinstance(meta, dict) else {}
    choices = _literal(row.get("choices"))
    choices = [str(c) for c in choices] if isinstance(choices, list | tuple) and len(choices) else None
    qtype = str(_get(row, "question_type", default="free_form"))
    answer = str(_need(row, "answer"))
    option = _get(row, "answer_option")
    if qtype == "multi_choice" and choices and option is None and answer in choices:
        option = LETTERS[choices.index(answer)]
    images = _images(row, base, "decoded_image", "image")
    if not images:
        raise MalformedRow("no image")
    skills = _literal(_get(row, "skills", default=meta.get("skills", [])))
    task = str(_get(row, "task", default=meta.get("task", "all")))
    precision = _get(row, "precision")
    return BenchItem(str(_get(row, "pid", "index", "_key", default=row.get("_n"))),
                     str(_get(row, "query", "question")), answer, images, choices, task,
                     meta={"question_type": qtype, "answer_type": str(_get(row, "answer_type", default="text")),
                           "answer_option": option, "precision": None if precision is None else int(float(precision)),
                           "skills": list(skills) if isinstance(skills, list | tuple) else [],
                           "unit": _get(row, "unit")})


def mathverse(row: Row, base: Path) -> BenchItem:
    meta = row.get("metadata")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta.replace("'", '"'))  # as the VLMEvalKit scorer reads it
        except ValueError:
            meta = {}
    meta = meta if isinstance(meta, dict) else {}
    question = _get(row, "question") or _get(row, "query_cot", "query_wo")
    if question is None:
        raise MalformedRow("no question")
    images = _images(row, base, "image", "decoded_image")
    if not images:
        raise MalformedRow("no image")
    return BenchItem(str(_get(row, "sample_index", "index", default=row.get("_n"))), str(question),
                     str(_need(row, "answer")), images, None, str(_get(row, "problem_version", default="all")),
                     meta={"question_type": str(_get(row, "question_type", default="free-form")),
                           "problem_index": str(_get(row, "problem_index", default="")),
                           "subject": meta.get("subject"), "subfield": meta.get("subfield"),
                           "question_for_eval": _get(row, "question_for_eval")})


def mmsearch(row: Row, base: Path) -> BenchItem:
    alts = _literal(row.get("alternative_gt_answers")) or []
    alts = [str(a) for a in alts] if isinstance(alts, list | tuple) else [str(alts)]
    gt = str(_need(row, "gt_answer"))
    return BenchItem(str(_get(row, "sample_id", default=row.get("_n"))), str(_need(row, "query")), gt,
                     _images(row, base, "query_image"), None, str(_get(row, "area", default="all")), [gt, *alts],
                     meta={"subfield": _get(row, "subfield"), "gt_requery": _get(row, "gt_requery")})


def realx(row: Row, base: Path) -> BenchItem:
    flags = [k for k in ("perception", "search", "reason") if str(row.get(k, 0)) in ("1", "True", "true")]
    images = _images(row, base, "image")
    if not images:
        raise MalformedRow("no image")
    answer = str(_need(row, "answer"))
    return BenchItem(str(_get(row, "id", "index", default=row.get("_n"))), str(_need(row, "query", "question")),
                     answer, images, None, "+".join(flags) or "none",
                     [a.strip() for a in re.split(r"\s+or\s+", answer) if a.strip()], meta={"flags": flags})


def verl(row: Row, base: Path) -> BenchItem:
    """veRL rows (MMSearch-R1's FVQA/InfoSeek files): prompt, images, reward_model, data_source."""
    prompt = _literal(_need(row, "prompt"))
    if not isinstance(prompt, list) or not prompt:
        raise MalformedRow("prompt is not a list of messages")
    user = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    if not user:
        raise MalformedRow("prompt has no user message")
    question = _IMAGE_TOKEN.sub("", str(user[-1].get("content", ""))).strip()
    rm = _literal(_need(row, "reward_model"))
    if not isinstance(rm, dict) or not _present(rm.get("ground_truth")):
        raise MalformedRow("reward_model has no ground_truth")
    gt = str(rm["ground_truth"])
    cands = _literal(rm.get("candidate_answers")) or []
    cands = [str(c) for c in cands] if isinstance(cands, list | tuple) else []
    images = _images(row, base, "images", "image")
    if not images:
        raise MalformedRow("no image")
    source = str(_get(row, "data_source", default="all"))
    return BenchItem(str(_get(row, "id", "index", default=row.get("_n"))), question, gt, images, None, source,
                     list(dict.fromkeys([gt, *cands])), meta={"question_type": "STRING"})


def infoseek(row: Row, base: Path) -> BenchItem:
    if "prompt" in row and "reward_model" in row:
        return verl(row, base)
    refs = _need(row, "answer_eval")
    refs = refs if isinstance(refs, list) else [refs]
    split = str(_get(row, "data_split", default="all"))
    split = next((s for s in ("unseen_question", "unseen_entity") if split.endswith(s)), split)
    image_id = _get(row, "image_id")
    images = _images(row, base, "image", "image_path")
    if not images and image_id is not None:
        found = [p for ext in (".jpg", ".JPEG", ".jpeg", ".png") for p in [base / "images" / f"{image_id}{ext}"]
                 if p.is_file()]
        images = [found[0]] if found else []
    if not images:
        raise MalformedRow("no image (looked for images/<image_id>.jpg)")
    qtype = str(_get(row, "question_type", default="STRING")).upper()
    first = refs[0]
    answer = str(first.get("wikidata", first)) if isinstance(first, dict) else str(first)
    return BenchItem(str(_get(row, "data_id", default=row.get("_n"))), str(_need(row, "question")), answer, images,
                     None, split, [str(r) for r in refs if not isinstance(r, dict)],
                     meta={"question_type": qtype, "answer_eval": refs})


def simplevqa(row: Row, base: Path) -> BenchItem:
    images = _images(row, base, "image")
    if not images:
        raise MalformedRow("no image")
    return BenchItem(str(_get(row, "data_id", "index", default=row.get("_n"))), str(_need(row, "question")),
                     str(_need(row, "answer")), images, None, str(_get(row, "vqa_category", default="all")),
                     meta={"language": _get(row, "language")})


ADAPTERS: dict[str, Adapter] = {
    "vstar": vstar, "hrbench": hrbench, "mme": mme, "ocrbench": ocrbench, "mathvista": mathvista,
    "mathverse": mathverse, "mmsearch": mmsearch, "realx": realx, "verl": verl, "infoseek": infoseek,
    "simplevqa": simplevqa, "mini": mcq_tsv,
}
