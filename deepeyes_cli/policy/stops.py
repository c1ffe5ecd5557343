"""Stop strings, the same way for every backend: generation ends at the earliest stop
string, which stays in the text (the original's ``include_stop_str_in_output=True``)."""

from __future__ import annotations

from collections.abc import Sequence

from deepeyes_cli.protocol import tags

# A stop string and the tag it closes (to restore a stop string an API dropped).
_OPENERS = {tags.CODE_CLOSE: tags.CODE_OPEN, tags.TOOL_CALL_CLOSE: tags.TOOL_CALL_OPEN}


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """``text`` up to and including the earliest stop string, and that stop string."""
    best, which = -1, None
    for s in stops:
        i = text.find(s) if s else -1
        if i >= 0 and (best < 0 or i < best):
            best, which = i, s
    if which is None:
        return text, None
    return text[: best + len(which)], which


def restore_dropped_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """OpenAI-style APIs cut the stop string off and do not say which one fired. When the
    text ends inside an opened ``<code>``/``<tool_call>`` whose closing tag is a stop
    string, that tag is what stopped it: put it back."""
    best_pos, best_stop = -1, None
    for stop in stops:
        opener = _OPENERS.get(stop)
        if opener is None:
            continue
        pos = text.rfind(opener)
        if pos > text.rfind(stop) and pos > best_pos:
            best_pos, best_stop = pos, stop
    if best_stop is None:
        return text, None
    return text + best_stop, best_stop
