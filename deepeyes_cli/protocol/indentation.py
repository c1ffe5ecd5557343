"""The original's indentation "fixer", replicated behind ``agent.fix_indentation`` (off).

The original passes every code string through a function that throws away all
indentation, indents one level after any line ending with ``:`` and dedents one level only
before ``except``/``elif``/``else``/``finally``, then runs autopep8 (aggressive level 2).
Nothing ever closes a block, so **code after a block is pulled into it**: a ``print``
after a ``for`` loop runs on every iteration, statements after a ``def`` become part of
the function. Models trained with it may have learnt to write code that survives it;
everything else should run code as written (the default).
"""

from __future__ import annotations

_DEDENT_KEYWORDS = ("except", "elif", "else", "finally")
_INDENT = "    "


def fix_indentation(code: str) -> str:
    """Re-indent ``code`` exactly as the original does, quirks included: blank lines are
    dropped, and any line merely *starting* with a dedent keyword (``elsewhere = 1``,
    ``exception = None``) is dedented too."""
    import textwrap

    level = 0
    out: list[str] = []
    for line in (raw.strip() for raw in code.split("\n")):
        if not line:
            continue
        if line.startswith(_DEDENT_KEYWORDS):
            level = max(0, level - 1)
        out.append(_INDENT * level + line)
        if line.endswith(":"):
            level += 1
    import autopep8

    return str(autopep8.fix_code(textwrap.dedent("\n".join(out)).strip(), options={"aggressive": 2}))
