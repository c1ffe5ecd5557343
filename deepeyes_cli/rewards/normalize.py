"""Text and number normalization for answer matching (English and Chinese).

Everything here is a pure function on strings, compiled once, cheap enough to run on every
rollout (the reward benchmark asks for ≥ 5,000 samples/s on one core).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

_BOXED = re.compile(r"\\boxed\s*\{")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
_LEAD_PHRASE = re.compile(
    r"^(?:so\s*,?\s*|therefore\s*,?\s*|thus\s*,?\s*)?(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is|:)\s*"
    r"|^(?:所以|因此)?[，,]?\s*(?:最终|正确)?答案(?:是|为|应为|应该是)?\s*[:：]?\s*", re.I)
_WRAPPERS = re.compile(r"^(?:\*\*|__|`|\"|'|“|‘|「|『|\$)+|(?:\*\*|__|`|\"|'|”|’|」|』|\$)+$")
# Punctuation goes, except "+" (C++, A+) and a point or comma inside a number ("3.5" is not "35").
_PUNCT = re.compile(r"[^\w\s.,+]|_|(?<!\d)[.,]|[.,](?!\d)")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_SPACES = re.compile(r"\s+")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_CJK_GAP = re.compile(r"(?<=[\u3400-\u9fff])\s+|\s+(?=[\u3400-\u9fff])")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` (braces balanced), or None."""
    found = None
    for m in _BOXED.finditer(text):
        depth, start = 1, m.end()
        for i in range(start, len(text)):
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    found = text[start:i]
                    break
    return found


def answer_core(prediction: str) -> str:
    """The answer itself: boxed content, without "the answer is", wrappers or a final period."""
    s = unicodedata.normalize("NFKC", prediction).strip()
    boxed = last_boxed(s) if "boxed" in s else None
    if boxed is not None:
        s = boxed.strip()
    s = _TEXT_CMD.sub(r"\1", s) if "\\" in s else s
    for _ in range(2):
        s = _LEAD_PHRASE.sub("", s).strip()
        s = _WRAPPERS.sub("", s).strip()
        s = s.rstrip("。.!！").strip()
    return s


@lru_cache(maxsize=65536)
def normalize_text(text: str) -> str:
    """Case, width, punctuation, articles and whitespace folded away; CJK runs joined."""
    s = unicodedata.normalize("NFKC", text).casefold()
    s = _PUNCT.sub(" ", s)
    s = _ARTICLES.sub(" ", s)
    s = _SPACES.sub(" ", s).strip()
    if _CJK.search(s):
        s = _CJK_GAP.sub("", s)
    return s


# --------------------------------------------------------------------------- numbers

# Canonical unit for each spelling (lower-cased). Units never convert (5 m vs 500 cm goes to the judge).
_UNIT_ALIASES = {
    "cm": ("cm", "centimeter", "centimeters", "centimetre", "centimetres", "厘米", "公分"),
    "mm": ("mm", "millimeter", "millimeters", "millimetre", "millimetres", "毫米"),
    "m": ("m", "meter", "meters", "metre", "metres", "米"),
    "km": ("km", "kilometer", "kilometers", "kilometre", "kilometres", "公里", "千米"),
    "kg": ("kg", "kilogram", "kilograms", "kilo", "kilos", "公斤", "千克"),
    "g": ("g", "gram", "grams", "克"),
    "s": ("s", "sec", "secs", "second", "seconds", "秒"),
    "min": ("min", "mins", "minute", "minutes", "分钟"),
    "h": ("h", "hr", "hrs", "hour", "hours", "小时"),
    "deg": ("°", "deg", "degree", "degrees", "度"),
    "%": ("%", "percent", "per cent", "percentage", "百分比"),
    "usd": ("$", "usd", "dollar", "dollars", "美元"),
    "yuan": ("¥", "元", "yuan", "rmb", "cny", "人民币"),
    "eur": ("€", "eur", "euro", "euros", "欧元"),
    "gbp": ("£", "gbp", "pound", "pounds", "英镑"),
    "year": ("year", "years", "yr", "yrs", "岁", "年"),
    "ft": ("ft", "foot", "feet"),
    "in": ("inch", "inches"),
    "mph": ("mph",),
    "km/h": ("km/h", "kmh", "kph"),
    "": ("个", "只", "人", "名", "位", "条", "张", "本", "辆", "次", "件", "座", "棵", "块", "台", "家"),
}
UNIT_CANON = {alias: canon for canon, aliases in _UNIT_ALIASES.items() for alias in aliases}

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_QUANTITY = re.compile(
    rf"^(?P<cur>[$€£¥])?\s*(?P<sign>[-+−])?\s*(?P<cur2>[$€£¥])?\s*(?P<num>{_NUM})"
    rf"(?:\s*/\s*(?P<den>\d+))?(?:\s*(?:[eE]|[x×*]\s*10\s*\^)\s*(?P<exp>[-+−]?\d+))?"
    r"\s*(?P<unit>%|‰|°\s*[cCfF]?|[^\W\d_][^\W\d]*(?:\s*/\s*[^\W\d_]+)?(?:\s+[^\W\d_]+)?)?$")
_NUMBER_IN_TEXT = re.compile(rf"(?<![\w.])[-−]?(?:{_NUM})(?![\d])(?:\s*%)?")
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}
_CN_NUMERAL = re.compile(r"^([零〇一二两三四五六七八九十百千万亿]+)\s*(\S{0,2})$")
_SCALES = {"hundred": 1e2, "thousand": 1e3, "k": 1e3, "million": 1e6, "mn": 1e6, "billion": 1e9,
           "bn": 1e9, "trillion": 1e12, "百": 1e2, "千": 1e3, "万": 1e4, "百万": 1e6, "亿": 1e8}
_EN_WORDS = {w: i for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"])}
_EN_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
                  "ninety": 90, "hundred": 100, "thousand": 1000, "million": 1_000_000})


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str | None  # canonical unit, "" for a counter word (个), None when absent
    is_int: bool

    def same_unit(self, other: Quantity) -> bool | None:
        """True/False when both carry a unit; None when either has none (units may be omitted)."""
        if not self.unit or not other.unit:
            return None
        return self.unit == other.unit


def _chinese_int(s: str) -> int | None:
    total, section, digit = 0, 0, None
    for ch in s:
        if ch in "零〇" and digit is None:
            continue  # 两千零五: a zero only marks a skipped place
        if ch in _CN_DIGITS:
            if digit is not None:  # 二三: not a numeral we read
                return None
            digit = _CN_DIGITS[ch]
        else:
            unit = _CN_UNITS[ch]
            if unit >= 10_000:
                total += (section + (digit or 0)) * unit
                section = 0
            else:
                section += (1 if digit is None else digit) * unit
            digit = None
    return total + section + (digit or 0)


@lru_cache(maxsize=65536)
def parse_quantity(text: str) -> Quantity | None:
    """The whole string read as one number with an optional unit ("1,234", "45%", "$3.5",
    "12 cm", "3/4", "十二个", "twelve"), else None."""
    s = unicodedata.normalize("NFKC", text).strip().rstrip(".。").strip()
    if not s or len(s) > 40:
        return None
    m = _QUANTITY.match(s)
    if m:
        num = m.group("num").replace(",", "")
        value = float(num)
        is_int = "." not in num
        if m.group("den"):
            den = int(m.group("den"))
            if den == 0:
                return None
            value, is_int = value / den, value % den == 0
        if m.group("exp"):
            value *= 10.0 ** int(m.group("exp").replace("−", "-"))
            is_int = value.is_integer()
        if m.group("sign") in ("-", "−"):
            value = -value
        raw_unit = m.group("unit")
        if raw_unit:
            scale_word, _, rest = raw_unit.partition(" ")
            if scale_word.casefold() in _SCALES:
                value *= _SCALES[scale_word.casefold()]
                is_int = value.is_integer()
                raw_unit = rest or None
        cur = m.group("cur") or m.group("cur2")
        unit = _canon_unit(raw_unit) if raw_unit else None
        if cur:
            if unit not in (None, UNIT_CANON[cur]):
                return None
            unit = UNIT_CANON[cur]
        if raw_unit and unit is None:
            return None
        return Quantity(value, unit, is_int)
    m2 = _CN_NUMERAL.match(s)
    if m2:
        n = _chinese_int(m2.group(1))
        unit = _canon_unit(m2.group(2)) if m2.group(2) else None
        if n is None or (m2.group(2) and unit is None):
            return None
        return Quantity(float(n), unit, True)
    word = s.casefold()
    if word in _EN_WORDS:
        return Quantity(float(_EN_WORDS[word]), None, True)
    return None


def _canon_unit(raw: str) -> str | None:
    u = _SPACES.sub(" ", raw.strip()).casefold()
    if u.startswith("°") and len(u) > 1:
        return "deg" + u[-1]
    if u in UNIT_CANON:
        return UNIT_CANON[u]
    # An unknown word ("apples", "people"): keep it as its own unit, compared literally.
    return u if re.fullmatch(r"[^\W\d_][^\W\d]*(?: [^\W\d_]+)?", u) else None


def numbers_in(text: str) -> list[Quantity]:
    """Every number written in digits inside a sentence (thousands separators understood)."""
    out = []
    for m in _NUMBER_IN_TEXT.finditer(unicodedata.normalize("NFKC", text)):
        tok = m.group(0).replace(",", "").replace("−", "-").replace(" ", "")
        pct = tok.endswith("%")
        tok = tok.rstrip("%")
        out.append(Quantity(float(tok), "%" if pct else None, "." not in tok))
    return out


def numbers_agree(gt: Quantity, pred: Quantity, rel_tol: float) -> bool:
    """Equal integers, or within ``rel_tol`` when either side has decimals; a percentage may
    also be written as a fraction (45% = 0.45)."""
    candidates = [pred.value]
    if gt.unit == "%" and pred.unit != "%":
        candidates.append(pred.value * 100)
    if pred.unit == "%" and gt.unit != "%":
        candidates.append(pred.value / 100)
    for v in candidates:
        if gt.is_int and pred.is_int and v == pred.value:
            if v == gt.value:
                return True
            continue
        if abs(v - gt.value) <= max(rel_tol * abs(gt.value), 1e-9):
            return True
    return False
