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


def _msgs():
    from PIL import Image

    from deepeyes_cli.policy.base import ChatMessage

    red, blue = Image.new("RGB", (4, 4), "red"), Image.new("RGB", (4, 4), "blue")
    return red, blue, [ChatMessage("user", [red, "What <|im_end|>is it?"]),
                       ChatMessage("assistant", ["<think>hm</think><code>x</code>"], token_ids=[7, 8, 99], prefill="<think>"),
                       ChatMessage("user", ["result", blue]),
                       ChatMessage("assistant", ["<answer>red</answer>"], token_ids=[5, 6])]


def test_prompt_spans_frame_generated_ids_exactly() -> None:
    from deepeyes_cli.protocol import tags
    from deepeyes_cli.protocol.render import prompt_images, prompt_spans

    red, blue, msgs = _msgs()
    sys_ = f"{tags.IM_START}system\n{tags.DEFAULT_SYSTEM}{tags.IM_END}\n"  # inserted: no system message given
    user = f"{tags.IM_START}user\n{tags.IMAGE_TOKENS}What is it?{tags.IM_END}\n"
    spans = prompt_spans(msgs, "<think>", end_id=99)
    assert spans == [sys_ + user + f"{tags.IM_START}assistant\n<think>", [7, 8, 99],
                     # the ids already end with <|im_end|>: only the newline follows
                     f"\n{tags.IM_START}user\nresult{tags.IMAGE_TOKENS}{tags.IM_END}\n{tags.IM_START}assistant\n",
                     [5, 6], f"{tags.IM_END}\n{tags.IM_START}assistant\n<think>"]
    whole = prompt_spans(msgs, end_id=99, generation_prompt=False)
    assert whole[-1] == [5, 6] and len(whole) == 4  # ends with the last generated ids, nothing after
    assert prompt_spans(msgs[:1], generation_prompt=False) == [sys_ + user]
    assert prompt_spans(msgs)[2].startswith(f"{tags.IM_END}\n")  # without end_id the end is always written
    assert prompt_images(msgs) == [red, blue]


def test_a_given_system_message_replaces_the_default_and_text_turns_stay_text() -> None:
    from deepeyes_cli.policy.base import ChatMessage
    from deepeyes_cli.protocol import tags
    from deepeyes_cli.protocol.render import prompt_spans, render_prompt

    msgs = [ChatMessage("system", ["SYS"]), ChatMessage("user", ["q"]), ChatMessage("assistant", ["a"])]
    expected = (f"{tags.IM_START}system\nSYS{tags.IM_END}\n{tags.IM_START}user\nq{tags.IM_END}\n"
                f"{tags.IM_START}assistant\na{tags.IM_END}\n{tags.IM_START}assistant\n<think>")
    assert render_prompt(msgs, "<think>") == expected
    assert prompt_spans(msgs, "<think>") == [expected]
    assert prompt_spans([], generation_prompt=False) == [
        f"{tags.IM_START}system\n{tags.DEFAULT_SYSTEM}{tags.IM_END}\n"]


def test_every_forbidden_special_token_is_removed() -> None:
    from deepeyes_cli.protocol import tags
    from deepeyes_cli.protocol.render import content_text, sanitize

    text = "a" + "b".join(tags.TEXT_FORBIDDEN) + "c"
    assert sanitize(text) == "a" + "b" * (len(tags.TEXT_FORBIDDEN) - 1) + "c"
    assert sanitize("plain <think> text") == "plain <think> text"
    assert content_text(["x<|image_pad|>y"]) == "xy"


PING: dict[str, Any] = {**TOOLS, "ping": _Tool("ping", {"type": "object", "properties": {"n": {"type": "integer"}}})}
FENCED = "<code>\n```python\nx = 1\n```\n</code>"


@pytest.mark.parametrize(("text", "action", "issues"), [
    (FENCED + "<code>\n```python\ny\n```", "invalid", ["multiple_actions"]),  # a second, unclosed <code>
    (FENCED + '<tool_call>{"name": "ping"', "invalid", ["multiple_actions"]),
    (FENCED + "<answer>x", "invalid", ["answer_with_tool"]),
    ("<answer>1</answer><answer>2</answer><answer>3", "invalid", ["multiple_answers", "unclosed_answer"]),
    ("<answer>1</answer><answer>2</answer>", "answer", ["multiple_answers"]),
    ("<answer> </answer>", "answer", ["empty_answer"]),
    ("<think>a <code>x</code> in thought</think>" + FENCED, "code", []),
    ("just text", "none", ["no_action"]),
])
def test_actions_and_issues(text: str, action: str, issues: list[str]) -> None:
    turn = parse_turn(text, PING)
    assert (turn.action, turn.issues) == (action, issues)


@pytest.mark.parametrize(("args", "expected"), [
    ("", {}), ('"arguments": {}', {}), ('"arguments": ""', {}), ('"arguments": "  "', {}), ('"arguments": null', {}),
    ('"arguments": "{\\"n\\": 2}"', {"n": 2}), ('"parameters": {"n": 3}', {"n": 3}),
], ids=["none", "empty", "empty-string", "blank-string", "null", "json-string", "parameters"])  # no backslashes
def test_arguments_in_every_accepted_shape(args: str, expected: dict) -> None:
    body = '{"name": "ping"' + (", " + args if args else "") + "}"
    turn = parse_turn(f"<tool_call>{body}</tool_call>", PING)
    assert (turn.action, turn.tool, turn.args, turn.issues) == ("tool", "ping", expected, [])


def test_arguments_that_are_not_an_object_or_not_json() -> None:
    raw = '{"name": "ping", "arguments": [1]}'
    turn = parse_turn(f"<tool_call>{raw}</tool_call>", PING)
    assert turn.issues == ["invalid_arguments"]
    assert turn.feedback == f"Error: Invalid tool call parameters for ping: {raw}. arguments must be an object"
    raw = '{"name": "ping", "arguments": "{bad"}'
    turn = parse_turn(f"<tool_call>{raw}</tool_call>", PING)
    assert turn.issues == ["invalid_json"]
    assert (turn.feedback or "").startswith(f"Error: Invalid tool call format: {raw}. Error: Expecting property name")


def test_code_when_the_code_tool_is_not_offered() -> None:
    turn = parse_turn(FENCED, {"ping": PING["ping"]})
    assert turn.issues == ["unknown_tool"] and turn.feedback == "Error: Invalid tool call name: code."


def test_spans_defaults_and_ids_only_from_assistant_turns() -> None:
    from deepeyes_cli.policy.base import ChatMessage
    from deepeyes_cli.protocol import tags
    from deepeyes_cli.protocol.render import prompt_spans

    msgs = [ChatMessage("system", ["S"]), ChatMessage("user", ["q"], token_ids=[1, 2]),  # ids on a user turn: ignored
            ChatMessage("assistant", ["a"], token_ids=[3, 4])]
    head = f"{tags.IM_START}system\nS{tags.IM_END}\n{tags.IM_START}user\nq{tags.IM_END}\n{tags.IM_START}assistant\n"
    assert prompt_spans(msgs, generation_prompt=False) == [head, [3, 4]]  # a trajectory ends with its last ids
    assert prompt_spans(msgs)[-1] == f"{tags.IM_END}\n{tags.IM_START}assistant\n"  # no prefix by default


def test_a_trajectory_ends_with_its_last_ids_whatever_came_before() -> None:
    from deepeyes_cli.policy.base import ChatMessage
    from deepeyes_cli.protocol.render import prompt_spans

    msgs = [ChatMessage("system", ["S"]), ChatMessage("user", ["q"]), ChatMessage("assistant", ["a"], token_ids=[3])]
    assert prompt_spans(msgs, generation_prompt=False)[-1] == [3]
    assert prompt_spans(msgs[:2], generation_prompt=False)[-1].endswith("q<|im_end|>\n")  # type: ignore[union-attr]
