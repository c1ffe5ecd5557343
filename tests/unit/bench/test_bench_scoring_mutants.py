"""Benchmark scorers' corners for `make mutation`: every dispatch branch with the rule it
reports, refusals and the "Z" option, MME's fallbacks, MathVista's answer types, SQuAD
normalisation, InfoSeek's ranges, and what counts as attempted (SimpleVQA)."""

from __future__ import annotations

from typing import Any

import pytest

from deepeyes_cli.bench.items import BenchItem
from deepeyes_cli.bench.scoring import (
    Official,
    attempted,
    can_infer_option,
    can_infer_text,
    extract_characters_regex,
    infoseek_numeric,
    letter_choices,
    mathvista_equal,
    mathvista_normalize,
    max_f1,
    normalize_squad,
    ocrbench_group,
    ocrbench_hit,
    official,
    token_f1,
)

ABCD = {"A": "red", "B": "blue", "C": "green", "D": "white"}


def _item(**kw: Any) -> BenchItem:
    base: dict[str, Any] = {"id": "1", "question": "q", "answer": "x"}
    return BenchItem(**{**base, **kw})


def test_letters_name_the_options_in_order() -> None:
    assert letter_choices(["x", "y", "z"]) == {"A": "x", "B": "y", "C": "z"}


@pytest.mark.parametrize(("answer", "expected"), [
    ("Sorry, I can't help with images of people yet.", "Z"), ("I can't process this file.", "Z"),
    ("I'm sorry, but without the image provided I cannot", "Z"),
    ("Z", "Z"), ("B Z", "B"),  # a real option wins over "Z"
    ("(B)", "B"), ("[B]", "B"), ("B,", "B"), ("B:", "B"), ("B;", "B"), ("B!", "B"), ("*B*", "B"), ("#B", "B"),
    ("{B}", "B"), ("B.", "B"),
    ("B one two three", "B"), ("B one two three four", None),  # the last five words only
    ("b", None),  # letters are upper-case
    ("BX", None),  # a letter glued to another is no letter
])
def test_can_infer_option(answer: str, expected: str | None) -> None:
    assert can_infer_option(answer, ABCD) == expected


def test_can_infer_text_needs_exactly_one_option_text() -> None:
    assert can_infer_text("It is BLUE.", ABCD) == "B"
    assert can_infer_text("blue and green", ABCD) is None
    assert can_infer_text("purple", ABCD) is None
    assert can_infer_text("it is 3", {"A": 3, "B": 4}) == "A"  # option values read as text


@pytest.mark.parametrize(("pred", "expected"), [
    ("The correct answer is B", "B"), ("The answer B", "B"), ("The best option is D", "D"),
    ("The correct option is A", "A"), ("Best answer: C", "C"), ("Best option: E", "E"),
    ("one two three four five six seven eight nine ten", ""),  # ten words, no letter, no option text
    ("one two three four five six seven eight nine ten eleven", ""),
    ("two", "B"), ("(b) two", "B"), ("", ""), ("   ", ""), ("nothing like it", ""),
    ("Q", ""),  # no letter A to E, in no option text
    ("F", "D"),  # no letter A to E, but "f" is in "(D) four": MME's containment fallback
])
def test_mme_extraction(pred: str, expected: str) -> None:
    assert extract_characters_regex(pred, ["one", "two", "three", "four", "five"]) == expected


def test_mme_answer_phrases_are_removed_before_the_option_text_is_matched() -> None:
    assert extract_characters_regex("The answer is one", ["one", "two"]) == "A"


def test_mme_ten_words_are_still_short_eleven_are_long() -> None:
    ten = "one two three four five six seven eight nine ten"
    assert extract_characters_regex(ten, [ten, "x"]) == "A"  # read through the option text
    assert extract_characters_regex(ten + " more", [ten + " more", "x"]) == ""  # long, no letter: no answer


def test_mme_long_answers_with_a_letter_still_count() -> None:
    long = "after looking at every part of the picture very carefully I would say C"
    assert extract_characters_regex(long, ["x", "y", "z"]) == "C"


def test_ocrbench_normalises_case_spaces_and_lines() -> None:
    assert ocrbench_hit("  Hello\nWorld  ", ["hello world"], hmer=False)
    assert ocrbench_hit("result", ["nope", " RESULT\n"], hmer=False)
    assert ocrbench_hit("Hello World", ["hello\nworld"], hmer=False)  # a line break in the answer is a space
    assert not ocrbench_hit("hel lo", ["hello"], hmer=False)
    assert ocrbench_hit("x ^ 2", ["x^2"], hmer=True) and not ocrbench_hit("X^2", ["x^2"], hmer=True)
    assert ocrbench_group("Handwriting Recognition") == "Text Recognition"
    assert ocrbench_group("Digit String Recognition") == "Text Recognition"
    assert ocrbench_group("Scene Text-centric VQA") == "Scene Text-centric VQA"


def test_mathvista_multiple_choice() -> None:
    mc = _item(answer="140°", choices=["135°", "140°"], meta={"question_type": "multi_choice", "answer_type": "text"})
    assert mathvista_normalize("B", mc) == "140°"
    assert mathvista_normalize("Cannot determine the answer", mc) is None  # "Z"
    assert mathvista_normalize("C", mc) is None  # not one of its two options
    assert mathvista_normalize("no idea", mc) is None
    no_choices = _item(answer="7", meta={"question_type": "multi_choice", "answer_type": "integer"})
    assert mathvista_normalize("7", no_choices) == "7"  # without choices: by answer type


def test_mathvista_answer_types() -> None:
    integer = _item(meta={"answer_type": "integer"})
    assert mathvista_normalize("-1,204.0", integer) == "-1204"
    assert mathvista_normalize("none", integer) is None
    assert mathvista_normalize("1 and 2", integer) is None  # several numbers: extraction is the judge's
    flt = _item(meta={"answer_type": "float", "precision": 2})
    assert mathvista_normalize("3.14159", flt) == "3.14" and mathvista_normalize("x", flt) is None
    assert mathvista_normalize("−0.5", _item(meta={"answer_type": "float"})) == "-0.5"  # no precision: as read
    assert mathvista_normalize(".5", _item(meta={"answer_type": "float", "precision": 0})) == "0.0"
    assert mathvista_normalize("[1, 2]", _item(meta={"answer_type": "list"})) is None
    assert mathvista_normalize("  yes ", _item(meta={"answer_type": "text"})) == "yes"
    assert mathvista_normalize("   ", _item(meta={"answer_type": "text"})) is None


def test_mathvista_equality() -> None:
    flt = _item(answer="1.25", meta={"answer_type": "float", "precision": 1})
    assert mathvista_equal("1.2", flt) and not mathvista_equal("1.3", flt)
    bad = _item(answer="n/a", meta={"answer_type": "float", "precision": 1})
    assert mathvista_equal("n/a", bad) and not mathvista_equal("1.0", bad)  # unreadable answer: as text
    assert mathvista_equal(" yes", _item(answer="yes ")) and not mathvista_equal("yes", _item(answer=None))
    assert mathvista_equal("", _item(answer=None))
    assert not mathvista_equal("1.0", _item(answer=None, meta={"answer_type": "float", "precision": 1}))
    assert mathvista_equal("3", _item(answer="3", meta={"answer_type": "integer", "precision": 1}))  # floats only


def test_squad_normalisation_and_f1() -> None:
    assert normalize_squad("The  Cat, an Apple & a dog!") == "cat apple dog"
    assert normalize_squad("theatre") == "theatre"  # only whole articles go
    assert token_f1("red cat", "red cat cat") == pytest.approx(0.8)  # p = 1, r = 2/3
    assert token_f1("red cat dog", "red cat") == pytest.approx(0.8)  # p = 2/3, r = 1
    assert token_f1("cat", "") == 0.0 and token_f1("", "cat") == 0.0
    assert max_f1("cat", []) == 0.0


def test_infoseek_ranges() -> None:
    assert infoseek_numeric("no number", ["100"]) is None
    assert infoseek_numeric("850", [{"range": [800, 850]}]) and infoseek_numeric("800", [{"range": (850, 800)}])
    assert infoseek_numeric("91", [{"wikidata": 100}]) and not infoseek_numeric("89", [{"wikidata": 100}])
    assert infoseek_numeric("109", [{"wikidata": 100}]) and not infoseek_numeric("111", [{"wikidata": 100}])
    assert infoseek_numeric("0", ["0"])  # both bounds included
    assert infoseek_numeric("109", [{"wikidata": 100, "range": [1]}])  # a malformed range: ±10 % of the value
    assert infoseek_numeric("-95", ["-100"]) and not infoseek_numeric("-111", ["-100"])  # negatives too
    assert infoseek_numeric("100", ["abc", "100"]) and not infoseek_numeric("100", ["abc"])
    assert not infoseek_numeric("5", [{"wikidata": 100}, "50"])
    assert infoseek_numeric("0", [{}])  # no value: 0


def test_attempted() -> None:
    assert attempted("Paris") and not attempted(None) and not attempted("  ")
    for refusal in ("I don't know", "I cannot tell", "I do not know", "unknown", "not sure", "No idea.",
                    "It cannot be determined", "不知道", "无法确定"):
        assert not attempted(refusal), refusal


MC = _item(answer="B", choices=["red", "blue", "green"])


@pytest.mark.parametrize(("scorer", "item", "prediction", "expected"), [
    ("mcq", MC, "B", Official(1.0, "can_infer")),
    ("mcq", MC, "green", Official(0.0, "can_infer")),
    ("mcq", MC, "Cannot determine the answer", None),
    ("mcq", MC, "hmm", None),
    ("mcq", _item(answer="B"), "B", None),  # no choices: rewards/ decides
    ("mme", MC, "The answer is B", Official(1.0, "extract_characters_regex")),
    ("mme", MC, "A", Official(0.0, "extract_characters_regex")),
    ("mme", MC, "purple", Official(0.0, "no_option")),
    ("mme", _item(answer="B"), "B", None),
    ("ocrbench", _item(answer="cat"), "A CAT!", Official(1.0, "contains")),
    ("ocrbench", _item(answer="cat", answers=["dog", "cat"]), "cat", Official(1.0, "contains")),
    ("ocrbench", _item(answer="cat", answers=["dog"]), "cat", Official(0.0, "contains")),
    ("ocrbench", _item(answer="cat"), "dog", Official(0.0, "contains")),
    ("ocrbench", _item(answer=None), "anything", Official(0.0, "contains")),  # no reference: no hit (was 1.0)
    ("f1", _item(answer=None), "anything", Official(0.0, "token_f1")),
    ("ocrbench", _item(answer="x^2", category="HME100k"), "x ^ 2", Official(1.0, "hmer_contains")),
    ("ocrbench", _item(answer="x^2", meta={"dataset_name": "HME100k"}), "x ^ 2", Official(1.0, "hmer_contains")),
    ("mathvista", _item(answer="3", meta={"answer_type": "integer"}), "3.0",
     Official(1.0, "normalize_extracted_answer")),
    ("mathvista", _item(answer="3", meta={"answer_type": "integer"}), "none", None),
    ("mathverse", _item(answer="14"), "14", Official(1.0, "prefetch_equal")),
    ("mathverse", _item(answer=None), " ", Official(1.0, "prefetch_equal")),
    ("f1", _item(answer="Max Verstappen"), "Max", Official(round(2 / 3, 6), "token_f1")),
    ("f1", _item(answer="x", answers=["Max Verstappen"]), "Verstappen", Official(round(2 / 3, 6), "token_f1")),
    ("exact_then_judge", _item(answers=["Spain"]), "spain.", Official(1.0, "exact_match")),
    ("exact_then_judge", _item(answers=["Spain"]), "France", None),
    ("infoseek", _item(answers=["Spain"]), "Spain", Official(1.0, "exact_match")),
    ("infoseek", _item(answers=["Spain"]), "France", Official(0.0, "exact_match")),
    ("infoseek", _item(meta={"question_type": "NUMERICAL", "answer_eval": ["100"]}), "105",
     Official(1.0, "numeric_range")),
    ("infoseek", _item(meta={"question_type": "NUMERICAL", "answer_eval": ["100"]}), "200",
     Official(0.0, "numeric_range")),
    ("infoseek", _item(meta={"question_type": "NUMERICAL"}), "a lot", None),
    ("infoseek", _item(meta={"question_type": "NUMERICAL"}), "5", Official(0.0, "numeric_range")),
    ("rewards", _item(answer="x"), "x", None),
    ("simplevqa", _item(answer="x"), "x", None),
], ids=lambda v: v if isinstance(v, str) else None)
def test_official_dispatch(scorer: str, item: BenchItem, prediction: str, expected: Official | None) -> None:
    assert official(scorer, item, prediction) == expected
