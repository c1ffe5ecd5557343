"""Stop strings that end inside a token, to test that backends cut the text at the stop
string but keep the generated ids as generated (the token that completed the stop string
included, with whatever it holds past the stop)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def mid_token_stop(tokenizer: Any, ids: Sequence[int]) -> tuple[str, int] | None:
    """A stop string whose first occurrence in ``decode(ids)`` ends strictly inside a
    token, and how many ids a backend keeps when it stops there (up to that token). None
    when the sequence has no printable ASCII token pair to build one from."""
    text = tokenizer.decode(list(ids), skip_special_tokens=False)
    for k in range(1, len(ids)):
        before = tokenizer.decode(list(ids[:k]), skip_special_tokens=False)
        piece = tokenizer.decode([ids[k]], skip_special_tokens=False)
        if not (before and len(piece) >= 2 and text.startswith(before + piece)):
            continue
        stop = before[-1] + piece[:1]
        if not (stop.isascii() and stop.isprintable() and stop.strip()):
            continue
        if text.find(stop) == len(before) - 1:  # first occurrence: ends one character into token k
            return stop, k + 1
    return None
