"""The parser table: model outputs, well-formed and malformed, and the action each gets."""

from __future__ import annotations

from typing import Any

import pytest

from deepeyes_cli.protocol.parser import extract_answer, parse_turn, split_segments
from deepeyes_cli.tools.base import ToolContext, ToolResult


class _Tool:
    def __init__(self, name: str, parameters: dict[str, Any]) -> None:
        self.name, self.parameters, self.description = name, parameters, name

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return ToolResult(text="")


TOOLS = {
    "code": _Tool("code", {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}),
    "search": _Tool("search", {"type": "object", "properties": {"query": {"type": "string"}},
                               "required": ["query"], "additionalProperties": False}),
    "image_search": _Tool("image_search", {"type": "object", "properties": {"image": {"type": "integer", "minimum": 1}},
                                           "additionalProperties": False}),
}
CODE = "<code>\n```python\nprint(image_1.size)\n```\n</code>"
SEARCH = '<tool_call>\n{"name": "search", "arguments": {"query": "red sign"}}\n</tool_call>'
IMG_SEARCH = '<tool_call>\n{"name": "image_search"}\n</tool_call>'

# (model output, expected action, expected tool, expected args or answer, expected issues)
CASES: list[tuple[str, str, str | None, Any, list[str]]] = [
    # well-formed
    (f"<think>crop it</think>\n{CODE}", "code", "code", {"code": "print(image_1.size)"}, []),
    (f"<think>x</think> {SEARCH}", "tool", "search", {"query": "red sign"}, []),
    (f"<think>x</think> {IMG_SEARCH}", "tool", "image_search", {}, []),
    ('<tool_call>{"name": "image_search", "arguments": {"image": 2}}</tool_call>', "tool", "image_search",
     {"image": 2}, []),
    ('<tool_call>{"name": "image_search", "arguments": {}}</tool_call>', "tool", "image_search", {}, []),
    ('<tool_call>{"name": "search", "arguments": "{\\"query\\": \\"q\\"}"}</tool_call>', "tool", "search",
     {"query": "q"}, []),
    ('<tool_call>{"name": "search", "parameters": {"query": "q"}}</tool_call>', "tool", "search", {"query": "q"}, []),
    ("<think>done</think> <answer>B</answer>", "answer", None, "B", []),
    ("<think>done</think>\n<answer>\n  42 km \n</answer>", "answer", None, "42 km", []),
    ("<answer>red</answer>", "answer", None, "red", []),
    ("<think>maybe <answer>A</answer>?</think> <answer>C</answer>", "answer", None, "C", []),
    ("<think>a</think><answer>A</answer><answer>B</answer>", "answer", None, "A", ["multiple_answers"]),
    ("<think>a</think><answer> </answer>", "answer", None, "", ["empty_answer"]),
    ("<think>I could use <code> here but will not</think><answer>7</answer>", "answer", None, "7", []),
    ("<code>\n```python\nx = 1\nprint(x)\n```\n</code>", "code", "code", {"code": "x = 1\nprint(x)"}, []),
    ("<code>```python\nprint(1)\n```</code>", "code", "code", {"code": "print(1)"}, []),
    ("<code>\n```py\nprint(2)\n```\n</code>", "code", "code", {"code": "print(2)"}, []),
    ("<code>\n```python3\nprint(3)\n```\n</code>", "code", "code", {"code": "print(3)"}, []),
    ("<code>\n```\nprint(3)\n```\n</code>", "code", "code", {"code": "print(3)"}, []),
    ("<code>\n```python\na=1\n```\n```python\nb=2\n```\n</code>", "code", "code", {"code": "b=2"}, []),
    ("<code>\n```Python  \nprint(4)\n```\n</code>", "code", "code", {"code": "print(4)"}, []),
    ("<think>plan</think>\n\n" + CODE + "\n", "code", "code", {"code": "print(image_1.size)"}, []),
    # malformed: tool calls
    ('<tool_call>{"name": "search", "arguments": {"query": }</tool_call>', "invalid", None, None, ["invalid_json"]),
    ("<tool_call>search red sign</tool_call>", "invalid", None, None, ["invalid_json"]),
    ("<tool_call></tool_call>", "invalid", None, None, ["invalid_json"]),
    ('<tool_call>["search"]</tool_call>', "invalid", None, None, ["invalid_tool_call"]),
    ('<tool_call>{"arguments": {"query": "q"}}</tool_call>', "invalid", None, None, ["invalid_tool_call"]),
    ('<tool_call>{"name": "browse", "arguments": {"url": "x"}}</tool_call>', "invalid", None, None, ["unknown_tool"]),
    ('<tool_call>{"name": "code", "arguments": {"code": "1"}}</tool_call>', "invalid", None, None, ["unknown_tool"]),
    ('<tool_call>{"name": "search"}</tool_call>', "invalid", None, None, ["invalid_arguments"]),
    ('<tool_call>{"name": "search", "arguments": {"query": 5}}</tool_call>', "invalid", None, None,
     ["invalid_arguments"]),
    ('<tool_call>{"name": "search", "arguments": {"query": "q", "k": 3}}</tool_call>', "invalid", None, None,
     ["invalid_arguments"]),
    ('<tool_call>{"name": "image_search", "arguments": {"query": "q"}}</tool_call>', "invalid", None, None,
     ["invalid_arguments"]),
    ('<tool_call>{"name": "image_search", "arguments": {"image": 0}}</tool_call>', "invalid", None, None,
     ["invalid_arguments"]),
    ('<tool_call>{"name": "search", "arguments": [1]}</tool_call>', "invalid", None, None, ["invalid_arguments"]),
    ('<tool_call>{"name": "search", "arguments": "{bad"}</tool_call>', "invalid", None, None, ["invalid_json"]),
    # malformed: code
    ("<code>print(image_1.size)</code>", "invalid", None, None, ["code_without_fence"]),
    ("<code>\n```python\n\n```\n</code>", "invalid", None, None, ["empty_code"]),
    ("<code>\n```python\nprint(1)\n```\n", "invalid", None, None, ["unclosed_code"]),
    ("<think>x</think><code>\n```python\nprint(1)", "invalid", None, None, ["unclosed_code"]),
    ('<tool_call>{"name": "search", "arguments": {"query": "q"}}', "invalid", None, None, ["unclosed_tool_call"]),
    ("<think>x</think><answer>B", "invalid", None, None, ["unclosed_answer"]),
    # malformed: several actions / answer with a tool
    (CODE + "\n" + CODE, "invalid", None, None, ["multiple_actions"]),
    (CODE + "\n" + SEARCH, "invalid", None, None, ["multiple_actions"]),
    (SEARCH + IMG_SEARCH, "invalid", None, None, ["multiple_actions"]),
    ("<answer>B</answer>\n" + CODE, "invalid", None, None, ["answer_with_tool"]),
    (SEARCH + "<answer>B</answer>", "invalid", None, None, ["answer_with_tool"]),
    ("<answer>B</answer><code>\n```python\nprint(1)", "invalid", None, None, ["answer_with_tool"]),
    # no action
    ("<think>I am not sure what to do.</think>", "none", None, None, ["no_action"]),
    ("The sign is red.", "none", None, None, ["no_action"]),
    ("<think>unclosed thinking", "none", None, None, ["no_action"]),
]


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("text", "action", "tool", "expected", "issues"), CASES,
                         ids=[f"{i:02d}-{c[1]}" for i, c in enumerate(CASES)])
def test_parse(text: str, action: str, tool: str | None, expected: Any, issues: list[str]) -> None:
    parsed = parse_turn(text, TOOLS)
    assert parsed.action == action
    assert parsed.tool == tool
    assert parsed.issues == issues
    if action in ("code", "tool"):
        assert parsed.args == expected and parsed.feedback is None
    elif action == "answer":
        assert parsed.answer == expected and parsed.feedback is None
    else:  # every malformed turn carries a short corrective message for the model
        assert parsed.feedback and parsed.feedback.startswith("Error: ") and len(parsed.feedback) < 400


def test_original_wording_of_tool_call_errors() -> None:
    raw = '{"name": "search", "arguments": {"query": }'
    assert parse_turn(f"<tool_call>{raw}</tool_call>", TOOLS).feedback == (
        f"Error: Invalid tool call format: {raw}. Error: Expecting value: line 1 column 43 (char 42)")
    raw = '{"name": "browse"}'
    assert parse_turn(f"<tool_call>\n{raw}\n</tool_call>", TOOLS).feedback == f"Error: Invalid tool call name: {raw}."
    raw = '{"name": "image_search", "arguments": {"query": "q"}}'
    assert parse_turn(f"<tool_call>{raw}</tool_call>", TOOLS).feedback == (
        f"Error: Invalid tool call parameters for image search: {raw}.")
    fb = parse_turn('<tool_call>{"name": "search"}</tool_call>', TOOLS).feedback
    assert fb is not None and "'query' is a required property" in fb


def test_code_is_unknown_when_only_search_is_offered() -> None:
    parsed = parse_turn(CODE, {"search": TOOLS["search"]})
    assert parsed.action == "invalid" and parsed.issues == ["unknown_tool"]


def test_extract_answer_reads_after_the_last_think() -> None:
    assert extract_answer("<answer>A</answer><think>no</think><answer>B</answer><answer>C</answer>") == "B"
    assert extract_answer("<think><answer>A</answer></think>") == "A"
    assert extract_answer("nothing") is None


def test_split_segments() -> None:
    text = "<think>look</think>\n" + CODE
    assert split_segments(text) == [("think", "look"), ("code", "```python\nprint(image_1.size)\n```")]
    assert split_segments("plain <answer>x</answer>") == [("text", "plain "), ("answer", "x")]
