"""Multiple-choice answers: which option letters a prediction picks, in any dress.

``B``, ``(B)``, ``B.``, ``B) cat``, ``\\boxed{B}``, "the answer is B", "Option B", "答案是B",
"选B", "B项" all pick B; "BC", "B, C" and "B and C" pick two; "not A" / "不是A" rejects A.
A capital letter inside ordinary prose ("A man is …") is never read as a pick: only the
whole answer, a leading option label, or an explicit answer phrase counts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from deepeyes_cli.rewards.normalize import answer_core, normalize_text

LETTERS = "ABCDEFGHIJ"
_L = "[A-J]"
_ALONE = re.compile(rf"^[(\[（]?\s*({_L})\s*[)\]）]?\s*[.:：、]?$", re.I)
_SEVERAL = re.compile(rf"^({_L})(?:\s*(?:,|、|&|\band\b|和|与|及)?\s*({_L}))+$")
_LEADING = re.compile(rf"^(?:[(\[（]\s*({_L})\s*[)\]）]|({_L})\s*[.:：、)）])\s*(?=\S)")
# Words match in any case, option letters only as capitals ("answer is a cat" picks nothing).
_PHRASE = re.compile(
    rf"(?i:\banswers?\s*(?:is|are|would\s+be|should\s+be|:)?|\boptions?|\bchoices?|\bchoose|\bselect|\bpick)"
    rf"\s*(?i:is\s+|are\s+)?(?i:options?\s+)?[:：]?\s*[(\[]?({_L})\b[)\]]?"
    rf"|(?:答案|选项|选择|应选|故选|选)\s*(?:是|为|应为|应该是)?\s*[:：]?\s*[(（]?({_L})(?![A-Za-z])"
    rf"|(?<![A-Za-z])({_L})\s*(?:项|选项)")
_NEGATED = re.compile(
    rf"(?i:\bnot|\bisn'?t|\bexcept|\bexclude|\brule\s+out|\bnever)\s+(?i:option\s+|choice\s+)?[(\[]?({_L})\b"
    rf"|(?:不是|不选|不应选|排除|并非|非)\s*(?:选项)?\s*[(（]?({_L})(?![A-Za-z])")
_MORE_LETTERS_RUN = re.compile(rf"(?:\s*(?:,|、|&|(?i:and)|和|与|及)\s*[(\[（]?{_L}\b[)\]）]?)*")
_MORE_LETTERS = re.compile(_L)
_OPTION_B = re.compile(r"[(（]B[)）]|(?:^|\n)\s*B[.:：、)）]")
_OPTION_LINE = re.compile(rf"(?:^|\n)\s*[(（]?({_L})[)）.:：、]\s*([^\n]+)")
_OPTION_INLINE = re.compile(rf"[(（]({_L})[)）]\s*(.+?)(?=\s*[(（]{_L}[)）]|\s*$)", re.S)


@dataclass(frozen=True)
class ChoiceRead:
    picked: frozenset[str]
    rejected: frozenset[str]


def _letters(groups: tuple[str | None, ...]) -> list[str]:
    return [g for g in groups if g]


@lru_cache(maxsize=65536)
def read_choice(prediction: str) -> ChoiceRead:
    """The option letters a prediction picks and those it explicitly rejects."""
    core = answer_core(prediction)
    m = _ALONE.match(core)
    if m and (m.group(1).isupper() or len(core) <= 3):
        return ChoiceRead(frozenset(m.group(1).upper()), frozenset())
    compact = core.replace(" ", "")
    if _SEVERAL.match(core) or (2 <= len(compact) <= len(LETTERS) and re.fullmatch(f"{_L}+", compact)):
        return ChoiceRead(frozenset(compact.translate(str.maketrans("", "", ",、&和与及")).replace("and", "")),
                          frozenset())
    text = unicodedata.normalize("NFKC", prediction)
    rejected = frozenset(x for m in _NEGATED.finditer(text) for x in _letters(m.groups()))
    stated = [m for m in _PHRASE.finditer(text) if _letters(m.groups())[0] not in rejected]
    if stated:  # the last stated answer wins, with any letters joined to it ("选项B和C", "options B and C")
        last = stated[-1]
        picked = {_letters(last.groups())[0]}
        run = _MORE_LETTERS_RUN.match(text, last.end())  # always matches, maybe empty
        picked.update(_MORE_LETTERS.findall(run.group(0) if run else ""))
        return ChoiceRead(frozenset(picked), rejected)
    lead = _LEADING.match(core)
    if lead:
        letter = lead.group(1) or lead.group(2)
        if letter not in rejected:
            return ChoiceRead(frozenset(letter), rejected)
    return ChoiceRead(frozenset(), rejected)


def gold_letters(ground_truth: str, multi_ok: bool) -> frozenset[str] | None:
    """The letters a ground truth names ("B", "(B)", "B. cat"; "BC" only when ``multi_ok``)."""
    core = answer_core(ground_truth)
    m = _ALONE.match(core)
    if m and m.group(1).isupper():
        return frozenset(m.group(1))
    lead = _LEADING.match(core)
    if lead:
        return frozenset(lead.group(1) or lead.group(2))
    compact = re.sub(r"[\s,、&]|and", "", core)
    if multi_ok and 2 <= len(compact) <= len(LETTERS) and re.fullmatch("[A-J]+", compact) \
            and len(set(compact)) == len(compact):
        return frozenset(compact)
    return None


@lru_cache(maxsize=16384)
def options_from_question(question: str) -> tuple[str, ...] | None:
    """Option texts listed in a question ("A. cat\\nB. dog" or "(A) cat (B) dog"), if any."""
    if not _OPTION_B.search(question):
        return None  # no option B, no options: skips the costlier scans below for most questions
    for pattern in (_OPTION_LINE, _OPTION_INLINE):
        found = [(m.group(1).upper(), m.group(2).strip()) for m in pattern.finditer(question)]
        letters = [x for x, _ in found]
        if len(found) >= 2 and letters == list(LETTERS[: len(found)]):
            return tuple(t for _, t in found)
    return None


def strip_option_label(option: str) -> str:
    m = _LEADING.match(option.strip())
    return option.strip()[m.end():] if m else option.strip()


def letter_of_text(text: str, options: Sequence[str]) -> str | None:
    """The letter of the single option whose text equals ``text`` after normalization."""
    want = normalize_text(answer_core(text))
    if not want:
        return None
    hits = [LETTERS[i] for i, opt in enumerate(options[: len(LETTERS)])
            if normalize_text(strip_option_label(opt)) == want]
    return hits[0] if len(hits) == 1 else None
