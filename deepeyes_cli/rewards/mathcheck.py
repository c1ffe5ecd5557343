"""Mathematical equivalence through `math-verify` (LaTeX and plain expressions).

math-verify's own time-outs use ``signal.alarm``, which only works in a process's main
thread; rewards are computed in worker threads too, so we switch them off and bound the
work by input length instead. Parsed ground truths are cached: an RL group shares one.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from functools import lru_cache
from typing import Any

MAX_MATH_CHARS = 200
_LATEX_CUE = re.compile(r"\\[a-zA-Z]+|\^|_\{|\$[^$]+\$|\\[(\[{]")  # a lone "$" is a price
_EXPRESSION = re.compile(r"^[\w\s+\-*/().,=^<>≤≥π√·×÷\[\]{}]+$")
_OPERATOR_BETWEEN = re.compile(r"[\w)\]]\s*[+\-*/=^<>≤≥·×÷]\s*[\w(\[\\]|^\s*[(\[].*,.*[)\]]\s*$")
_WORD = re.compile(r"[A-Za-z]{3,}|[\u3400-\u9fff]")
_LATEX_CMD = re.compile(r"\\[a-zA-Z]+")
# Hyphens and slashes between plain numbers are dates, scores, phone numbers, versions and
# model names ("2023-01-02", "3-1", "555-1234", "F-16"), not subtraction: "3-2" is not "2-1".
_NOT_EXPRESSION = re.compile(r"^\s*(?:\d+(?:\s*[-–/.:]\s*\d+){2,}|\d+(?:\s*[-–]\s*\d+)+|[A-Z]{1,3}-\d+)\s*$")
_DEGREES = re.compile(r"°|\\circ|\bdeg")
_APPROXIMATE = re.compile(r"\\approx|≈|\\sim|~")  # "\approx 3" is not "3": the judge decides
_FUNCTIONS = frozenset({"sin", "cos", "tan", "cot", "sec", "csc", "log", "exp", "sqrt", "arcsin", "arccos",
                        "arctan", "sinh", "cosh", "tanh", "max", "min", "abs"})  # "new-york" is prose, not math


def looks_like_math(text: str) -> bool:
    """LaTeX, or an expression with an operator ("2x+1", "x = 5", "(1, 2]")."""
    if len(text) > MAX_MATH_CHARS or _NOT_EXPRESSION.match(text):
        return False
    if _LATEX_CUE.search(text):
        return True
    words = {w.lower() for w in _WORD.findall(text)}
    return bool(_EXPRESSION.match(text) and _OPERATOR_BETWEEN.search(text) and words <= _FUNCTIONS)


# A "no" from math-verify is trusted only for arithmetic it fully evaluates: it does not
# evaluate \sin 60^\circ, so "\frac{\sqrt{3}}{2}" vs that would be a false negative.
_SIMPLE_CMDS = frozenset({"frac", "dfrac", "tfrac", "sqrt", "pi", "cdot", "times", "div", "left", "right",
                          "le", "ge", "leq", "geq", "infty", "pm", "circ", "cup", "cap", "in", "mathbb"})


def _is_pure_math(text: str) -> bool:
    if any(m.group(0)[1:] not in _SIMPLE_CMDS for m in _LATEX_CMD.finditer(text)):
        return False
    return not _WORD.search(_LATEX_CMD.sub(" ", text))


@lru_cache(maxsize=8192)
def _parse(text: str) -> tuple[Any, ...]:
    from math_verify import parse

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns when time-outs are off
    wrapped = text if ("$" in text or "\\boxed" in text or "\\(" in text or "\\[" in text) else f"${text}$"
    try:
        return tuple(parse(wrapped, parsing_timeout=None))  # type: ignore[arg-type]
    except Exception:  # math-verify raises many kinds on odd input; unparseable means "no verdict"
        return ()


_NOISE = re.compile(r"\\left|\\right|\\[,!;: ]|\$|\s")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}$|^(-?)\\[dt]?frac(\d)(\d)$")
_PLAIN = re.compile(r"^-?\d+(?:\.\d+)?$|^-?\d+/\d+$")


def quick_number(text: str) -> Fraction | None:
    """A plain number or a fraction of two numbers (``-\\frac{3}{4}``, ``3/4``, ``0.75``),
    read exactly without sympy: most math answers are just that, and math-verify takes
    milliseconds where this takes microseconds."""
    s = _NOISE.sub("", text)
    try:
        if _PLAIN.match(s):
            return Fraction(s)
        m = _FRAC.match(s)
        if m:
            sign = -1 if (m.group(1) or m.group(4)) else 1
            num, den = (m.group(2), m.group(3)) if m.group(2) is not None else (m.group(5), m.group(6))
            return sign * Fraction(num) / Fraction(den)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def math_equal(ground_truth: str, prediction: str) -> bool | None:
    """True when math-verify proves them equal; False only when both sides are pure math
    that parsed; None when it cannot tell (prose, parse failure, too long)."""
    if len(ground_truth) > MAX_MATH_CHARS or len(prediction) > MAX_MATH_CHARS:
        return None
    if _APPROXIMATE.search(prediction) and not _APPROXIMATE.search(ground_truth):
        return None
    if bool(_DEGREES.search(ground_truth)) != bool(_DEGREES.search(prediction)):
        return None  # 60° vs \frac{\pi}{3}: math-verify does not convert degrees to radians
    g, p = quick_number(ground_truth), quick_number(prediction)
    if g is not None and p is not None:  # math-verify's own rule: equal after rounding to 6 places
        return abs(g - p) <= Fraction(1, 10**6) * max(Fraction(1), abs(g))
    gold, target = _parse(ground_truth), _parse(prediction)
    if not gold or not target:
        return None
    from math_verify import verify

    try:
        if verify(list(gold), list(target), timeout_seconds=None):
            return True
    except Exception:
        return None
    return False if _is_pure_math(ground_truth) and _is_pure_math(prediction) else None
