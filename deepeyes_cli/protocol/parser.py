"""Parse one assistant turn into the action the loop takes.

Tolerant and explicit: a malformed turn never raises. It becomes an ``invalid`` action
carrying issue codes (counted in the trajectory's metadata) and a short corrective message
that the loop sends back as the next user turn. Tags inside a closed ``<think>`` block are
the model thinking aloud and are ignored when looking for actions.

What counts as well-formed follows the original (``deepeyesv2.py``): the code is the
last fenced block inside ``<code>``; a ``<tool_call>`` holds JSON
``{"name": ..., "arguments": {...}}``. Where the original silently ended an episode (code
without a fence, no tag at all, an answer next to a tool call) we tell the model instead,
except for a turn without any action, whose handling the recipe chooses.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from deepeyes_cli.protocol import tags

if TYPE_CHECKING:
    from deepeyes_cli.protocol.messages import ToolSpec

ParsedAction = Literal["code", "tool", "answer", "invalid", "none"]

_THINK_BLOCK = re.compile(re.escape(tags.THINK_OPEN) + r".*?" + re.escape(tags.THINK_CLOSE), re.S)
_CODE_BLOCK = re.compile(re.escape(tags.CODE_OPEN) + r"(.*?)" + re.escape(tags.CODE_CLOSE), re.S)
_TOOL_BLOCK = re.compile(re.escape(tags.TOOL_CALL_OPEN) + r"(.*?)" + re.escape(tags.TOOL_CALL_CLOSE), re.S)
_ANSWER_BLOCK = re.compile(re.escape(tags.ANSWER_OPEN) + r"(.*?)" + re.escape(tags.ANSWER_CLOSE), re.S)
# The original's pattern (```python then a newline … a newline then ```), plus ```python3, ```py and a
# bare ``` fence; the last block wins, as in the original.
_FENCE = re.compile(r"```(?:python3?|py3?)?[ \t]*\n(.*?)\n?```", re.S | re.I)


@dataclass
class ParsedTurn:
    action: ParsedAction
    tool: str | None = None  # the tool to call ("code" for <code>)
    args: dict[str, Any] | None = None
    answer: str | None = None
    issues: list[str] = field(default_factory=list)  # issue codes, e.g. "invalid_json"
    feedback: str | None = None  # corrective user message when the turn cannot be carried out

    @property
    def is_tool_call(self) -> bool:
        return self.action in ("code", "tool")


def _invalid(issue: str, feedback: str | None = None, issues: list[str] | None = None) -> ParsedTurn:
    return ParsedTurn("invalid", issues=[*(issues or []), issue], feedback=feedback or tags.FEEDBACK[issue])


def _unclosed(text: str, open_tag: str, close_tag: str) -> bool:
    """An opening tag after the last closing one (or without any)."""
    return text.rfind(open_tag) > text.rfind(close_tag)


def extract_answer(text: str) -> str | None:
    """The final answer as the reward reads it: the first ``<answer>`` after the last
    ``</think>``; failing that, the last ``<answer>`` anywhere. Stripped."""
    tail = text.rsplit(tags.THINK_CLOSE, 1)[-1]  # pragma: no mutate (any maxsplit >= 1 has the same last piece)
    m = _ANSWER_BLOCK.search(tail)
    if m:
        return m.group(1).strip()
    found = _ANSWER_BLOCK.findall(text)
    return found[-1].strip() if found else None


def extract_code(block: str) -> str | None:
    """The last fenced block's code, or None when there is no fence."""
    found = _FENCE.findall(block)
    return found[-1] if found else None


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    """A compiled validator per schema (checking the schema itself is the slow part)."""
    import jsonschema

    schema = json.loads(schema_json)
    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.SchemaError:
        return None  # a tool with a broken schema: let the tool judge its arguments
    return cls(schema)


def _schema_problem(schema: Mapping[str, Any], args: dict[str, Any]) -> str | None:
    from jsonschema.exceptions import best_match

    # no mutate: sort_keys only makes equal schemas share one cached validator
    validator = _validator(json.dumps(schema, sort_keys=True))  # pragma: no mutate
    if validator is None:
        return None
    error = best_match(validator.iter_errors(args))
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path)
    return f"{where + ': ' if where else ''}{error.message}"


def _parse_tool_call(raw: str, tools: Mapping[str, ToolSpec]) -> ParsedTurn:
    """The one ``<tool_call>`` of a turn (without an answer, so with no issue yet)."""
    raw = raw.strip()
    try:
        call = json.loads(raw)
    except json.JSONDecodeError as e:
        return _invalid("invalid_json", tags.invalid_tool_call_format(raw, str(e)))
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return _invalid("invalid_tool_call", tags.invalid_tool_call_format(raw, "expected an object with a name"))
    name = call["name"]
    if name not in tools or name == tags.CODE_TOOL:
        return _invalid("unknown_tool", tags.invalid_tool_call_name(raw))
    args = call.get("arguments", call.get("parameters", {}))  # pragma: no mutate (None becomes {} below)
    if isinstance(args, str):  # OpenAI-style arguments serialised as a string
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            return _invalid("invalid_json", tags.invalid_tool_call_format(raw, str(e)))
    if args is None:
        args = {}
    if not isinstance(args, dict):
        problem = "arguments must be an object"
    else:
        problem = _schema_problem(tools[name].parameters, args) or ""
    if problem:
        feedback = (tags.invalid_image_search_parameters(raw) if name == "image_search"
                    else tags.invalid_tool_parameters(name, raw, problem))
        return _invalid("invalid_arguments", feedback)
    return ParsedTurn("tool", tool=name, args=args)


def parse_turn(text: str, tools: Mapping[str, ToolSpec]) -> ParsedTurn:
    """Decide what one assistant turn (prefill included) asks for. ``tools`` maps the
    offered tools' names to tools (for names and argument schemas)."""
    answer_text = text
    # tags inside a closed <think> are not actions (no mutate: any tag-free filler would do)
    visible = _THINK_BLOCK.sub("", text)  # pragma: no mutate
    codes = _CODE_BLOCK.findall(visible)
    calls = _TOOL_BLOCK.findall(visible)
    answers = _ANSWER_BLOCK.findall(visible)
    unclosed = [name for name, o, c in (("code", tags.CODE_OPEN, tags.CODE_CLOSE),
                                         ("tool_call", tags.TOOL_CALL_OPEN, tags.TOOL_CALL_CLOSE),
                                         ("answer", tags.ANSWER_OPEN, tags.ANSWER_CLOSE))
                if _unclosed(visible, o, c)]
    issues: list[str] = []  # only a turn with an answer can have one before its verdict
    if len(answers) > 1:
        issues.append("multiple_answers")
    n_actions = len(codes) + len(calls) + sum(1 for u in unclosed if u != "answer")
    if (answers or "answer" in unclosed) and n_actions:
        return _invalid("answer_with_tool", issues=issues)
    if n_actions > 1:
        return _invalid("multiple_actions")
    if unclosed:
        return _invalid(f"unclosed_{unclosed[0]}", issues=issues)
    if answers:
        answer = extract_answer(answer_text)
        if not answer:
            issues.append("empty_answer")
        return ParsedTurn("answer", answer=answer or "", issues=issues)
    if codes:
        if tags.CODE_TOOL not in tools:
            return _invalid("unknown_tool", tags.invalid_tool_call_name(tags.CODE_TOOL))
        code = extract_code(codes[-1])
        if code is None:
            return _invalid("code_without_fence")
        if not code.strip():
            return _invalid("empty_code")
        return ParsedTurn("code", tool=tags.CODE_TOOL, args={"code": code})
    if calls:
        return _parse_tool_call(calls[-1], tools)
    return ParsedTurn("none", issues=["no_action"], feedback=tags.FEEDBACK["no_action"])


_SEGMENT_TAGS = re.compile(r"(</?(?:think|code|tool_call|answer)>)")


def split_segments(text: str) -> list[tuple[str, str]]:
    """An assistant turn as ``(kind, text)`` pieces for display: kind is ``think``,
    ``code``, ``tool_call``, ``answer`` or ``text`` (outside any tag); tags are dropped."""
    out: list[tuple[str, str]] = []
    kind = "text"
    for piece in _SEGMENT_TAGS.split(text):
        if _SEGMENT_TAGS.fullmatch(piece):
            kind = "text" if piece.startswith("</") else piece[1:-1]
        elif piece.strip():
            out.append((kind, piece.strip("\n")))
    return out
