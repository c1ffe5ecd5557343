"""Each benchmark's own scoring on known cases, and each headline as the benchmark defines it."""

from __future__ import annotations

from typing import Any

import pytest

from deepeyes_cli.bench.items import BenchItem
from deepeyes_cli.bench.mcq import rotations
from deepeyes_cli.bench.registry import get_spec
from deepeyes_cli.bench.results import ItemResult
from deepeyes_cli.bench.scoring import (
    can_infer,
    exact_match,
    extract_characters_regex,
    infoseek_numeric,
    max_f1,
    ocrbench_hit,
    official,
)
from deepeyes_cli.bench.summary import summarize

ABCD = {"A": "red", "B": "blue", "C": "green", "D": "white"}


@pytest.mark.parametrize(("answer", "expected"), [
    ("B", "B"), ("The answer is (C).", "C"), ("blue", "B"), ("It is the green one", "C"),
    ("A or B, I am not sure which one of them it is really", None),  # two letters
    ("Cannot determine the answer", "Z"), ("something else", None),
    ("A. red ... I think the answer is D here, after all things", "A"),  # two letters: the option text decides
    ("B is what I would say about this picture overall", None),  # a letter outside the last five words
])
def test_can_infer(answer: str, expected: str | None) -> None:
    assert can_infer(answer, ABCD) == expected


@pytest.mark.parametrize(("pred", "expected"), [
    ("The best answer is (C)", "C"), ("C", "C"), ("three", "C"),
    ("there are a lot of cars on this road and I cannot tell how many", ""), ("(E) five", "E"),
])
def test_mme_extract_characters_regex(pred: str, expected: str) -> None:
    assert extract_characters_regex(pred, ["one", "two", "three", "four", "five"]) == expected


def test_ocrbench_containment_case_and_hmer_spaces() -> None:
    assert ocrbench_hit("The word is centre.", ["CENTRE"], hmer=False)
    assert not ocrbench_hit("center", ["CENTRE"], hmer=False)
    assert ocrbench_hit("x^{2}+1", ["x ^ { 2 } + 1"], hmer=True)
    assert not ocrbench_hit("x^{2}+1", ["x ^ { 2 } + 1"], hmer=False)


def _item(**kw: Any) -> BenchItem:
    base: dict[str, Any] = {"id": "1", "question": "q", "answer": "x"}
    return BenchItem(**{**base, **kw})


def test_mathvista_normalisation() -> None:
    mc = _item(answer="145°", choices=["135°", "140°", "145°", "150°"],
               meta={"question_type": "multi_choice", "answer_type": "text"})
    assert official("mathvista", mc, "C") == official("mathvista", mc, "145°")
    assert official("mathvista", mc, "C") is not None and official("mathvista", mc, "C").score == 1.0  # type: ignore[union-attr]
    assert official("mathvista", mc, "B").score == 0.0  # type: ignore[union-attr]
    flt = _item(answer="1.2", meta={"question_type": "free_form", "answer_type": "float", "precision": 1})
    assert official("mathvista", flt, "1.20").score == 1.0  # type: ignore[union-attr]
    assert official("mathvista", flt, "1.24").score == 1.0  # type: ignore[union-attr]  # rounded to precision 1
    assert official("mathvista", flt, "1.3").score == 0.0  # type: ignore[union-attr]
    integer = _item(answer="6", meta={"question_type": "free_form", "answer_type": "integer"})
    assert official("mathvista", integer, "6.0").score == 1.0  # type: ignore[union-attr]
    assert official("mathvista", integer, "it has six sides, maybe 6 or 7") is None  # extraction: the judge's job


def test_mathverse_prefetch_only_decides_equal_answers() -> None:
    it = _item(answer="14")
    assert official("mathverse", it, " 14 ").score == 1.0  # type: ignore[union-attr]
    assert official("mathverse", it, "The area is 14") is None


def test_squad_f1_max_over_alternatives_and_exact_match() -> None:
    assert max_f1("Verstappen", ["Max Verstappen", "Verstappen"]) == 1.0
    assert max_f1("Max", ["Max Verstappen"]) == pytest.approx(2 / 3)
    assert max_f1("Lewis Hamilton", ["Max Verstappen"]) == 0.0
    assert exact_match("the Kingdom of Spain!", ["Kingdom of Spain"])
    assert not exact_match("", ["Spain"])


def test_infoseek_numeric_range_and_ten_percent() -> None:
    assert infoseek_numeric("about 830 m", [{"wikidata": 828, "range": [800, 850]}])
    assert not infoseek_numeric("900", [{"wikidata": 828, "range": [800, 850]}])
    assert infoseek_numeric("105", ["100"]) and not infoseek_numeric("120", ["100"])


def _r(i: str, score: float | None, category: str = "all", **meta: Any) -> ItemResult:
    return ItemResult(id=i, base_id=i.split("@c")[0], category=category, answer="A", prediction="A", score=score,
                      decided_by="official" if score is not None else "unjudged", meta=meta)


def test_hrbench_headline_is_the_mean_over_cycles_not_the_micro_mean() -> None:
    rs = [_r("0", 1, cycle="c0"), _r("1", 1, cycle="c0"), _r("2", 0, cycle="c0"), _r("3", 0, cycle="c0"),
          _r("4", 1, cycle="c1"), _r("5", 1, cycle="c1")]
    s = summarize(get_spec("hrbench4k"), rs)
    assert s["headline"]["value"] == 75.0  # (50 + 100) / 2; the micro mean would be 66.67
    assert s["breakdowns"]["cycle"]["c0"]["accuracy"] == 50.0


def test_ocrbench_points_and_groups() -> None:
    rs = [_r("0", 1, "Regular Text Recognition"), _r("1", 1, "Irregular Text Recognition"),
          _r("2", 0, "Doc-oriented VQA"), _r("3", 1, "Key Information Extraction")]
    s = summarize(get_spec("ocrbench"), rs)
    assert s["headline"]["value"] == 3
    assert s["breakdowns"]["group_points"]["Text Recognition"] == {"n": 2, "points": 2}


def test_mathverse_mean_of_versions_and_infoseek_harmonic_mean() -> None:
    rs = [_r("0", 1, "Text Dominant"), _r("1", 0, "Text Dominant"), _r("2", 1, "Vision Only")]
    assert summarize(get_spec("mathverse"), rs)["headline"]["value"] == 75.0  # (50 + 100) / 2
    rs = [_r("0", 1, "unseen_question"), _r("1", 1, "unseen_entity"), _r("2", 0, "unseen_entity")]
    assert summarize(get_spec("infoseek"), rs)["headline"]["value"] == pytest.approx(66.67)  # 2·100·50/150


def test_simplevqa_f1_counts_not_attempted() -> None:
    rs = [_r("0", 1), _r("1", 0), _r("2", 0)]
    rs[2].attempted = False
    s = summarize(get_spec("simplevqa"), rs)
    # is_correct 1/3, given attempted 1/2 -> F1 = 2·(1/3)(1/2)/(5/6) = 0.4
    assert s["headline"]["value"] == 40.0


def test_unjudged_count_as_wrong_with_the_scored_only_figure_beside() -> None:
    s = summarize(get_spec("realx"), [_r("0", 1), _r("1", None)])
    assert s["headline"]["value"] == 50.0 and s["headline"]["scored_only"] == 100.0 and s["unjudged"] == 1


def test_circular_rotations_and_score() -> None:
    it = BenchItem("7", "p", "B", [b"x"], ["red", "blue", "green"], "all",
                   meta={"raw_question": "What colour?", "style": "vlmeval"})
    rots = rotations(it)
    assert [r.id for r in rots] == ["7", "7@c1", "7@c2"]
    assert [r.choices[("ABC").index(r.answer)] for r in rots if r.choices and r.answer] == ["blue"] * 3
    assert "A. blue\nB. green\nC. red" in rots[1].question
    rs = [_r(r.id, 1.0 if k < 2 else 0.0, rotation=k, rotations=3) for k, r in enumerate(rots)]
    rs += [_r(f"8{s}", 1.0, rotation=k, rotations=3) for k, s in enumerate(["", "@c1", "@c2"])]
    s = summarize(get_spec("vstar"), rs, circular=True)
    assert s["items"] == 2 and s["headline"]["value"] == 100.0
    assert s["circular"]["accuracy"] == 50.0 and s["circular"]["questions"] == 2
