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
FOUR = [*ANIMALS, "fish"]

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

# Cases found by trying to break the rules (each was a wrong confident verdict, or guards one).
# A wrong "correct" is the worst outcome (a rule verdict is final), so doubt goes to the judge.
ADVERSARIAL: list[tuple[str, str, str, list[str] | None, bool | None]] = [
    # several letters, hedges, a pick taken back, a letter that is an article or a pronoun
    (Q, "A", "A or B?", None, None),
    (Q, "A", "(A) or (B)", None, None),
    (Q, "A", "The answer is A or B", None, None),
    (Q, "A", "答案是A或B", None, None),
    (Q, "C", "C. D", None, None),
    (Q, "B", "Answer: A. Wait, actually B.", None, None),
    (Q, "C", "Answer: A. Wait, actually B.", None, False),  # never names C
    (Q, "A", "A. No, that's wrong", None, None),
    (Q, "A", "A, B, and D", FOUR, False),
    (Q, "A", "A, B and D", FOUR, False),
    (Q, "ABD", "Answer: A, B, and D", FOUR, True),
    (Q, "B", "The answer is B, I think.", None, True),
    (Q, "B", "\\boxed{A} or \\boxed{B}", None, None),
    (Q, "B", "\\boxed{B} so \\boxed{ B }", None, True),
    (Q, "A", "A cat", None, None),
    (OPTS, "B", "a cat", None, True),
    (OPTS, "B", "B. A cat on the sofa", None, True),
    ("Is it on?\nA. Yes\nB. No", "B", "(B) No", None, True),
    ("Is it on?\nA. Yes\nB. No", "A", "(B) No", None, False),
    (Q, "B", "Option B", None, True),
    ("Which one?", "Option B", "B", None, True),
    # rejections in other words, and a rejection taken back
    (Q, "A", "Option A is wrong", None, False),
    (Q, "A", "A is not the answer", None, False),
    (Q, "A", "I would not choose A", None, False),
    (Q, "A", "I wouldn't pick A", None, False),
    (Q, "A", "A不对", None, False),
    (Q, "A", "It is not A; the answer is A", None, None),
    (Q, "C", "The answer is D, not C.", None, False),
    (Q, "D", "The answer is D, not C.", None, True),
    (Q, "B", "Option B is correct, option C is wrong", None, True),
    (Q, "C", "Option B is correct, option C is wrong", None, False),
    # numbers: comparisons, hedges, ordinals, multipliers, dates, times, scores, codes
    ("How many?", "12", "more than 12", None, None),
    ("How many?", "12", "at least 12", None, None),
    ("How many?", "12", "less than 12", None, None),
    ("How many?", "12", "about 12", None, None),
    ("How many?", "12", "12+", None, None),
    ("How many?", "12", ">12", None, None),
    ("How many?", "12", "≈12", None, None),
    ("How many?", "12", "12?", None, None),
    ("How many?", "12", "12th", None, None),
    ("How many?", "1", "1st", None, None),
    ("How many?", "12", "12 dozen", None, None),
    ("How many?", "3", "3x", None, None),
    ("How many?", "2020", "2020s", None, None),
    ("What value?", "5", "minus 5", None, None),
    ("How many?", "12", "12 is wrong", None, None),
    ("How many?", "3", "There are 3 cars and five bikes.", None, None),
    ("How many?", "14", "12,13 and 14", None, None),
    ("How many?", "10", "A-10", None, None),
    ("What score?", "3-2", "2-1", None, None),
    ("When?", "2023-01-02", "2023-02-01", None, None),
    ("When?", "2023-01-02", "2023-01-02", None, True),
    ("When?", "1998", "1998-03-05", None, None),
    ("What time?", "3:15", "3", None, None),
    ("How many?", "12", "有12个苹果", None, True),
    ("How many?", "12", "It is 12 o'clock now, 12 people came", None, True),
    # units and currencies (a lone "$" is a price, not LaTeX)
    ("How long?", "12 cm", "The length is 12 mm.", None, None),
    ("How long?", "12 cm", "It is 12cm long.", None, True),
    ("What price?", "$5", "5 euros", None, None),
    ("What price?", "$5", "€5", None, None),
    ("What price?", "€5", "It costs $5.", None, None),
    ("How old?", "12 years", "12 years old", None, True),
    ("How big?", "64 GB", "64GB", None, True),
    # precision: the same at the reference's precision, else wrong; a coarser rounding goes to the judge
    ("What value?", "3.14", "3.15", None, False),
    ("What value?", "100.0", "101", None, False),
    ("What value?", "2.5", "2.51", None, True),
    ("What value?", "3.14", "3.1", None, None),
    ("What value?", "1,234,567", "1.23 million", None, None),
    ("What value?", "1.2 million", "1,234,567", None, True),
    ("How many?", "12", "12.4", None, None),
    ("How many?", "1", "1.5", None, False),
    ("What value?", "2/3", "0.67", None, None),
    ("What value?", "1.5e-3", "0.0016", None, False),
    ("What value?", "3×10^8", "300000000", None, True),
    ("How many?", "1000", "1.000", None, None),  # a point grouping thousands (German, French…)
    ("What value?", "1.5", "1,500", None, None),  # a decimal comma
    ("How many?", "1500", "1,500", None, True),
    # Chinese numerals and suffixes
    ("几个？", "150", "一百五", None, True),
    ("几个？", "105", "一百零五", None, True),
    ("几个？", "15000", "一万五", None, True),
    ("几个？", "3", "三成", None, None),
    ("几个？", "3", "3个以上", None, None),
    ("几个？", "3", "3个左右", None, None),
    ("几个？", "3", "3点", None, None),
    ("几个？", "3", "3月", None, None),
    ("几个？", "3", "大约3个", None, None),
    # yes / no: set phrases, hedges and contradictions
    ("Is there a dog?", "no", "No doubt, it is.", None, None),
    ("Is there a dog?", "yes", "No doubt", None, None),
    ("Is there a dog?", "no", "No problem", None, None),
    ("Is there a dog?", "yes", "Yes-ish", None, None),
    ("Is there a dog?", "yes", "Yes, it isn't a dog.", None, None),
    ("Is there a dog?", "no", "No, that's right.", None, None),
    ("Is there a dog?", "yes", "Yes it is", None, True),
    ("Is there a dog?", "no", "No, actually it is there.", None, None),
    ("How many floors?", "3", "It is the building with the 3 large windows facing the street, next to the old "
                              "church and the market square.", None, None),  # the one number counts something else
    ("灯开着吗？", "是", "是，但也不是", None, None),
    ("灯开着吗？", "是", "是的，不过没有", None, None),
    ("灯开着吗？", "否", "不是，它是红色的。", None, True),
    # text: punctuation that changes the answer
    ("Which language?", "C#", "C", None, None),
    ("Which language?", "C#", "c#", None, True),
    ("What grade?", "B-", "B", None, None),
    ("Which variable?", "a", "a", None, True),
    # math: not subtraction, not an approximation, not radians for degrees; "or" in math is one answer
    ("Compute.", "3", "\\approx 3", None, None),
    ("Compute.", "\\frac{\\pi}{3}", "60°", None, None),
    ("Compute.", "60^\\circ", "\\frac{\\pi}{3}", None, None),
    ("Solve.", "x=2 or x=3", "x=3", None, False),  # one solution of two is not the answer
    # ground truths with "or": a hedge across alternatives is not a match
    ("Which city?", "Paris or Lyon", "Paris or Berlin", None, None),
    ("How many?", "12 or 13", "12 or 14", None, None),
]


def test_table_is_large_enough_and_covers_both_languages() -> None:
    assert len(CASES) >= 80
    assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in q + g + p) for q, g, p, _, _ in CASES) >= 15
    assert {v for *_, v in CASES} == {True, False, None}


@pytest.mark.parametrize(("question", "ground_truth", "prediction", "choices", "expected"), CASES + ADVERSARIAL,
                         # no backslashes in ids: a node id holding one cannot be selected again (mutmut does)
                         ids=[f"{g!r}-vs-{p!r}".replace("\\", "/") for _, g, p, _, _ in CASES + ADVERSARIAL])
def test_verdict(question: str, ground_truth: str, prediction: str, choices: list[str] | None,
                 expected: bool | None) -> None:
    verdict = match_answer(prediction, ground_truth, question=question, choices=choices)
    assert verdict.correct is expected, verdict.rule
