"""Parser and renderer details a mutant could break unnoticed (found by `make mutation`)."""

from __future__ import annotations

from typing import Any

import pytest

from deepeyes_cli.protocol.parser import extract_answer, extract_code, parse_turn, split_segments


def test_the_answer_after_the_last_think_block_wins() -> None:
    text = "<think>a</think><answer>1</answer><think>b</think><answer>2</answer>"
    assert extract_answer(text) == "2"
    text = "<think>x</think> <answer> first </answer><think>y</think>\n<answer>second</answer> <answer>third</answer>"
    assert extract_answer(text) == "second"  # the first after the last </think>


def test_without_an_answer_after_the_last_think_the_last_answer_anywhere() -> None:
    assert extract_answer("<answer>1</answer><answer>2</answer><think>late</think>") == "2"
    assert extract_answer("<answer> only </answer>") == "only"
    assert extract_answer("<think>no answer</think>") is None
    assert extract_answer("") is None


def test_extract_code_takes_the_last_fence() -> None:
    assert extract_code("```python\na = 1\n```\ntext\n```python\nb = 2\n```") is not None
    assert "b = 2" in (extract_code("```python\na = 1\n```\n```python\nb = 2\n```") or "")
    assert extract_code("no fence") is None



class _Tool:
    def __init__(self, name: str, parameters: dict[str, Any]) -> None:
        self.name, self.parameters, self.description = name, parameters, name


TOOLS: dict[str, Any] = {
    "code": _Tool("code", {"type": "object", "properties": {"code": {"type": "string"}}}),
    "crop": _Tool("crop", {"type": "object", "required": ["box"], "properties": {
        "box": {"type": "array", "items": {"type": "integer"}}, "opts": {"type": "object", "properties": {
            "scale": {"type": "number"}}}}}),
}


def _call(args: str) -> str:
    return f'<tool_call>{{"name": "crop", "arguments": {args}}}</tool_call>'


@pytest.mark.parametrize(("args", "problem"), [
    ('{"box": [1, "x"]}', "box.1: 'x' is not of type 'integer'"),
    ('{"box": [1], "opts": {"scale": "big"}}', "opts.scale: 'big' is not of type 'number'"),
    ("{}", "'box' is a required property"),  # at the top: no path in front
])
def test_argument_problems_name_where_they_are(args: str, problem: str) -> None:
    turn = parse_turn(_call(args), TOOLS)
    assert turn.action == "invalid" and turn.issues == ["invalid_arguments"]
    raw = _call(args)[len("<tool_call>"):-len("</tool_call>")]
    assert turn.feedback == f"Error: Invalid tool call parameters for crop: {raw}. {problem}"


def test_a_call_that_is_not_an_object_with_a_name() -> None:
    turn = parse_turn("<tool_call>[1, 2]</tool_call>", TOOLS)
    assert turn.issues == ["invalid_tool_call"]
    assert turn.feedback == "Error: Invalid tool call format: [1, 2]. Error: expected an object with a name"


def test_a_valid_call_has_no_issues() -> None:
    turn = parse_turn(_call('{"box": [1, 2]}'), TOOLS)
    assert (turn.action, turn.tool, turn.args, turn.issues, turn.feedback) == ("tool", "crop", {"box": [1, 2]}, [],
                                                                             None)


def test_earlier_issues_stay_with_an_invalid_turn() -> None:
    turn = parse_turn("<answer>1</answer><answer>2</answer><code>\n```python\nx\n```\n</code>", TOOLS)
    assert turn.action == "invalid" and turn.issues == ["multiple_answers", "answer_with_tool"]


def test_segments_for_display() -> None:
    text = "pre\n<think>X thought X</think>\nmid<code>\nXcodeX\n</code>\n<answer>X</answer>post"
    assert split_segments(text) == [("text", "pre"), ("think", "X thought X"), ("text", "mid"),
                                    ("code", "XcodeX"), ("answer", "X"), ("text", "post")]
    assert split_segments("<tool_call>\n{}\n</tool_call>") == [("tool_call", "{}")]
    assert split_segments("  \n ") == []
