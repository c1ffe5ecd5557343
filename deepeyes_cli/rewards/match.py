"""Rule-based answer matching: a verdict when a rule is confident, otherwise "ask the judge".

Order: multiple choice (letters, option text, rejections) → yes/no → numbers (units,
thousands separators, percentages, tolerance) → normalized text → math (math-verify).
Ground truths listing alternatives ("Paris or Lyon", "12或13") match when any one does.

Rules only say "correct" on strong evidence (same option, same number, same normalized
text, proven-equal math) and "wrong" only where the answer's structure makes that safe (a
different option letter, a different number with nothing else to read, a rejected option,
a different yes/no). Everything else is ``correct=None``: the judge decides.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from deepeyes_cli.rewards.choices import gold_letters, letter_of_text, options_from_question, read_choice
from deepeyes_cli.rewards.mathcheck import looks_like_math, math_equal
from deepeyes_cli.rewards.normalize import (
    Quantity,
    answer_core,
    normalize_text,
    numbers_agree,
    numbers_in,
    parse_quantity,
)

_ALTERNATIVES = re.compile(r"\s+or\s+|\s*或者?\s*", re.I)
_NEGATION = re.compile(r"(?i:\b(?:not|no|never|neither|nor|isn't|aren't|wasn't|weren't|cannot|can't|"
                       r"except|without)\b)|不是|不|没有|并非|非|除了")
_SCALE_WORDS = re.compile(r"(?i:\b(?:hundred|thousand|million|billion|trillion|k|m|bn|dozen)\b)|[百千万亿]")
_YES_EN = frozenset({"yes", "yeah", "yep", "true", "correct", "right"})
_NO_EN = frozenset({"no", "nope", "false", "incorrect", "wrong"})
_YES_ZH = ("是的", "对的", "正确", "可以", "是", "对", "有", "能", "会")
_NO_ZH = ("不是", "不对", "不正确", "错误", "没有", "不能", "不会", "不可以", "否", "错", "无", "不")
_ZH_END = re.compile(r"[,，。.!！;；\s]|$")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Verdict:
    correct: bool | None  # None: no rule is confident; the judge decides
    rule: str  # the rule that decided, or why none could


def match_answer(prediction: str, ground_truth: str, *, question: str = "",
                 choices: Sequence[str] | None = None, rel_tol: float = 0.01) -> Verdict:
    """Compare a model's answer with the reference answer by rules."""
    core = answer_core(prediction)
    if not core:
        return Verdict(False, "empty_answer")
    options = tuple(choices) if choices else options_from_question(question) if question else None
    whole = _match_one(prediction, core, ground_truth, options, rel_tol)
    alternatives = [a for a in _ALTERNATIVES.split(ground_truth.strip()) if a.strip()]
    if whole.correct is True or len(alternatives) < 2:
        return whole
    verdicts = [_match_one(prediction, core, alt, options, rel_tol) for alt in alternatives]
    for v in verdicts:
        if v.correct:
            return Verdict(True, f"alternatives:{v.rule}")
    if all(v.correct is False for v in verdicts):
        return Verdict(False, "alternatives")
    return Verdict(None, "alternatives_unsure")


def _match_one(prediction: str, core: str, ground_truth: str, options: Sequence[str] | None,
               rel_tol: float) -> Verdict:
    gt_core = answer_core(ground_truth)
    for rule in (_by_choice, _by_yes_no, _by_number):
        v = rule(prediction, core, gt_core, options, rel_tol)
        if v is not None:
            return v
    if looks_like_math(gt_core) or looks_like_math(core):
        # Operators are not punctuation here: "x^2+1" vs "x^2-1" must not fold together.
        if _SPACES.sub("", core).casefold() == _SPACES.sub("", gt_core).casefold():
            return Verdict(True, "exact")
        same = math_equal(gt_core, core)
        return Verdict(None, "no_rule") if same is None else Verdict(same, "math")
    npred = normalize_text(core)
    if npred and npred == normalize_text(gt_core):
        return Verdict(True, "exact")
    return Verdict(None, "no_rule")


def _by_choice(prediction: str, core: str, gt: str, options: Sequence[str] | None, _tol: float) -> Verdict | None:
    gold = gold_letters(gt, multi_ok=options is not None)
    if gold is None and options:
        letter = letter_of_text(gt, options)
        gold = frozenset(letter) if letter else None
    if gold is None:
        return None
    read = read_choice(prediction)
    if read.picked and not (read.picked & read.rejected):
        return Verdict(read.picked == gold, "choice_letter")
    if options:
        letter = letter_of_text(core, options)
        if letter:
            return Verdict(frozenset(letter) == gold, "choice_text")
    if read.rejected and gold <= read.rejected:
        return Verdict(False, "choice_rejected")
    return Verdict(None, "choice_unread")


def _yes_no(text: str, whole: bool) -> bool | None:
    s = unicodedata.normalize("NFKC", text).strip().casefold()
    words = re.findall(r"[a-z']+", s)
    if words:
        first = words[0]
        if whole and len(words) > 1:
            return None
        yes, no = first in _YES_EN, first in _NO_EN
        # "Yes, but no …" or "No idea" is a hedge; "No, it is not." is a plain no.
        if (yes or no) and not (set(words[1:]) & ((_NO_EN | {"not"} if yes else _YES_EN) | {"sure", "idea"})):
            return yes
        if words and s[:1].isascii():
            return None
    for answer, keys in ((False, _NO_ZH), (True, _YES_ZH)):  # 不是 before 是
        for k in keys:
            if s.startswith(k) and _ZH_END.match(s, len(k)) and (not whole or len(s) == len(k)):
                return answer
    return None


def _by_yes_no(prediction: str, core: str, gt: str, _o: Sequence[str] | None, _tol: float) -> Verdict | None:
    gold = _yes_no(gt, whole=True)
    if gold is None:
        return None
    said = _yes_no(core, whole=False)
    return Verdict(None, "yes_no_unread") if said is None else Verdict(said == gold, "yes_no")


def _by_number(prediction: str, core: str, gt: str, _o: Sequence[str] | None, tol: float) -> Verdict | None:
    gold = parse_quantity(gt)
    if gold is None:
        return None
    said = parse_quantity(core)
    if said is not None:
        if gold.same_unit(said) is False:
            return None  # 5 m vs 500 cm: the judge converts
        return Verdict(numbers_agree(gold, said, tol), "number")
    if looks_like_math(core) or _NEGATION.search(core) or _SCALE_WORDS.search(core):
        return None
    found: dict[float, Quantity] = {q.value: q for q in numbers_in(core)}
    if len(found) != 1:
        return None  # none (words?) or several ("between 10 and 12"): the judge reads it
    (q,) = found.values()
    return Verdict(numbers_agree(gold, q, tol), "number_in_text")
