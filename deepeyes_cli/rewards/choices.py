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
_SEVERAL = re.compile(rf"^({_L})(?:\s*(?:,\s*(?:and\b)?|、|&|\band\b|和|与|及)?\s*({_L}))+$")
_LEADING = re.compile(rf"^(?:[(\[（]\s*({_L})\s*[)\]）]|({_L})\s*[.:：、)）])\s*(?=\S)")
# Words match in any case, option letters only as capitals ("answer is a cat" picks nothing).
_PHRASE = re.compile(
    rf"(?i:\banswers?\s*(?:is|are|would\s+be|should\s+be|:)?|\boptions?|\bchoices?|\bchoose|\bselect|\bpick)"
    rf"\s*(?i:is\s+|are\s+)?(?i:options?\s+)?[:：]?\s*[(\[]?({_L})\b[)\]]?"
    rf"|(?:答案|选项|选择|应选|故选|选)\s*(?:是|为|应为|应该是)?\s*[:：]?\s*[(（]?({_L})(?![A-Za-z])"
    rf"|(?<![A-Za-z])({_L})\s*(?:项|选项)")
# "not A", "wouldn't pick A", "except (A)", "A is wrong", "不是A", "A不对": the letter is turned down.
_NEGATED = re.compile(
    rf"(?i:\bnot|n't|\bnever|\bexcept|\bexclude|\brule\s+out)\s+(?:[a-z']+\s+){{0,3}}(?i:option\s+|choice\s+)?"
    rf"[(\[]?({_L})\b"
    rf"|(?<![A-Za-z])({_L})[)\]]?\s+(?:is|was|seems|looks)\s+(?:(?:not|n't)\s+(?:correct|right|the\s+answer)"
    rf"|wrong|incorrect|false)\b|(?<![A-Za-z])({_L})\s+isn't\s+(?:correct|right|the\s+answer)"
    rf"|(?:不是|不选|不应选|排除|并非|非)\s*(?:选项)?\s*[(（]?({_L})(?![A-Za-z])"
    rf"|(?<![A-Za-z])({_L})[)）]?\s*(?:选项)?\s*(?:不对|错误|错了|是错的|不正确)")
# Any option letter standing alone, except the article "A" and the pronoun "I" before a word.
_MENTION = re.compile(rf"(?<![A-Za-z0-9'’_\\-])({_L})(?![A-Za-z0-9'’_-])(?!\s+[a-z])|(?<![A-Za-z0-9'’_\\-])"
                      rf"([B-HJ])(?=\s+[a-z])")
# Words that take back a pick ("Answer: A. Wait, actually B.", "A. No, that's wrong").
_TAKEN_BACK = re.compile(r"(?i:\b(?:wait|actually|hmm|unsure|not\s+sure|either)\b)|等等|其实|不确定")
_DOUBT_AFTER_LABEL = re.compile(r"(?i:\b(?:no|not|wrong|incorrect|false|but|however)\b)|不|错|但")
# Letters joined to a stated answer ("B and C", "B、C"); not the pronoun in "B, I think".
_MORE_LETTERS_RUN = re.compile(rf"(?:\s*(?:,\s*(?:(?i:and)\b)?|、|&|(?i:and)\b|和|与|及)\s*[(\[（]?(?!I\s+[a-z]|I[’']){_L}\b[)\]）]?)*")
_MORE_LETTERS = re.compile(rf"(?<![A-Za-z]){_L}(?![A-Za-z])")
_OPTION_WORD = re.compile(r"^(?i:option|choice)\s+|^选项\s*")
_OPTION_B = re.compile(r"[(（]B[)）]|(?:^|\n)\s*B[.:：、)）]")
_OPTION_LINE = re.compile(rf"(?:^|\n)\s*[(（]?({_L})[)）.:：、]\s*([^\n]+)")
_OPTION_INLINE = re.compile(rf"[(（]({_L})[)）]\s*(.+?)(?=\s*[(（]{_L}[)）]|\s*$)", re.S)


@dataclass(frozen=True)
class ChoiceRead:
    picked: frozenset[str]
    rejected: frozenset[str]
    # Letters mentioned but neither picked nor turned down ("A or B", "C. D"), or a pick
    # taken back ("wait, actually"): a reader cannot be sure of the pick.
    others: frozenset[str] = frozenset()
    unsure: bool = False


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
    rejections = [(m.span(), x) for m in _NEGATED.finditer(text) for x in _letters(m.groups())]
    mentions = [(m.start(), m.group(1) or m.group(2)) for m in _MENTION.finditer(text)]
    # A letter is rejected when every mention of it is inside a rejection: "not A; the answer is A" is not.
    rejected = frozenset(x for _, x in rejections
                         if all(any(a <= pos < b for (a, b), y in rejections if y == x)
                                for pos, y in mentions if y == x))
    contested = {x for _, x in rejections} - rejected
    picked: set[str] = set()
    stated = [m for m in _PHRASE.finditer(text) if _letters(m.groups())[0] not in rejected]
    after = ""
    if stated:  # the last stated answer wins, with any letters joined to it ("选项B和C", "options B and C")
        last = stated[-1]
        picked = {_letters(last.groups())[0]}
        run = _MORE_LETTERS_RUN.match(text, last.end())  # always matches, maybe empty
        picked.update(set(_MORE_LETTERS.findall(run.group(0) if run else "")) - rejected)
        unsure = bool(_TAKEN_BACK.search(text))
    else:
        lead = _LEADING.match(core)
        if lead and (lead.group(1) or lead.group(2)) not in rejected:
            picked = {lead.group(1) or lead.group(2)}
            after = core[lead.end():]
        unsure = bool(_TAKEN_BACK.search(text) or _DOUBT_AFTER_LABEL.search(after))
    others = frozenset(x for _, x in mentions) - picked - rejected
    unsure = unsure or bool(picked & contested)  # "not A; the answer is A"
    return ChoiceRead(frozenset(picked), rejected, others, unsure and bool(picked))


@lru_cache(maxsize=16384)
def gold_letters(ground_truth: str, multi_ok: bool) -> frozenset[str] | None:
    """The letters a ground truth names ("B", "(B)", "B. cat"; "BC" only when ``multi_ok``)."""
    core = _OPTION_WORD.sub("", answer_core(ground_truth))
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
