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

from deepeyes_cli.rewards.choices import (
    gold_letters,
    letter_of_text,
    options_from_question,
    read_choice,
    strip_option_label,
)
from deepeyes_cli.rewards.mathcheck import looks_like_math, math_equal
from deepeyes_cli.rewards.normalize import all_boxed, answer_core, normalize_text
from deepeyes_cli.rewards.numbers import Quantity, numbers_agree, numbers_in, parse_quantity

_ALTERNATIVES = re.compile(r"\s+or\s+|\s*或者?\s*", re.I)
# Words that make "the one number in a sentence" unsafe to take as the answer: negations,
# hedges, comparisons, ranges and scales ("not 12", "about 12", "more than 12", "12 or so",
# "12 million", "3个以上", "大约3个").
_UNSURE_NUMBER = re.compile(
    r"(?i:\b(?:not|no|never|neither|nor|isn't|aren't|wasn't|weren't|cannot|can't|except|without|wrong|"
    r"incorrect|false|about|around|approximately|approx|roughly|nearly|almost|over|under|above|below|more|"
    r"less|fewer|greater|larger|smaller|higher|lower|least|most|up|between|within|minus|negative|plus|"
    r"maybe|perhaps|probably|possibly|likely|unlikely|guess|estimate|estimated|doubt|unsure|uncertain|or|"
    r"either|range|hundred|thousand|million|billion|trillion|k|m|bn|dozen|dozens|times)\b)"
    r"|不|没有|并非|非|除了|约|大概|左右|上下|以上|以下|以内|多|余|超过|至少|最多|将近|接近|几|少于|大于|小于|"
    r"高于|低于|也许|可能|或|错|[百千万亿]|[<>≤≥~≈±+?？]")
_YES_EN = frozenset({"yes", "yeah", "yep", "true", "correct", "right"})
_NO_EN = frozenset({"no", "nope", "false", "incorrect", "wrong"})
# After a leading yes/no, words that turn it into a hedge or its opposite ("Yes, but…",
# "No doubt", "Yes, it isn't").
_HEDGE_EN = frozenset({"but", "however", "although", "though", "sure", "idea", "doubt", "maybe", "perhaps",
                       "partly", "partially", "problem", "question", "wonder", "matter", "way", "wait",
                       "actually"})
# The words that may follow "yes"/"no" without a comma and keep it a plain answer ("No it is not").
_PLAIN_NEXT = frozenset({"it", "it's", "its", "there", "there's", "they", "he", "she", "this", "that", "the",
                         "i", "we", "you"})
_YES_ZH = ("是的", "对的", "正确", "可以", "是", "对", "有", "能", "会")
_NO_ZH = ("不是", "不对", "不正确", "错误", "没有", "不能", "不会", "不可以", "否", "错", "无", "不")
_ZH_AFTER_YES = re.compile(r"不|没|否|非|无|但|不过|可是|然而|也许|可能|或许|大概|不确定|不一定")
_ZH_AFTER_NO = re.compile(r"是的|对的|正确|但|不过|可是|然而|也许|可能|或许|大概|不确定|不一定")
_ZH_END = re.compile(r"[,，。.!！;；\s]|$")
_SPACES = re.compile(r"\s+")
_ONE_SEPARATOR = re.compile(r"([-−])?(\d{1,3})([.,])(\d{3})")
_SHORT_SENTENCE = 100  # characters: "There are 12 apples in the picture." is read, a paragraph is not


@dataclass(frozen=True)
class Verdict:
    correct: bool | None  # None: no rule is confident; the judge decides
    rule: str  # the rule that decided, or why none could


def match_answer(prediction: str, ground_truth: str, *, question: str = "",
                 choices: Sequence[str] | None = None, rel_tol: float = 0.0, alternatives: bool = True) -> Verdict:
    """Compare a model's answer with the reference answer by rules. With ``alternatives`` a
    ground truth "A or B" accepts either one."""
    core = answer_core(prediction)
    if not core:
        return Verdict(False, "empty_answer")
    if "boxed" in prediction and len({_SPACES.sub("", b) for b in all_boxed(prediction)}) > 1:
        return Verdict(None, "several_boxed")  # "\boxed{A} or \boxed{B}": the judge reads it
    options = tuple(choices) if choices else options_from_question(question) if question else None
    whole = _match_one(prediction, core, ground_truth, options, rel_tol)
    parts = [a for a in _ALTERNATIVES.split(ground_truth.strip()) if a.strip()] if alternatives else []
    # "x=2 or x=3" is one answer (a solution set), not two acceptable ones.
    if whole.correct is True or len(parts) < 2 or any(looks_like_math(a.strip()) for a in parts):
        return whole
    verdicts = [_match_one(prediction, core, alt, options, rel_tol) for alt in parts]
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
    if parse_quantity(gt_core) is not None:
        return Verdict(None, "no_rule")  # the number rule declined (">12", "≈12"): text equality must not decide
    if core.casefold() == gt_core.casefold():
        return Verdict(True, "exact")  # "a" is the answer here, not an article to fold away
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
    if read.picked:
        # "(B) No" where option B is "No" is a plain pick, though "No" alone would sound like doubt.
        spelled_out = options is not None and \
            frozenset(letter_of_text(strip_option_label(core), options) or "") == read.picked
        if not read.others and (not read.unsure or spelled_out):
            return Verdict(read.picked == gold, "choice_letter")
        if gold.isdisjoint(read.picked | read.others):
            return Verdict(False, "choice_letter")  # whatever it settles on, it never names the answer
        return Verdict(None, "choice_unsure")  # "A or B", "Answer: A. Wait, actually B."
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
        if not (yes or no) or not s.startswith(first):
            return None if s[:1].isascii() else _yes_no_zh(s, whole)
        after = s[len(first):]
        if after and after[0] not in " ,.!;:":
            return None  # "yes-ish", "yes/no", "no?"
        if len(words) > 1 and after[0] == " " and words[1] not in _PLAIN_NEXT:
            return None  # "No doubt", "No problem", "Yes please": not a plain answer
        rest = set(words[1:])
        # "Yes, but…", "Yes, it isn't", "No, that's right" are hedges or contradictions.
        against = (_NO_EN | {"not", "never", "neither", "nor", "cannot"} | {w for w in rest if w.endswith("n't")}
                   if yes else _YES_EN)
        return None if rest & (against | _HEDGE_EN) else yes
    return _yes_no_zh(s, whole)


def _yes_no_zh(s: str, whole: bool) -> bool | None:
    for answer, keys in ((False, _NO_ZH), (True, _YES_ZH)):  # 不是 before 是
        for k in keys:
            if s.startswith(k) and _ZH_END.match(s, len(k)) and (not whole or len(s) == len(k)):
                # "是，但也不是", "不是，但…": the rest takes it back
                return None if (_ZH_AFTER_YES if answer else _ZH_AFTER_NO).search(s, len(k)) else answer
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
        agree = numbers_agree(gold, said, tol)
        if agree is False and _other_convention(core) == gold.value:
            return Verdict(None, "number_unsure")  # "1.000" is 1000 where "." groups thousands, "1,500" is 1.5
        return _number_verdict(agree, "number")
    if looks_like_math(core) or _UNSURE_NUMBER.search(core) or len(core) > _SHORT_SENTENCE:
        return None  # in a long text the one number may count something else: the judge reads it
    numbers = numbers_in(core)
    found: dict[float, Quantity] = {q.value: q for q in numbers or ()}
    if len(found) != 1:
        return None  # none, unreadable ("12th", a date) or several ("10 to 12"): the judge reads it
    (q,) = found.values()
    if len({x.unit for x in numbers or ()} - {None}) > 1 or gold.same_unit(q) is False:
        return None  # "12 mm" in the sentence, "12 cm" in the reference
    return _number_verdict(numbers_agree(gold, q, tol), "number_in_text")


def _other_convention(text: str) -> float | None:
    """The value of "1.000" / "1,500" read with the other decimal convention (1000 / 1.5)."""
    m = _ONE_SEPARATOR.fullmatch(text.strip())
    if m is None:
        return None
    sign = -1 if m.group(1) else 1
    return sign * (float(m.group(2) + m.group(4)) if m.group(3) == "." else float(f"{m.group(2)}.{m.group(4)}"))


def _number_verdict(agree: bool | None, rule: str) -> Verdict:
    return Verdict(agree, rule if agree is not None else f"{rule}_unsure")
