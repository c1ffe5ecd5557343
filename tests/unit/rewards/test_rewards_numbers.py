"""Numbers field by field: each written form as a Quantity (value, unit, integer or not, the
precision written), numbers inside sentences, Chinese numerals, and agreement at the
reference's precision (written against `make mutation` survivors)."""

from __future__ import annotations

import pytest

from deepeyes_cli.rewards.numbers import Quantity, numbers_agree, numbers_in, parse_quantity


@pytest.mark.parametrize(("text", "expected"), [
    ("12", Quantity(12.0, None, True, 1.0)),
    ("1,234", Quantity(1234.0, None, True, 1.0)),
    ("3.14", Quantity(3.14, None, False, 0.01)),
    (".5", Quantity(0.5, None, False, 0.1)),
    ("-5", Quantity(-5.0, None, True, 1.0)),
    ("−5", Quantity(-5.0, None, True, 1.0)),
    ("+5", Quantity(5.0, None, True, 1.0)),
    ("3/4", Quantity(0.75, None, False, 0.0)),
    ("6/3", Quantity(2.0, None, True, 0.0)),
    ("1.5e-3", Quantity(0.0015, None, False, 0.0001)),
    ("3×10^8", Quantity(3e8, None, True, 1e8)),
    ("45%", Quantity(45.0, "%", True, 1.0)),
    ("$3.5", Quantity(3.5, "usd", False, 0.1)),
    ("-$5", Quantity(-5.0, "usd", True, 1.0)),
    ("12 cm", Quantity(12.0, "cm", True, 1.0)),
    ("12 Centimeters.", Quantity(12.0, "cm", True, 1.0)),
    ("30°C", Quantity(30.0, "degc", True, 1.0)),
    ("30°", Quantity(30.0, "deg", True, 1.0)),
    ("1.2 million", Quantity(1.2e6, None, True, 1e5)),
    ("2 billion dollars", Quantity(2e9, "usd", True, 1e9)),
    ("12 years old", Quantity(12.0, "year", True, 1.0)),
    ("12 apples", Quantity(12.0, "apples", True, 1.0)),
    ("5 km/h", Quantity(5.0, "km/h", True, 1.0)),
    ("十二", Quantity(12.0, None, True, 1.0)),
    ("十二个", Quantity(12.0, "", True, 1.0)),
    ("一百零五", Quantity(105.0, None, True, 1.0)),
    ("一百五", Quantity(150.0, None, True, 1.0)),
    ("一万五", Quantity(15000.0, None, True, 1.0)),
    ("两千零五", Quantity(2005.0, None, True, 1.0)),
    ("三亿", Quantity(3e8, None, True, 1.0)),
    ("twelve", Quantity(12.0, None, True, 1.0)),
    ("Twenty", Quantity(20.0, None, True, 1.0)),
])
def test_one_quantity(text: str, expected: Quantity) -> None:
    got = parse_quantity(text)
    assert got is not None and got.unit == expected.unit and got.is_int == expected.is_int, got
    assert got.value == pytest.approx(expected.value) and got.ulp == pytest.approx(expected.ulp), got


@pytest.mark.parametrize("text", ["", "x" * 41, "1/0", "12th", "3x", "$5 euros", "二三", "12 dozen", "3点",
                                  "abc", "5 zz"])
def test_not_one_quantity(text: str) -> None:
    assert parse_quantity(text) is None


def test_units_compare_only_when_both_have_one() -> None:
    cm, mm, bare = parse_quantity("5 cm"), parse_quantity("5 mm"), parse_quantity("5")
    assert cm and mm and bare
    assert cm.same_unit(mm) is False and cm.same_unit(parse_quantity("7 cm")) is True  # type: ignore[arg-type]
    assert cm.same_unit(bare) is None and bare.same_unit(cm) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("There are 12 apples.", [(12.0, None)]),  # a word after it is no unit in a sentence
    ("It costs $1,200 and 3 kg", [(1200.0, "usd"), (3.0, "kg")]),
    ("about 45% of them", [(45.0, "%")]),
    ("a drop of -3 degrees", [(-3.0, "deg")]),
    ("12个苹果", [(12.0, "")]),
    ("3.5 m", [(3.5, "m")]),
    ("no numbers here", []),
])
def test_numbers_in_a_sentence(text: str, expected: list) -> None:
    got = numbers_in(text)
    assert got is not None and [(q.value, q.unit) for q in got] == expected


@pytest.mark.parametrize("text", ["the 12th floor", "on 2023-01-02", "at 3:15", "10-12 people", "five cars and 3",
                                  "3点", "A10 model", "€5 dollars"])
def test_sentences_with_numbers_that_cannot_be_read_safely(text: str) -> None:
    assert numbers_in(text) is None


def test_precision_of_numbers_in_a_sentence() -> None:
    got = numbers_in("3.14 and 2")
    assert got is not None and [(q.is_int, q.ulp) for q in got] == [(False, pytest.approx(0.01)), (True, 1.0)]


def _agree(gt: str, pred: str, rel_tol: float = 0.0) -> bool | None:
    g, p = parse_quantity(gt), parse_quantity(pred)
    assert g is not None and p is not None
    return numbers_agree(g, p, rel_tol)


@pytest.mark.parametrize(("gt", "pred", "rel_tol", "expected"), [
    ("3.14", "3.1416", 0.0, True), ("3.14", "3.15", 0.0, False), ("3.14", "3.145", 0.0, None),
    ("3.14", "3.1", 0.0, None), ("12", "12.4", 0.0, None), ("12", "13", 0.0, False), ("12", "12.0", 0.0, True),
    ("45%", "0.45", 0.0, True), ("0.45", "45%", 0.0, True), ("45%", "0.46", 0.0, False),
    ("100", "101", 0.02, False), ("100.0", "101", 0.02, True), ("100.0", "103", 0.02, False),
    ("1.2 million", "1,234,567", 0.0, True), ("2/3", "0.67", 0.0, None), ("0.1", "0.10000000001", 0.0, True),
    ("-5", "5", 0.0, False), ("1500", "1.5 thousand", 0.0, True),
])
def test_agreement_at_the_references_precision(gt: str, pred: str, rel_tol: float, expected: bool | None) -> None:
    assert _agree(gt, pred, rel_tol) is expected
