"""Format rules on the trajectory shapes the protocol produces."""

from __future__ import annotations

import pytest

from deepeyes_cli.rewards.format import check_format
from deepeyes_cli.rewards.synthetic import answer_turn, code_turn, search_turn

CODE = code_turn("Let me zoom in on the sign.", "print(image_1.size)")
SEARCH = search_turn("I should look this up.", "Eiffel tower height")


def rules(report) -> list[str]:
    return [v.rule for v in report.violations]


def warned(report) -> list[str]:
    return [v.rule for v in report.warnings]


def test_well_formed_multi_turn_code_then_answer() -> None:
    r = check_format([CODE, answer_turn("The sign says B.", "B")])
    assert r.ok and r.answer == "B" and r.code_calls == 1 and r.tool_calls == 0 and not r.warnings


def test_well_formed_search_trajectory_counts_tool_calls() -> None:
    r = check_format([SEARCH, search_turn("Now by image."), answer_turn("Found it.", "330 m")], tool_call_tags=True)
    assert r.ok and r.tool_calls == 2 and r.answer == "330 m"


def test_first_turn_without_think_gets_one_prepended_as_in_the_original() -> None:
    r = check_format(["The image shows a cat.</think>\n<answer>cat</answer>"])
    assert r.ok and r.answer == "cat"


def test_unclosed_think() -> None:
    r = check_format(["<think>I see a cat <answer>cat</answer>"])
    assert rules(r) == ["think_missing"]
    r = check_format([CODE, "<think>still thinking</think><think>more"])
    assert "think_unbalanced" in rules(r) and "answer_missing" in rules(r)


def test_unclosed_code_from_a_turn_cut_at_the_length_limit() -> None:
    r = check_format(["<think>crop it</think>\n<code>\n```python\nfor i in range(10**9):"])
    assert rules(r) == ["code_unbalanced", "answer_missing"] and r.answer is None


def test_unclosed_answer() -> None:
    r = check_format(["<think>easy</think>\n<answer>B"])
    assert rules(r) == ["answer_missing"] and r.answer is None
    r = check_format(["<think>easy</think>\n<answer>B</answer><answer>C"])
    assert rules(r) == ["answer_unbalanced"] and r.answer == "B"


def test_answer_outside_tags() -> None:
    r = check_format([CODE, "<think>It is B.</think>\nThe answer is B."])
    assert rules(r) == ["answer_missing"] and "untagged_text" in warned(r)
    strict = check_format([CODE, "<think>It is B.</think>\nThe answer is B."], strict=True)
    assert rules(strict) == ["answer_missing", "untagged_text"]


def test_answer_inside_think_is_not_an_answer() -> None:
    r = check_format(["<think>so <answer>B</answer></think>"])
    assert rules(r) == ["answer_missing"] and "answer_inside_think" in warned(r)


def test_tool_call_after_answer_keeps_the_original_verdict_unless_strict() -> None:
    turn = answer_turn("B it is.", "B") + '\n<tool_call>\n{"name": "search", "arguments": {"query": "x"}}\n</tool_call>'
    r = check_format([turn], tool_call_tags=True)
    assert r.ok and r.answer == "B" and r.tool_calls == 1  # the original counted tags only
    assert {"action_after_answer", "multiple_actions"} <= set(warned(r))
    strict = check_format([turn], tool_call_tags=True, strict=True)
    assert "action_after_answer" in rules(strict)


@pytest.mark.parametrize(("length", "ok"), [(299, True), (300, False), (1000, False)])
def test_over_long_answer(length: int, ok: bool) -> None:
    r = check_format([answer_turn("long", "x" * length)])
    assert r.ok is ok
    assert (rules(r) == ["answer_too_long"]) is not ok
    assert check_format([answer_turn("long", "x" * length)], answer_char_limit=None).ok  # `reason` has no limit


def test_empty_answer() -> None:
    assert rules(check_format([answer_turn("hm", "   ")])) == ["answer_empty"]
    assert rules(check_format(["<think>x</think></answer>B<answer>"])) == ["answer_empty"]


def test_unbalanced_tool_call_only_matters_where_the_source_checks_it() -> None:
    turns = ['<think>search</think>\n<tool_call>\n{"name": "image_search"}', answer_turn("ok", "Paris")]
    assert rules(check_format(turns, tool_call_tags=True)) == ["tool_call_unbalanced"]
    assert check_format(turns, tool_call_tags=False).ok


def test_first_answer_after_the_last_think_is_graded() -> None:
    r = check_format(["<think>x</think>\n<answer>B</answer>\n<answer>C</answer>"])
    assert r.ok and r.answer == "B"
    assert "text_after_answer" in warned(r)


def test_malformed_calls_are_warnings_by_default() -> None:
    turns = ["<think>a</think>\n<tool_call>\n{name: search}\n</tool_call>",
             '<think>b</think>\n<tool_call>\n{"name": "browse"}\n</tool_call>',
             '<think>c</think>\n<tool_call>\n{"name": "image_search", "arguments": {"q": 1}}\n</tool_call>',
             "<think>d</think>\n<code>\nprint(1)\n</code>",
             answer_turn("done", "B")]
    r = check_format(turns, tool_call_tags=True)
    assert r.ok
    assert warned(r) == ["tool_call_malformed"] * 3 + ["code_block_missing"]
    assert rules(check_format(turns, tool_call_tags=True, strict=True)) == warned(r)
