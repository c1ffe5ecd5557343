"""Format rules: one pure function over a trajectory's response text.

Which text. The original decoded the whole response, tool observations and special tokens
included, and counted tags in it. We apply the rules to the assistant text only
(``Trajectory.response_text``: every assistant turn as the model's context saw it, the
prefilled ``<think>`` and the ``</code>``/``</tool_call>`` stop strings included), leaving
out the tool results. On every trajectory shape the protocol produces this gives the
original's verdict, because the observation templates contain none of the counted tags (a
code result is ``Code execution result:…``; a search result is wrapped in
``<tool_response>``, which no rule counts) and the prefilled ``<think>`` is counted either
way. Where the two differ is when a tool's *content* holds a tag (a web page or a printed
string with ``<think>`` or ``<code>`` in it), and after a malformed turn our loop corrects
(the original ended the episode; the correction names the tags): the original's verdict
would then depend on text the model did not write; ours does not.

The original's rules (each one a named violation, each one costs the format term):

1. a response not starting with ``<think>`` gets one prepended;
2. ``think_missing`` / ``think_unbalanced``: no ``</think>``, or counts differ;
3. ``code_unbalanced``: ``<code>`` and ``</code>`` counts differ;
4. ``tool_call_unbalanced`` (sources with ``tool_call_tags``, i.e. `search`);
5. in the text after the last ``</think>``: ``answer_missing`` / ``answer_unbalanced``;
6. the answer is the first ``<answer>…</answer>`` there, stripped: ``answer_empty``;
7. ``answer_too_long``: ≥ ``answer_char_limit`` characters (the caller also sets accuracy 0).

Extra rules the original did not check are reported as warnings, and cost the format term
only with ``reward.strict_format``: ``action_after_answer`` (a tool call after the answer),
``text_after_answer``, ``answer_inside_think``, ``untagged_text`` (text outside every tag),
``multiple_actions`` (code, search and answer mixed in one turn), ``tool_call_malformed``,
``code_block_missing``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_BLOCK = re.compile(r"<(think|code|tool_call|answer)>(.*?)</\1>", re.S)
_PYTHON_FENCE = re.compile(r"```python\s*\n(.*?)\n```", re.S)
SEARCH_TOOLS = ("search", "image_search")


class Violation(BaseModel):
    rule: str
    detail: str


@dataclass
class FormatReport:
    violations: list[Violation] = field(default_factory=list)  # cost the format term
    warnings: list[Violation] = field(default_factory=list)  # extra rules, free unless strict
    answer: str | None = None
    tool_calls: int = 0  # `<tool_call>` tags written (the search penalty counts these)
    code_calls: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations


def check_format(turns: Sequence[str], *, tool_call_tags: bool = False, answer_char_limit: int | None = 300,
                 strict: bool = False) -> FormatReport:
    """Check the assistant turns of one trajectory (in order) against the format rules."""
    text = "".join(turns)
    report = FormatReport(tool_calls=text.count("<tool_call>"), code_calls=text.count("<code>"))
    bad = report.violations.append

    checked = text if text.startswith("<think>") else "<think>" + text
    opens, closes = checked.count("<think>"), checked.count("</think>")
    if closes == 0:
        bad(Violation(rule="think_missing", detail="no </think> in the response"))
    elif opens != closes:
        bad(Violation(rule="think_unbalanced", detail=f"{opens} <think> but {closes} </think>"))
    if report.code_calls != text.count("</code>"):
        bad(Violation(rule="code_unbalanced", detail=f"{report.code_calls} <code> but {text.count('</code>')} </code>"))
    if tool_call_tags and report.tool_calls != text.count("</tool_call>"):
        bad(Violation(rule="tool_call_unbalanced",
                      detail=f"{report.tool_calls} <tool_call> but {text.count('</tool_call>')} </tool_call>"))

    tail = checked.split("</think>")[-1].strip()
    a_open, a_close = tail.count("<answer>"), tail.count("</answer>")
    if a_open == 0 or a_close == 0:
        bad(Violation(rule="answer_missing", detail="no <answer>…</answer> after the last </think>"))
    elif a_open != a_close:
        bad(Violation(rule="answer_unbalanced", detail=f"{a_open} <answer> but {a_close} </answer> after the last </think>"))
    m = _ANSWER.search(tail)
    report.answer = m.group(1).strip() if m else None
    if not report.answer and a_open and a_close:
        bad(Violation(rule="answer_empty", detail="no non-empty <answer>…</answer> after the last </think>"))
    if report.answer and answer_char_limit is not None and len(report.answer) >= answer_char_limit:
        bad(Violation(rule="answer_too_long",
                      detail=f"answer has {len(report.answer)} characters (limit: under {answer_char_limit})"))

    extra = _extra_rules(turns, tail)
    (report.violations if strict else report.warnings).extend(extra)
    return report


def _extra_rules(turns: Sequence[str], tail: str) -> list[Violation]:
    out: list[Violation] = []
    end = tail.find("</answer>")
    if end >= 0:
        after = tail[end + len("</answer>"):].strip()
        if "<code>" in after or "<tool_call>" in after:
            out.append(Violation(rule="action_after_answer", detail="a tool call follows </answer>"))
        elif after:
            out.append(Violation(rule="text_after_answer", detail=f"text follows </answer>: {after[:40]!r}"))
    if any("<answer>" in body for turn in turns for kind, body in _BLOCK.findall(turn) if kind == "think"):
        out.append(Violation(rule="answer_inside_think", detail="an <answer> is written inside <think>"))
    for i, turn in enumerate(turns):
        kinds = [k for k, _ in _BLOCK.findall(turn)]
        outside = _BLOCK.sub("", turn).strip()
        if outside:
            out.append(Violation(rule="untagged_text", detail=f"turn {i + 1}: text outside tags: {outside[:40]!r}"))
        actions = {k for k in kinds if k != "think"}
        if len(actions) > 1:
            out.append(Violation(rule="multiple_actions", detail=f"turn {i + 1}: {', '.join(sorted(actions))} together"))
        for kind, body in _BLOCK.findall(turn):
            problem = _call_problem(kind, body)
            if problem:
                out.append(Violation(rule=problem[0], detail=f"turn {i + 1}: {problem[1]}"))
    return out


def _call_problem(kind: str, body: str) -> tuple[str, str] | None:
    if kind == "code" and not _PYTHON_FENCE.search(body):
        return "code_block_missing", "<code> without a ```python block"
    if kind != "tool_call":
        return None
    try:
        call = json.loads(body)
    except json.JSONDecodeError as e:
        return "tool_call_malformed", f"tool call is not JSON ({e.msg})"
    name = call.get("name") if isinstance(call, dict) else None
    args = call.get("arguments") if isinstance(call, dict) else None
    if name not in SEARCH_TOOLS:
        return "tool_call_malformed", f"unknown tool {name!r}"
    if name == "image_search" and args:
        return "tool_call_malformed", "image_search takes no arguments"
    if name == "search" and not (isinstance(args, dict) and isinstance(args.get("query"), str) and args["query"]):
        return "tool_call_malformed", "search needs a string 'query'"
    return None
