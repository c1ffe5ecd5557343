"""Loaders: every public format, written by hand in the test (generated images)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepeyes_cli.bench.items import decode_image
from deepeyes_cli.bench.load import load_benchmark
from deepeyes_cli.bench.registry import get_spec
from deepeyes_cli.errors import InputError
from deepeyes_cli.testing import bench_files as bf


@pytest.mark.parametrize("name", sorted(bf.FIXTURES))
def test_every_fixture_loads_with_decodable_images(name: str, tmp_path: Path) -> None:
    writer, expected = bf.FIXTURES[name]
    loaded = load_benchmark(get_spec(name), writer(tmp_path))
    assert len(loaded.items) == expected
    for item in loaded.items:
        for src in item.images:
            assert decode_image(src).size[0] > 0
        assert item.question.strip()


def test_vlmevalkit_tsv_reference_image_two_options_and_malformed_row(tmp_path: Path) -> None:
    loaded = load_benchmark(get_spec("vstar"), bf.vstar_tsv(tmp_path))
    assert loaded.rows == 4 and loaded.malformed == 1
    assert "answer" in loaded.examples[0]
    by_id = {it.id: it for it in loaded.items}
    assert by_id["1"].choices == ["left", "right"]
    assert decode_image(by_id["1"].images[0]).getpixel((0, 0)) == decode_image(by_id["0"].images[0]).getpixel((0, 0))
    assert "A. red\nB. blue" in by_id["0"].question and by_id["0"].question.startswith("Question: ")
    assert by_id["2"].answer == "C" and by_id["2"].category == "direct_attributes"


def test_vstar_original_folders_with_and_without_jsonl(tmp_path: Path) -> None:
    root = bf.vstar_folder(tmp_path / "v")
    with_jsonl = load_benchmark(get_spec("vstar"), root)
    assert [it.answer for it in with_jsonl.items] == ["A", "B"]
    assert with_jsonl.items[1].choices == ["right", "left"]
    (root / "test_questions.jsonl").unlink()
    folders = load_benchmark(get_spec("vstar"), root)
    assert {it.category for it in folders.items} == {"direct_attributes", "relative_position"}
    for it in folders.items:  # the annotation lists the correct option first; we shuffle it away from A per item
        assert it.choices is not None and it.answer is not None
        gold = it.choices["ABCD".index(it.answer)]
        assert gold in ("red", "left")


def test_save_to_disk_folder(tmp_path: Path) -> None:
    loaded = load_benchmark(get_spec("vstar"), bf.save_to_disk_dir(tmp_path))
    assert [(it.answer, it.choices) for it in loaded.items] == [("A", ["red", "blue"]), ("B", ["left", "right"])]


def test_hrbench_keeps_cycles_and_categories(tmp_path: Path) -> None:
    items = load_benchmark(get_spec("hrbench4k"), bf.hrbench_parquet(tmp_path)).items
    assert [(it.category, it.meta["cycle"]) for it in items] == [("single", "c0"), ("single", "c1"),
                                                                ("cross", "c0"), ("cross", "c1")]


def test_mme_lite_tsv_and_original_json(tmp_path: Path) -> None:
    lite = load_benchmark(get_spec("mme-realworld-lite"), bf.mme_lite_tsv(tmp_path / "l")).items
    assert lite[0].choices == ["one", "two", "three", "four", "five"]
    assert "The choices are listed below:\n(A) one" in lite[0].question and lite[0].question.endswith("is:")
    assert lite[1].meta["l2"] == "roof/attribute"
    full = load_benchmark(get_spec("mme-realworld"), bf.mme_json(tmp_path / "f")).items
    assert full[0].category == "Perception/Autonomous_Driving" and full[0].answer == "D"


def test_ocrbench_answers_as_string_and_list(tmp_path: Path) -> None:
    items = load_benchmark(get_spec("ocrbench"), bf.ocrbench_json(tmp_path)).items
    assert items[0].answers == ["CENTRE"] and items[1].answers == ["$12.50", "12.50"]
    assert items[2].meta["dataset_name"] == "HME100k"


def test_mathvista_json_and_tsv(tmp_path: Path) -> None:
    items = {it.id: it for it in load_benchmark(get_spec("mathvista"), bf.mathvista_json(tmp_path / "j")).items}
    assert items["3"].meta["answer_option"] == "C" and items["1"].meta["precision"] == 1
    assert items["1"].question.startswith("Hint:")  # the ready-made query
    assert items["3"].meta["skills"] == ["geometry reasoning", "algebraic reasoning"]
    tsv = load_benchmark(get_spec("mathvista"), bf.mathvista_tsv(tmp_path / "t")).items
    assert tsv[0].choices == ["135°", "140°", "145°", "150°"] and tsv[0].category == "geometry problem solving"


def test_mathverse_vision_only_uses_the_query(tmp_path: Path) -> None:
    items = load_benchmark(get_spec("mathverse"), bf.mathverse_json(tmp_path)).items
    assert [it.category for it in items][-1] == "Vision Only"
    assert items[-1].question.startswith("According to the question shown in the image")


def test_verl_rows_candidates_and_infoseek_splits(tmp_path: Path) -> None:
    fvqa = load_benchmark(get_spec("fvqa"), bf.fvqa_parquet(tmp_path / "f")).items
    assert fvqa[0].question == "What is the country of origin of this food?"
    assert fvqa[0].answers == ["Spain", "Kingdom of Spain", "ESP"]
    info = load_benchmark(get_spec("infoseek"), bf.infoseek_jsonl(tmp_path / "i")).items
    assert [it.category for it in info] == ["unseen_question", "unseen_entity", "unseen_entity"]
    assert info[1].meta["question_type"] == "NUMERICAL"


def test_missing_data_names_where_to_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPEYES_BENCH_DATA", str(tmp_path))
    with pytest.raises(InputError) as e:
        load_benchmark(get_spec("hrbench8k"))
    assert str(tmp_path / "hrbench8k") in e.value.message
    assert e.value.hint is not None and "huggingface.co/datasets/DreamMr/HR-Bench" in e.value.hint
    monkeypatch.delenv("DEEPEYES_BENCH_DATA")
    with pytest.raises(InputError, match="--data"):
        load_benchmark(get_spec("ocrbench"))


def test_a_file_of_only_bad_rows_is_an_error(tmp_path: Path) -> None:
    bad = bf.write_tsv(tmp_path / "VStarBench.tsv", [{"index": 0, "question": "q", "A": "x", "B": "y"}])
    with pytest.raises(InputError, match="no usable items"):
        load_benchmark(get_spec("vstar"), bad)


def test_names_aliases_and_did_you_mean() -> None:
    assert get_spec("HRBench-4K").name == "hrbench4k"
    with pytest.raises(InputError) as e:
        get_spec("mathvist")
    assert e.value.hint is not None and "did you mean 'mathvista'" in e.value.hint
