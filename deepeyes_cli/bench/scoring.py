"""Each benchmark's own scoring rule for one prediction, where it differs from ours.

:func:`official` returns the benchmark's verdict, or None when the benchmark itself would
ask a model (VLMEvalKit's option matcher, MathVista/MathVerse answer extraction): those
go to ``rewards/`` (rules first, then the cached judge). Written from the descriptions in
the reference (VLMEvalKit's ``can_infer``, MME-RealWorld's ``extract_characters_regex``,
OCRBench's containment, MathVista's normalisation, SQuAD F1 for MMSearch, InfoSeek's
exact match and numeric ranges).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deepeyes_cli.bench.items import BenchItem

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Official:
    score: float  # 1/0, or a fraction (F1)
    rule: str


# ---------------------------------------------------------------- multiple choice (VLMEvalKit)

_REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
             "I'm sorry, but without the image provided", "Cannot determine the answer")


def can_infer_option(answer: str, choices: Mapping[str, str]) -> str | None:
    """One option letter standing as a word among the last five words of the answer."""
    if any(r in answer for r in _REFUSALS):
        return "Z"
    words = answer
    for ch in ".()[],:;!*#{}":
        words = words.replace(ch, " ")
    splits = words.split()
    found = [c for c in choices if c in splits]
    if len(found) == 1 and splits.index(found[0]) > len(splits) - 5:
        return found[0]
    if not found and "Z" in splits:
        return "Z"
    return None


def can_infer_text(answer: str, choices: Mapping[str, str]) -> str | None:
    """The one option whose text the answer contains."""
    low = answer.lower()
    hits = [k for k, v in choices.items() if str(v).lower() in low]
    return hits[0] if len(hits) == 1 else None


def can_infer(answer: str, choices: Mapping[str, str]) -> str | None:
    return can_infer_option(answer, choices) or can_infer_text(answer, choices)


def letter_choices(options: Sequence[str]) -> dict[str, str]:
    return {LETTERS[i]: o for i, o in enumerate(options)}


# ---------------------------------------------------------------- MME-RealWorld

_MME_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer", "The best option is",
                 "The correct option is", "Best answer:", "Best option:")


def extract_characters_regex(s: str, options: Sequence[str]) -> str:
    """MME-RealWorld's rule: strip answer phrases; a long answer without a letter is no
    answer; else the first A-E; else the option whose text contains the answer."""
    s = s.strip()
    for prefix in _MME_PREFIXES:
        s = s.replace(prefix, "")
    if len(s.split()) > 10 and not re.search("[ABCDE]", s):
        return ""
    m = re.search("[ABCDE]", s)
    if m is None:
        for i, o in enumerate(options):
            if s and s.lower() in f"({LETTERS[i]}) {o}".lower():
                return LETTERS[i]
        return ""
    return m.group(0)


# ---------------------------------------------------------------- OCRBench

def ocrbench_hit(prediction: str, answers: Sequence[str], hmer: bool) -> bool:
    if hmer:
        pred = re.sub(r"\s+", "", prediction)
        return any(re.sub(r"\s+", "", a) in pred for a in answers)
    pred = prediction.lower().strip().replace("\n", " ")
    return any(a.lower().strip().replace("\n", " ") in pred for a in answers)


OCR_RECOGNITION = ("Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
                   "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition")


def ocrbench_group(category: str) -> str:
    """The Final Score's five groups: the six recognition types count as one."""
    return "Text Recognition" if category in OCR_RECOGNITION else category


# ---------------------------------------------------------------- MathVista

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?|-?\.\d+")


def _first_number(text: str) -> float | None:
    m = _NUMBER.findall(text.replace("\u2212", "-"))
    if len(m) != 1:  # none, or several: extraction is the judge's job
        return None
    try:
        return float(m[0].replace(",", ""))
    except ValueError:
        return None


def mathvista_normalize(prediction: str, item: BenchItem) -> str | None:
    """MathVista's ``normalize_extracted_answer`` over a rule-based extraction; None when no
    rule can extract (the official pipeline then asks GPT-4)."""
    qtype, atype = item.meta.get("question_type"), item.meta.get("answer_type")
    if qtype == "multi_choice" and item.choices:
        options = letter_choices(item.choices)
        letter = can_infer(prediction, options)  # an option's letter, "Z" (a refusal) or None
        return None if letter is None else options.get(letter)  # pragma: no mutate (options.get(None) is None too)
    x = _first_number(prediction)
    if atype == "integer":
        return None if x is None else str(int(x))
    if atype == "float":
        if x is None:
            return None
        precision = item.meta.get("precision")
        return str(round(x, int(precision))) if precision is not None else str(x)
    if atype == "list":
        return None
    return prediction.strip() or None


def mathvista_equal(normalized: str, item: BenchItem) -> bool:
    if item.meta.get("answer_type") == "float" and item.meta.get("precision") is not None:
        try:
            reference = float(item.answer or "")  # pragma: no mutate (float() refuses "" as it refuses "XXXX")
            return str(round(reference, int(item.meta["precision"]))) == normalized
        except ValueError:
            pass
    return normalized.strip() == (item.answer or "").strip()


# ---------------------------------------------------------------- SQuAD-style EM / F1

def normalize_squad(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def token_f1(prediction: str, truth: str) -> float:
    p, t = normalize_squad(prediction).split(), normalize_squad(truth).split()
    common = Counter(p) & Counter(t)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(t)
    return 2 * precision * recall / (precision + recall)


def max_f1(prediction: str, truths: Sequence[str]) -> float:
    return max((token_f1(prediction, t) for t in truths), default=0.0)


def exact_match(prediction: str, truths: Sequence[str]) -> bool:
    p = normalize_squad(prediction)
    return bool(p) and any(p == normalize_squad(t) for t in truths)


# ---------------------------------------------------------------- InfoSeek

def infoseek_numeric(prediction: str, refs: Sequence[object]) -> bool | None:
    x = _first_number(prediction)
    if x is None:
        return None
    for r in refs:
        if isinstance(r, dict):
            rng = r.get("range")
            if isinstance(rng, list | tuple) and len(rng) == 2:
                lo, hi = float(rng[0]), float(rng[1])
            else:
                v = float(r.get("wikidata", 0))
                lo, hi = v * 0.9, v * 1.1
            if min(lo, hi) <= x <= max(lo, hi):
                return True
        else:
            try:
                v = float(str(r))
            except ValueError:
                continue
            if min(v * 0.9, v * 1.1) <= x <= max(v * 0.9, v * 1.1):
                return True
    return False


# ---------------------------------------------------------------- SimpleVQA

_NOT_ATTEMPTED = re.compile(r"(?i)\b(i\s+(?:do\s+not|don't|cannot|can't)\s+(?:know|tell|determine|answer)|"
                            r"unknown|not\s+sure|unsure|cannot\s+be\s+determined|no\s+idea)\b|不知道|无法(?:确定|回答|判断)")


def attempted(prediction: str | None) -> bool:
    return prediction is not None and bool(prediction.strip()) and not _NOT_ATTEMPTED.search(prediction)


# ---------------------------------------------------------------- dispatch

def _references(item: BenchItem) -> list[str]:
    """Every acceptable answer; none when the item has no reference (an empty one would be
    contained in every prediction)."""
    return item.answers or ([item.answer] if item.answer else [])


def official(scorer: str, item: BenchItem, prediction: str) -> Official | None:
    """The benchmark's verdict on ``prediction``, or None to let rewards/ decide."""
    if scorer == "mcq" and item.choices:
        letter = can_infer(prediction, letter_choices(item.choices))
        if letter is not None and letter != "Z":
            return Official(float(letter == item.answer), "can_infer")
        return None
    if scorer == "mme" and item.choices:
        letter = extract_characters_regex(prediction, item.choices)
        return Official(float(letter == item.answer), "extract_characters_regex" if letter else "no_option")
    if scorer == "ocrbench":
        hmer = item.meta.get("dataset_name") == "HME100k" or "HME" in item.category
        return Official(float(ocrbench_hit(prediction, _references(item), hmer)),
                        "hmer_contains" if hmer else "contains")
    if scorer == "mathvista":
        norm = mathvista_normalize(prediction, item)
        return None if norm is None else Official(float(mathvista_equal(norm, item)), "normalize_extracted_answer")
    if scorer == "mathverse":
        return Official(1.0, "prefetch_equal") if prediction.strip() == (item.answer or "").strip() else None
    if scorer == "f1":
        return Official(round(max_f1(prediction, _references(item)), 6), "token_f1")
    if scorer == "exact_then_judge":
        return Official(1.0, "exact_match") if exact_match(prediction, item.answers) else None
    if scorer == "infoseek":
        if item.meta.get("question_type") == "NUMERICAL":
            hit = infoseek_numeric(prediction, item.meta.get("answer_eval", []))
            return None if hit is None else Official(float(hit), "numeric_range")
        return Official(float(exact_match(prediction, item.answers)), "exact_match")
    return None  # rewards / simplevqa: rules then the judge
