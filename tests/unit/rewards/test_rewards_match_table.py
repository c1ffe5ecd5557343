"""The answer-matching table: (question, ground truth, prediction) → verdict.

``True``/``False`` are confident rule verdicts; ``None`` means no rule may decide and the
judge must. English and Chinese, every dress of a multiple-choice letter, numbers with
units, separators and tolerance, alternatives, math, and the tricky negatives.
"""

from __future__ import annotations

import pytest

from deepeyes_cli.rewards.match import match_answer

Q = "Which option is correct?"
OPTS = "Which animal is on the sofa?\nA. dog\nB. cat\nC. bird"
ANIMALS = ["dog", "cat", "bird"]

# (question, ground truth, prediction, choices, expected verdict)
CASES: list[tuple[str, str, str, list[str] | None, bool | None]] = [
    # multiple choice: the letter in any dress
    (Q, "B", "B", None, True),
    (Q, "B", "(B)", None, True),
    (Q, "B", "B.", None, True),
    (Q, "B", "\\boxed{B}", None, True),
    (Q, "B", "\\boxed{\\text{B}}", None, True),
    (Q, "B", "The answer is B.", None, True),
    (Q, "B", "the correct answer is (B)", None, True),
    (Q, "B", "Answer: B", None, True),
    (Q, "B", "**B**", None, True),
    (Q, "B", "B. The red car", None, True),
    (Q, "B", "(B) the red car", None, True),
    (Q, "B", "Option B", None, True),
    (Q, "B", "b", None, True),
    (Q, "(B)", "B", None, True),
    (Q, "B", "Ｂ", None, True),
    (Q, "B", "C", None, False),
    (Q, "B", "(A)", None, False),
    (Q, "B", "The answer is D.", None, False),
    # multiple choice: several letters, rejections, prose
    (Q, "B", "BC", None, False),
    (Q, "B", "B, C", None, False),
    (Q, "BC", "B", ANIMALS, False),
    (Q, "BC", "C, B", ANIMALS, True),
    (Q, "BC", "选项B和C", ANIMALS, True),
    (Q, "AC", "The correct options are (A) and (C).", ANIMALS, True),
    (Q, "B", "选项B和C", None, False),
    (Q, "B", "Option A is wrong; option B is right.", None, True),
    (Q, "A", "not A", None, False),
    (Q, "B", "not A", None, None),
    (Q, "B", "It is not A; the answer is B.", None, True),
    (Q, "C", "A man is walking a dog.", None, None),
    (Q, "A", "The answer is a cat.", None, None),
    # multiple choice: the option's text
    ("Which animal?", "B", "cat", ANIMALS, True),
    ("Which animal?", "B", "a dog", ANIMALS, False),
    ("Which animal?", "cat", "B", ANIMALS, True),
    ("Which animal?", "cat", "(A)", ANIMALS, False),
    (OPTS, "B", "Cat.", None, True),
    (OPTS, "B", "bird", None, False),
    # multiple choice in Chinese
    (Q, "B", "答案是B", None, True),
    (Q, "B", "选B", None, True),
    (Q, "B", "B项", None, True),
    (Q, "B", "正确答案为B。", None, True),
    (Q, "B", "答案：(C)", None, False),
    (Q, "A", "不是A", None, False),
    # numbers
    ("How many?", "12", "12", None, True),
    ("How many?", "12", "120", None, False),
    ("How many?", "120", "12", None, False),
    ("How many?", "12", "12.0", None, True),
    ("How many?", "1,234", "1234", None, True),
    ("How many?", "1234", "1,234", None, True),
    ("How many?", "1,234,567", "1234567", None, True),
    ("What value?", "3.14", "3.1416", None, True),
    ("What value?", "3.5", "3.8", None, False),
    ("What value?", "-5", "−5", None, True),
    ("What value?", "1/2", "0.5", None, True),
    ("What share?", "45%", "45", None, True),
    ("What share?", "45%", "0.45", None, True),
    ("What share?", "0.45", "45%", None, True),
    ("What share?", "45%", "54%", None, False),
    ("How long?", "12 cm", "12", None, True),
    ("How long?", "12 cm", "12 centimeters", None, True),
    ("How long?", "5 m", "500 cm", None, None),
    ("What price?", "$1,200", "1200 dollars", None, True),
    ("How many people?", "1.2 million", "1,200,000", None, True),
    ("What angle?", "30°", "30 degrees", None, True),
    ("How many?", "12", "There are 12 apples in the picture.", None, True),
    ("How many?", "12", "There are 13 apples.", None, False),
    ("How many?", "12", "between 10 and 12", None, None),
    ("How many?", "12", "not 12", None, None),
    ("How many?", "12", "twelve", None, True),
    # numbers in Chinese
    ("有几个苹果？", "12", "12个", None, True),
    ("有几个苹果？", "12", "十二", None, True),
    ("有几个人？", "3", "三个", None, True),
    ("哪一年？", "1998", "1998年", None, True),
    ("多重？", "5公斤", "5 kg", None, True),
    ("有几个？", "20", "二十一", None, False),
    # yes / no
    ("Is the light on?", "yes", "Yes, the light is on.", None, True),
    ("Is the light on?", "yes", "No.", None, False),
    ("Is there a dog?", "no", "No, there is none.", None, True),
    ("Is there a dog?", "no", "No, it is not.", None, True),
    ("Is there a dog?", "yes", "Yes, but it is not a dog.", None, None),
    ("Is there a dog?", "no", "No idea.", None, None),
    ("Is there a dog?", "no", "not sure", None, None),
    ("Is it open?", "Yes", "yes and no", None, None),
    ("灯开着吗？", "是", "是的", None, True),
    ("有狗吗？", "否", "不是", None, True),
    ("灯开着吗？", "是", "不是", None, False),
    # text
    ("What landmark?", "The Eiffel Tower", "eiffel tower", None, True),
    ("What landmark?", "Eiffel Tower", "the Eiffel Tower.", None, True),
    ("Which city?", "St. Louis", "St Louis", None, True),
    ("Which city?", "New York City", "new-york city", None, True),
    ("哪个城市？", "北京", "北京。", None, True),
    ("哪个城市？", "北京", "上海", None, None),
    ("What colour?", "red", "The car is red", None, None),
    ("Which language?", "C++", "C", None, None),
    # alternatives in the ground truth (RealX-Bench joins them with "or")
    ("Which city?", "Paris or Lyon", "Lyon", None, True),
    ("Which city?", "Paris or Lyon", "paris", None, True),
    ("Which city?", "Paris or Lyon", "Berlin", None, None),
    ("How many?", "12 or 13", "13", None, True),
    ("How many?", "12 or 13", "14", None, False),
    ("是什么动物？", "猫或狗", "狗", None, True),
    # math (math-verify)
    ("Compute.", "\\frac{1}{2}", "0.5", None, True),
    ("Compute.", "x^2+1", "x^2-1", None, False),
    ("Simplify.", "2x+1", "1+2x", None, True),
    ("Simplify.", "\\sqrt{18}", "3\\sqrt{2}", None, True),
    ("Solve.", "x=5", "5", None, True),
    ("Compute.", "\\pi/2", "\\frac{\\pi}{2}", None, True),
    ("Which interval?", "[0,1)", "[0, 1)", None, True),
    ("Compute.", "\\frac{\\sqrt{3}}{2}", "\\sin 60^\\circ", None, None),
    # nothing to grade
    (Q, "B", "", None, False),
    (Q, "B", "   ", None, False),
]


def test_table_is_large_enough_and_covers_both_languages() -> None:
    assert len(CASES) >= 80
    assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in q + g + p) for q, g, p, _, _ in CASES) >= 15
    assert {v for *_, v in CASES} == {True, False, None}


@pytest.mark.parametrize(("question", "ground_truth", "prediction", "choices", "expected"), CASES,
                         ids=[f"{g!r}-vs-{p!r}" for _, g, p, _, _ in CASES])
def test_verdict(question: str, ground_truth: str, prediction: str, choices: list[str] | None,
                 expected: bool | None) -> None:
    verdict = match_answer(prediction, ground_truth, question=question, choices=choices)
    assert verdict.correct is expected, verdict.rule
