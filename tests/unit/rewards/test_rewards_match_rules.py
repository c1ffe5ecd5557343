"""Every rule of ``rewards/match.py``, each verdict checked with the rule that gave it.

A fast subset (116 rows) of what the 219-row answer table covers (no slow math-verify rows), chosen so
each branch of match.py is reached: `make mutation` runs this instead of the table for the
mutants of match.py (one mutant then costs ~0.3 s instead of ~3 s). The rule named in a
verdict is what `deepeyes judge` reports per sample, so it is asserted too.
"""

from __future__ import annotations

import pytest

from deepeyes_cli.rewards.match import Verdict, match_answer

Q = "Which option is correct?"
OPTS = "Which animal is on the sofa?\nA. dog\nB. cat\nC. bird"
YES_NO_OPTS = "Is it on?\nA. Yes\nB. No"
ANIMALS = ["dog", "cat", "bird"]
FOUR = [*ANIMALS, "fish"]

# (question, ground truth, prediction, choices, correct, rule)
ROWS: list[tuple[str, str, str, list[str] | None, bool | None, str]] = [
    # multiple choice: letters
    (Q, "B", "B", None, True, "choice_letter"),
    (Q, "B", "The answer is B, I think.", None, True, "choice_letter"),
    (Q, "B", "C", None, False, "choice_letter"),
    (Q, "B", "BC", None, False, "choice_letter"),
    (Q, "BC", "B", ANIMALS, False, "choice_letter"),  # several gold letters need a question's options
    (Q, "BC", "C, B", ANIMALS, True, "choice_letter"),
    (Q, "ABD", "Answer: A, B, and D", FOUR, True, "choice_letter"),
    (Q, "C", "Answer: A. Wait, actually B.", None, False, "choice_letter"),  # never names C
    (Q, "B", "Answer: A. Wait, actually B.", None, None, "choice_unsure"),
    (Q, "A", "(A) or (B)", None, None, "choice_unsure"),
    (Q, "A", "A. No, that's wrong", None, None, "choice_unsure"),
    (Q, "C", "The answer is D, not C.", None, False, "choice_letter"),
    (Q, "D", "The answer is D, not C.", None, True, "choice_letter"),
    ("Which one?", "Option B", "B", None, True, "choice_letter"),
    # "(B) No" where option B is "No": a plain pick, though "No" alone sounds like doubt
    (YES_NO_OPTS, "B", "(B) No", None, True, "choice_letter"),
    (YES_NO_OPTS, "A", "(B) No", None, False, "choice_letter"),
    (Q, "A", "(B) No", None, False, "choice_letter"),  # no options: "No" is doubt, but A is never named
    (Q, "B", "(B) No", None, None, "choice_unsure"),
    # multiple choice: the option's text, in the choices or in the question
    ("Which animal?", "B", "cat", ANIMALS, True, "choice_text"),
    ("Which animal?", "B", "a dog", ANIMALS, False, "choice_text"),
    ("Which animal?", "cat", "B", ANIMALS, True, "choice_letter"),  # the gold as option text
    ("Which animal?", "cat", "(A)", ANIMALS, False, "choice_letter"),
    (OPTS, "B", "a cat", None, True, "choice_text"),
    (OPTS, "B", "bird", None, False, "choice_text"),
    (OPTS, "cat", "B", None, True, "choice_letter"),
    ("", "B", "cat", None, None, "choice_unread"),  # no question, no options: "cat" is not read
    # multiple choice: rejections and prose
    (Q, "A", "not A", None, False, "choice_rejected"),
    (Q, "A", "A is not the answer", None, False, "choice_rejected"),
    (Q, "B", "not A", None, None, "choice_unread"),  # rejecting A says nothing about B
    (Q, "AB", "not A", ANIMALS, None, "choice_unread"),  # only part of the gold rejected
    (Q, "A", "A cat", None, None, "choice_unread"),
    # yes / no
    ("Is the light on?", "yes", "Yes, the light is on.", None, True, "yes_no"),
    ("Is the light on?", "yes", "No.", None, False, "yes_no"),
    ("Is there a dog?", "no", "No, it is not.", None, True, "yes_no"),
    ("Is there a dog?", "yes", "Yes it is", None, True, "yes_no"),
    ("Is there a dog?", "Yes", "YES!", None, True, "yes_no"),
    ("Is there a dog?", "yes", "Yes-ish", None, None, "yes_no_unread"),
    ("Is there a dog?", "yes", "No doubt", None, None, "yes_no_unread"),
    ("Is there a dog?", "yes", "Yes, but it is not a dog.", None, None, "yes_no_unread"),
    ("Is there a dog?", "yes", "Yes, it isn't a dog.", None, None, "yes_no_unread"),
    ("Is there a dog?", "yes", "Yes, it never is.", None, None, "yes_no_unread"),
    ("Is there a dog?", "yes", "Yes, it cannot be.", None, None, "yes_no_unread"),
    ("Is there a dog?", "no", "No, that's right.", None, None, "yes_no_unread"),
    ("Is there a dog?", "no", "No, actually it is there.", None, None, "yes_no_unread"),
    ("Is there a dog?", "yes", "Perhaps yes", None, None, "yes_no_unread"),
    ("Is there a dog?", "yes", "1 yes", None, None, "yes_no_unread"),  # yes is not what it starts with
    ("Is there a dog?", "yes", "Yes; there is.", None, True, "yes_no"),
    ("Is there a dog?", "yes", "Yes: there is.", None, True, "yes_no"),
    ("Is there a dog?", "yes and no", "yes", None, None, "no_rule"),  # a reference that is not one word
    ("灯开着吗？", "是", "是的", None, True, "yes_no"),
    ("灯开着吗？", "是", "不是", None, False, "yes_no"),
    ("有狗吗？", "否", "不是", None, True, "yes_no"),
    ("灯开着吗？", "否", "不是，它是红色的。", None, True, "yes_no"),
    ("灯开着吗？", "是", "是，但也不是", None, None, "yes_no_unread"),
    ("灯开着吗？", "否", "不是，但是有点", None, None, "yes_no_unread"),
    ("灯开着吗？", "是", "是吗", None, None, "yes_no_unread"),  # 是 glued to more text
    ("灯开着吗？", "是的吧", "是", None, None, "no_rule"),  # a reference must be the yes word alone
    ("灯开着吗？", "是", "yes", None, True, "yes_no"),
    ("Is it on?", "yes", "是", None, True, "yes_no"),
    # numbers
    ("How many?", "12", "12", None, True, "number"),
    ("How many?", "12", "120", None, False, "number"),
    ("What value?", "3.14", "3.1", None, None, "number_unsure"),
    ("How many?", "1000", "1.000", None, None, "number_unsure"),  # "." may group thousands
    ("How many?", "-1000", "-1.000", None, None, "number_unsure"),
    ("What value?", "1.5", "1,500", None, None, "number_unsure"),  # "," may be the decimal mark
    ("What value?", "-1.5", "-1,500", None, None, "number_unsure"),
    ("How many?", "1000", "2.000", None, False, "number"),  # either way it is not 1000
    ("How many?", "1500", "1,500", None, True, "number"),
    ("What value?", "10", "10.5", None, False, "number"),  # half-way is not 10
    ("What value?", "12", "12.5", None, False, "number"),
    ("How long?", "5 m", "500 cm", None, None, "no_rule"),  # the judge converts
    ("How long?", "12 cm", "12", None, True, "number"),
    ("How many?", "12", "not 12", None, None, "no_rule"),
    ("How many?", "12", ">12", None, None, "no_rule"),
    ("How many?", "12", "12th", None, None, "no_rule"),
    # numbers inside a sentence
    ("How many?", "12", "There are 12 apples in the picture.", None, True, "number_in_text"),
    ("How many?", "12", "There are 13 apples.", None, False, "number_in_text"),
    ("How many?", "12", "有12个苹果", None, True, "number_in_text"),
    ("How many?", "12", "It is 12 o'clock now, 12 people came", None, True, "number_in_text"),
    ("How many?", "12", "There are 12.4 apples.", None, None, "number_in_text_unsure"),
    ("How long?", "12 cm", "It is 12cm long.", None, True, "number_in_text"),
    ("How long?", "12 cm", "The length is 12 mm.", None, None, "no_rule"),
    ("How long?", "12", "It is 12 mm wide and 12 cm tall.", None, None, "no_rule"),  # two units
    ("How many?", "14", "12,13 and 14", None, None, "no_rule"),
    ("How many?", "3", "There are 3 cars and five bikes.", None, None, "no_rule"),
    ("How many?", "3", "There are no apples here.", None, None, "no_rule"),
    ("How many floors?", "3", "It is the building with the 3 large windows facing the street, next to the "
     "old church and the market square.", None, None, "no_rule"),
    ("How many floors?", "3", "It has 3 floors, " + "x" * 83, None, True, "number_in_text"),  # 100 characters
    ("How many floors?", "3", "It has 3 floors, " + "x" * 84, None, None, "no_rule"),  # 101
    ("Solve.", "5", "x+5", None, False, "math"),  # math, not a sentence with a number
    # text
    ("What landmark?", "The Eiffel Tower", "eiffel tower", None, True, "exact"),
    ("Which city?", "Paris", "PARIS", None, True, "exact"),
    ("Which variable?", "a", "a", None, True, "exact"),
    ("What colour?", "red", "The car is red", None, None, "no_rule"),
    ("Which language?", "C++", "C", None, None, "no_rule"),
    ("Which word?", "an", "the", None, None, "no_rule"),  # both normalize to nothing: not equal
    ("Which city?", "Paris", "...", None, False, "empty_answer"),
    # math (fast rows only)
    ("Simplify.", "2x+1", "1+2x", None, True, "math"),
    ("Simplify.", "x+2", "x+1", None, False, "math"),
    ("Simplify.", "x^2+1", "X^2 + 1", None, True, "exact"),
    ("Compute.", "\\frac{\\pi}{3}", "60°", None, None, "no_rule"),
    ("Which interval?", "[0,1)", "[0, 1)", None, True, "exact"),
    # alternatives in the ground truth
    ("Which city?", "Paris or Lyon", "Lyon", None, True, "alternatives:exact"),
    ("How many?", "12 or 13", "13", None, True, "alternatives:number"),
    ("How many?", "12 or 13", "14", None, False, "alternatives"),
    ("How many?", "12 or 13", "12 or 14", None, None, "alternatives_unsure"),
    ("是什么动物？", "猫或狗", "狗", None, True, "alternatives:exact"),
    ("是什么动物？", "猫或者狗", "狗", None, True, "alternatives:exact"),
    ("Which city?", "Paris OR Lyon", "Lyon", None, True, "alternatives:exact"),
    ("Which city?", "Paris or", "Paris", None, None, "no_rule"),  # one alternative only: the whole decides
    ("Solve.", "x=2 or x=3", "x=3", None, False, "math"),
    ("Which option is correct?", "A or B", "C", None, False, "alternatives"),
    # empty and several boxed answers
    (Q, "B", "   ", None, False, "empty_answer"),
    (Q, "B", "\\boxed{A} or \\boxed{B}", None, None, "several_boxed"),
    (Q, "B", "\\boxed{B} so \\boxed{ B }", None, True, "choice_letter"),
    (Q, "B", "boxed B", None, None, "choice_unread"),  # the word, not a \\boxed{}
]


@pytest.mark.parametrize(("question", "ground_truth", "prediction", "choices", "correct", "rule"), ROWS,
                         ids=[f"{g!r}-vs-{p!r}".replace("\\", "/") for _, g, p, _, _, _ in ROWS])
def test_rule(question: str, ground_truth: str, prediction: str, choices: list[str] | None,
              correct: bool | None, rule: str) -> None:
    assert match_answer(prediction, ground_truth, question=question, choices=choices) == Verdict(correct, rule)


def test_relative_tolerance_reaches_the_number_rules() -> None:
    assert match_answer("10.4", "10.0", rel_tol=0.05) == Verdict(True, "number")
    assert match_answer("10.6", "10.0", rel_tol=0.05) == Verdict(False, "number")
    assert match_answer("It is 10.4 cm.", "10.0 cm", rel_tol=0.05) == Verdict(True, "number_in_text")
    assert match_answer("10.4", "10.0 or 20.0", rel_tol=0.05) == Verdict(True, "alternatives:number")


def test_choices_given_win_over_options_in_the_question() -> None:
    assert match_answer("cat", "A", question=OPTS, choices=["cat", "dog"]) == Verdict(True, "choice_text")
    assert match_answer("cat", "B", question=OPTS) == Verdict(True, "choice_text")
