"""Answer matching where a wrong rule verdict would be confident: alternatives decide only
when every one of them is decided, and anything one rule cannot settle goes to the judge
(``None``). Written against survivors of `make mutation` and a planted ``all``→``any``."""

from __future__ import annotations

import pytest

from deepeyes_cli.rewards.match import Verdict, match_answer


@pytest.mark.parametrize(("prediction", "ground_truth", "expected"), [
    ("5", "3 or a few", Verdict(None, "alternatives_unsure")),  # "3" says no, "a few" cannot say: the judge
    ("dog", "cat or a small dog", Verdict(None, "alternatives_unsure")),
    ("7", "3 or 4", Verdict(False, "alternatives")),  # every alternative says no: a confident no
    ("C", "A or B", Verdict(False, "alternatives")),
    ("3", "3 or a few", Verdict(True, "alternatives:number")),
    ("a few", "3 or a few", Verdict(True, "alternatives:exact")),
    ("4", "3 or 4", Verdict(True, "alternatives:number")),
])
def test_alternatives(prediction: str, ground_truth: str, expected: Verdict) -> None:
    assert match_answer(prediction, ground_truth) == expected


def test_alternatives_can_be_turned_off() -> None:
    assert match_answer("4", "3 or 4", alternatives=False).correct is not True


def test_a_solution_set_is_one_answer_not_alternatives() -> None:
    assert match_answer("x=2", "x=2 or x=3").correct is not True


def test_an_empty_answer_and_several_boxed_answers() -> None:
    assert match_answer("", "3") == Verdict(False, "empty_answer")
    assert match_answer("   ", "3") == Verdict(False, "empty_answer")
    assert match_answer("\\boxed{A} or \\boxed{B}", "A") == Verdict(None, "several_boxed")
    assert match_answer("\\boxed{A} then \\boxed{ A }", "A").correct is True  # the same one twice
