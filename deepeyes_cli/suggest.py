""""Did you mean" suggestions for names typed by people (recipe keys, recipe names, tools …)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def _osa_distance(a: str, b: str) -> int:
    """Edit distance counting an adjacent swap as one edit (typos like `tyni` for `tiny`)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def closest(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The candidate a person most likely meant, or None when nothing is close."""
    pool = list(dict.fromkeys(candidates))
    if not pool:
        return None
    lowered = word.lower()
    best = min(pool, key=lambda c: (_osa_distance(lowered, c.lower()), -difflib.SequenceMatcher(
        None, lowered, c.lower()).ratio()))
    if _osa_distance(lowered, best.lower()) <= min(3, max(1, len(word) // 2)):
        return best
    close = difflib.get_close_matches(word, pool, n=1, cutoff=cutoff)
    return close[0] if close else None
