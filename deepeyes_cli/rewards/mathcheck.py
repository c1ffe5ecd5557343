"""Mathematical equivalence through `math-verify` (LaTeX and plain expressions).

math-verify's own time-outs use ``signal.alarm``, which only works in a process's main
thread; rewards are computed in worker threads too, so we switch them off and bound the
work by input length instead. Parsed ground truths are cached: an RL group shares one.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

MAX_MATH_CHARS = 200
_LATEX_CUE = re.compile(r"\\[a-zA-Z]+|\^|_\{|\$|\\[(\[{]")
_EXPRESSION = re.compile(r"^[\w\s+\-*/().,=^<>≤≥π√·×÷\[\]{}]+$")
_OPERATOR_BETWEEN = re.compile(r"[\w)\]]\s*[+\-*/=^<>≤≥·×÷]\s*[\w(\[\\]|^\s*[(\[].*,.*[)\]]\s*$")
_WORD = re.compile(r"[A-Za-z]{3,}|[\u3400-\u9fff]")
_LATEX_CMD = re.compile(r"\\[a-zA-Z]+")


def looks_like_math(text: str) -> bool:
    """LaTeX, or an expression with an operator ("2x+1", "x = 5", "(1, 2]")."""
    if len(text) > MAX_MATH_CHARS:
        return False
    if _LATEX_CUE.search(text):
        return True
    return bool(_EXPRESSION.match(text) and _OPERATOR_BETWEEN.search(text))


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


def math_equal(ground_truth: str, prediction: str) -> bool | None:
    """True when math-verify proves them equal; False only when both sides are pure math
    that parsed; None when it cannot tell (prose, parse failure, too long)."""
    if len(ground_truth) > MAX_MATH_CHARS or len(prediction) > MAX_MATH_CHARS:
        return None
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
