"""Numbers in answers: one quantity with its unit, the numbers inside a sentence, agreement.

A number carries the precision it was written with (``3.14`` to the hundredth, ``1.2
million`` to the hundred thousand, ``1/2`` exactly), because two numbers agree when they are
the same *at the reference's precision* — what the judge prompt asks too. Anything a rule
cannot read with certainty ("12th", "3点", "2020s", "5x", "12 dozen") is not a number here:
the judge reads it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Canonical unit for each spelling (lower-cased). Units never convert (5 m vs 500 cm goes to
# the judge). A bare "s" is not here: "2020s" and "30s" are decades as often as seconds.
_UNIT_ALIASES = {
    "cm": ("cm", "centimeter", "centimeters", "centimetre", "centimetres", "厘米", "公分"),
    "mm": ("mm", "millimeter", "millimeters", "millimetre", "millimetres", "毫米"),
    "m": ("m", "meter", "meters", "metre", "metres", "米"),
    "km": ("km", "kilometer", "kilometers", "kilometre", "kilometres", "公里", "千米"),
    "mi": ("mi", "mile", "miles", "英里"),
    "ft": ("ft", "foot", "feet", "英尺"),
    "in": ("inch", "inches", "英寸"),
    "kg": ("kg", "kilogram", "kilograms", "kilo", "kilos", "公斤", "千克"),
    "g": ("g", "gram", "grams", "克"),
    "mg": ("mg", "milligram", "milligrams", "毫克"),
    "lb": ("lb", "lbs"),
    "l": ("l", "liter", "liters", "litre", "litres", "升"),
    "ml": ("ml", "milliliter", "milliliters", "millilitre", "millilitres", "毫升"),
    "s": ("sec", "secs", "second", "seconds", "秒"),
    "min": ("min", "mins", "minute", "minutes", "分钟"),
    "h": ("h", "hr", "hrs", "hour", "hours", "小时"),
    "day": ("day", "days", "天"),
    "week": ("week", "weeks", "周", "星期"),
    "month": ("months", "个月"),
    "deg": ("°", "deg", "degree", "degrees", "度"),
    "%": ("%", "percent", "per cent", "percentage", "百分比"),
    "usd": ("$", "usd", "dollar", "dollars", "美元"),
    "yuan": ("¥", "元", "yuan", "rmb", "cny", "人民币"),
    "eur": ("€", "eur", "euro", "euros", "欧元"),
    "gbp": ("£", "gbp", "pound", "pounds", "英镑"),
    "year": ("year", "years", "yr", "yrs", "岁", "年"),
    "mph": ("mph",),
    "km/h": ("km/h", "kmh", "kph"),
    "m/s": ("m/s",),
    "kb": ("kb", "kilobyte", "kilobytes"),
    "mb": ("mb", "megabyte", "megabytes"),
    "gb": ("gb", "gigabyte", "gigabytes"),
    "tb": ("tb", "terabyte", "terabytes"),
    "w": ("w", "watt", "watts", "瓦"),
    "kw": ("kw", "kilowatt", "kilowatts", "千瓦"),
    "v": ("v", "volt", "volts", "伏"),
    "hz": ("hz", "hertz", "赫兹"),
    "px": ("px", "pixel", "pixels", "像素"),
    "": ("个", "只", "人", "名", "位", "条", "张", "本", "辆", "次", "件", "座", "棵", "块", "台", "家", "头",
         "匹", "艘", "架", "栋", "幅", "根", "支", "把", "双", "对", "朵", "颗", "盏"),
}
UNIT_CANON = {alias: canon for canon, aliases in _UNIT_ALIASES.items() for alias in aliases}
_CJK_UNITS = sorted((a for a in UNIT_CANON if not a.isascii()), key=len, reverse=True)
# Words after a number that change what it is, so never an unknown unit ("12 dozen", "3 times").
_NOT_UNITS = frozenset({"dozen", "dozens", "score", "scores", "times", "fold", "squared", "cubed", "more",
                        "less", "fewer", "plus", "minus", "and", "or", "to", "hundreds", "thousands",
                        "millions", "billions", "percentile", "th", "st", "nd", "rd"})
_SIZE_WORDS = frozenset({"old", "long", "tall", "wide", "high", "deep"})  # "12 years old" is 12 years
_UNKNOWN_UNIT = re.compile(r"[a-z]{3,}")  # "apples", "people": compared literally

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_QUANTITY = re.compile(
    rf"^(?P<cur>[$€£¥])?\s*(?P<sign>[-+−])?\s*(?P<cur2>[$€£¥])?\s*(?P<num>{_NUM})"
    rf"(?:\s*/\s*(?P<den>\d+))?(?:\s*(?:[eE]|[x×*]\s*10\s*\^)\s*(?P<exp>[-+−]?\d+))?"
    r"\s*(?P<unit>%|‰|°\s*[cCfF]?|[^\W\d_][^\W\d]*(?:\s*/\s*[^\W\d_]+)?(?:\s+[^\W\d_]+)?)?$")
# A number inside a sentence: not glued to a letter, digit, "第" or a date/time/range separator.
_IN_TEXT = re.compile(
    rf"(?<![A-Za-z0-9_.,\-−/:第])(?P<cur>[$€£¥]\s*)?(?P<sign>[-−])?(?P<num>{_NUM})(?![\d]|[.,/:\-−]\d)"
    r"(?P<gap>\s*)(?P<word>%|°\s*[cCfF]?|[^\W\d_]+)?")
_DIGIT = re.compile(r"\d")
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}
_CN_NUMERAL = re.compile(r"^([零〇一二两三四五六七八九十百千万亿]+)\s*(\S{0,2})$")
# Number words in a sentence make "the one number in it" unsafe to pick ("3 cars and five bikes").
_NUMBER_WORDS = re.compile(
    r"(?i:\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
    r"hundred|thousand|million|billion|dozen|half|once|twice|single|double|triple|none)\b)"
    rf"|[零〇一二两三四五六七八九十百千万亿]+(?={'|'.join(a for a in _CJK_UNITS if len(a) == 1)})")
_SCALES = {"hundred": 1e2, "thousand": 1e3, "k": 1e3, "million": 1e6, "mn": 1e6, "billion": 1e9,
           "bn": 1e9, "trillion": 1e12, "百": 1e2, "千": 1e3, "万": 1e4, "百万": 1e6, "亿": 1e8}
_EN_WORDS = {w: i for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
     "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"])}
_EN_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
                  "ninety": 90, "hundred": 100, "thousand": 1000, "million": 1_000_000})
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str | None  # canonical unit, "" for a counter word (个), None when absent
    is_int: bool
    ulp: float = 1.0  # the precision written: 0.01 for "3.14", 1e5 for "1.2 million", 0 for "3/4" (exact)

    def same_unit(self, other: Quantity) -> bool | None:
        """True/False when both carry a unit; None when either has none (units may be omitted)."""
        if not self.unit or not other.unit:
            return None
        return self.unit == other.unit


def _chinese_int(s: str) -> int | None:
    total, section, digit = 0, 0, None
    last_unit, after_zero = 0, False
    for ch in s:
        if ch in "零〇" and digit is None:
            after_zero = True  # 两千零五: a zero only marks a skipped place
            continue
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
            digit, last_unit, after_zero = None, unit, False
    if digit is not None and last_unit >= 100 and not after_zero:
        digit *= last_unit // 10  # 一百五 is 150, 一万五 is 15000 (一百零五 is 105)
    return total + section + (digit or 0)


def _canon_unit(raw: str) -> str | None:
    u = _SPACES.sub(" ", raw.strip()).casefold()
    if u.startswith("°") and len(u) > 1:
        return "deg" + u[-1]
    if u in UNIT_CANON:
        return UNIT_CANON[u]
    words = u.split(" ")
    if len(words) == 2 and words[0] in UNIT_CANON and words[1] in _SIZE_WORDS:
        return UNIT_CANON[words[0]]
    # An unknown word ("apples", "people"): its own unit, compared literally. Short or foreign
    # suffixes ("th", "x", "π", "点", "月") are not read at all.
    if all(_UNKNOWN_UNIT.fullmatch(w) and w not in _NOT_UNITS for w in words):
        return u
    return None


@lru_cache(maxsize=65536)
def parse_quantity(text: str) -> Quantity | None:
    """The whole string read as one number with an optional unit ("1,234", "45%", "$3.5",
    "12 cm", "3/4", "十二个", "twelve"), else None."""
    return _parse_quantity(text)


def _parse_quantity(text: str) -> Quantity | None:
    # (apart from the cached entry point: mutmut does not mutate decorated functions)
    s = unicodedata.normalize("NFKC", text).strip().rstrip(".。").strip()
    if not s or len(s) > 40:
        return None
    m = _QUANTITY.match(s)
    if m:
        num = m.group("num").replace(",", "")
        value = float(num)
        is_int = "." not in num
        ulp = 1.0 if is_int else 10.0 ** -len(num.partition(".")[2])
        if m.group("den"):
            den = int(m.group("den"))
            if den == 0:
                return None
            value, is_int, ulp = value / den, value % den == 0, 0.0
        if m.group("exp"):
            scale = 10.0 ** int(m.group("exp").replace("−", "-"))
            value, ulp = value * scale, ulp * scale
            is_int = value.is_integer()
        if m.group("sign") in ("-", "−"):
            value = -value
        raw_unit = m.group("unit")
        if raw_unit:
            scale_word, _, rest = raw_unit.partition(" ")
            if scale_word.casefold() in _SCALES:
                scale = _SCALES[scale_word.casefold()]
                value, ulp = value * scale, ulp * scale
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
        return Quantity(value, unit, is_int, ulp)
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


def _unit_in_text(gap: str, word: str | None) -> tuple[bool, str | None]:
    """(readable, canonical unit) of the word right after a number in a sentence."""
    if not word:
        return True, None
    if word == "%" or word.startswith("°"):
        return True, _canon_unit(word)
    if word.isascii():
        canon = UNIT_CANON.get(word.casefold())
        return (True, canon) if canon is not None else (bool(gap), None)  # "12 apples" yes, "12th" no
    for alias in _CJK_UNITS:
        if word.startswith(alias):
            return True, UNIT_CANON[alias]
    return bool(gap), None  # "12个" yes, "3点", "3月" no


def numbers_in(text: str) -> list[Quantity] | None:
    """Every number written in digits inside a sentence (thousands separators, a currency
    sign and a unit after it understood); None when the sentence holds a number that cannot
    be read safely: glued to a word ("12th", "A10", "3点"), part of a date, time or range
    ("2023-01-02", "3:15", "10-12"), or written in words ("five", "一个")."""
    s = unicodedata.normalize("NFKC", text)
    if _NUMBER_WORDS.search(s):
        return None
    out, digits_read = [], 0
    for m in _IN_TEXT.finditer(s):
        readable, unit = _unit_in_text(m.group("gap"), m.group("word"))
        if not readable:
            return None
        if m.group("cur"):
            cur = UNIT_CANON[m.group("cur").strip()]
            if unit not in (None, cur):
                return None
            unit = cur
        num = m.group("num").replace(",", "")
        value = float(num) * (-1 if m.group("sign") else 1)
        out.append(Quantity(value, unit, "." not in num,
                            1.0 if "." not in num else 10.0 ** -len(num.partition(".")[2])))
        digits_read += len(_DIGIT.findall(m.group("num")))
    return out if digits_read == len(_DIGIT.findall(s)) else None


def numbers_agree(gt: Quantity, pred: Quantity, rel_tol: float = 0.0) -> bool | None:
    """Whether ``pred`` is ``gt`` at the precision ``gt`` is written with (3.1416 is 3.14;
    3.15 is not), or within ``rel_tol`` of it. None when only a judge can tell: a coarser
    rounding of the reference ("3.1" for "3.14", "0.67" for "2/3") or a decimal near an
    integer reference ("12.4" for "12"). A percentage may be written as a fraction (45% = 0.45)."""
    candidates = [(pred.value, pred.ulp)]
    if gt.unit == "%" and pred.unit != "%":
        candidates.append((pred.value * 100, pred.ulp * 100))
    if pred.unit == "%" and gt.unit != "%":
        candidates.append((pred.value / 100, pred.ulp / 100))
    unsure = False
    for value, ulp in candidates:
        diff = abs(value - gt.value)
        eps = 1e-9 * max(1.0, abs(gt.value))  # float noise ("0.1 + 0.2")
        if diff <= eps:
            return True
        if rel_tol and not (gt.is_int and pred.is_int) and diff <= rel_tol * abs(gt.value) + eps:
            return True
        half = gt.ulp / 2
        if gt.is_int and gt.ulp == 1.0:
            unsure = unsure or diff < half - eps  # "12.4" for a count of 12
        elif diff < half - eps:
            return True  # the same at the reference's precision
        elif diff <= half + eps:
            unsure = True  # "3.145" for "3.14": depends on how it was rounded
        if ulp > gt.ulp and diff <= ulp / 2 + eps:
            unsure = True  # the reference rounded coarser ("3.1" for "3.14"): is that enough?
    return None if unsure else False
