"""Hand-made benchmark files in each public format (3-5 rows, generated images), written
offline: what the bench tests load, and what a demo can point `deepeyes bench --data` at.

Each writer returns the path to pass as ``--data``. The rows follow the reference's
description of each benchmark's files, with the awkward cases it asks for: an image that
is another row's ``index``, a two-option row, a malformed row, lists stored as Python
literals, answers as a string and as a list, a numeric range …
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def image_bytes(rgb: tuple[int, int, int] = (200, 40, 40), size: int = 24, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, format=fmt)
    return buf.getvalue()


def b64(rgb: tuple[int, int, int] = (200, 40, 40), fmt: str = "PNG") -> str:
    return base64.b64encode(image_bytes(rgb, fmt=fmt)).decode()


def write_tsv(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, delimiter="\t")
        w.writeheader()
        w.writerows([{k: ("" if r.get(k) is None else r[k]) for k in fields} for r in rows])
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_json(path: Path, data: Any, lines: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data) if lines else json.dumps(
        data, ensure_ascii=False, indent=1)
    path.write_text(text, encoding="utf-8")
    return path


def _image_file(path: Path, rgb: tuple[int, int, int], fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(rgb, fmt=fmt))


def vstar_tsv(root: Path) -> Path:
    rows = [
        {"index": 0, "image": b64((200, 0, 0)), "question": "What is the colour of the cup?", "A": "red",
         "B": "blue", "C": "green", "D": "white", "answer": "A", "category": "direct_attributes"},
        {"index": 1, "image": "0", "question": "Is the cup left or right of the cat?", "A": "left", "B": "right",
         "answer": "B", "category": "relative_position"},  # image = row 0's; two options
        {"index": 2, "image": b64((0, 0, 200)), "question": "What is the material of the glove?", "A": "leather",
         "B": "cotton", "C": "rubber", "D": "wool", "answer": "C", "category": "direct_attributes"},
        {"index": 3, "image": b64((0, 200, 0)), "question": "Broken row without an answer", "A": "x", "B": "y"},
    ]
    return write_tsv(root / "VStarBench.tsv", rows)


def vstar_folder(root: Path) -> Path:
    _image_file(root / "direct_attributes" / "a.jpg", (200, 0, 0), "JPEG")
    write_json(root / "direct_attributes" / "a.json", {"target_object": ["cup"], "bbox": [[1, 2, 3, 4]],
                                                      "question": "What is the colour of the cup?",
                                                      "options": ["red", "blue", "green", "white"]})
    _image_file(root / "relative_position" / "b.jpg", (0, 0, 200), "JPEG")
    write_json(root / "relative_position" / "b.json", {"target_object": ["cup", "cat"], "bbox": [[1, 2, 3, 4]] * 2,
                                                      "question": "Is the cup on the left or right side of the cat?",
                                                      "options": ["left", "right"]})
    write_json(root / "test_questions.jsonl", [
        {"image": "direct_attributes/a.jpg", "text": "What is the colour of the cup?\n(A) red\n(B) blue\n(C) green"
         "\n(D) white\nAnswer with the option's letter from the given choices directly.",
         "category": "direct_attributes", "question_id": 0, "label": "A"},
        {"image": "relative_position/b.jpg", "text": "Is the cup on the left or right side of the cat?\n(A) right\n"
         "(B) left", "category": "relative_position", "question_id": 1, "label": "B"}], lines=True)
    return root


def hrbench_parquet(root: Path) -> Path:
    rows: list[dict[str, Any]] = []
    for q, (cat, gold) in enumerate([("single", "A"), ("cross", "B")]):
        for cycle in ("c0", "c1"):
            rows.append({"index": len(rows), "question": f"Question {q}: what colour is the sign?", "A": "red",
                         "B": "blue", "C": "green", "D": "white", "answer": gold, "category": cat,
                         "cycle_category": cycle, "image": b64((10 * q, 10, 10))})
    return write_parquet(root / "hr_bench_4k.parquet", rows)


def mme_lite_tsv(root: Path) -> Path:
    opts = ["(A) one", "(B) two", "(C) three", "(D) four", "(E) five"]
    rows = [
        {"index": 0, "image": b64(), "question": "How many cars are there?", "multi-choice options": repr(opts),
         "answer": "C", "category": "Perception/Monitoring", "l2-category": "vehicle/counting"},
        {"index": 1, "image": b64((0, 90, 0)), "question": "What colour is the roof?",
         "multi-choice options": repr(["(A) red", "(B) blue", "(C) grey", "(D) black", "(E) white"]),
         "answer": "B", "category": "Reasoning/Remote Sensing", "l2-category": "roof/color attribute"},
        {"index": 2, "image": b64((0, 0, 90)), "question": "Which lane is free?", "multi-choice options": repr(opts),
         "answer": "A", "category": "Perception/Monitoring", "l2-category": "vehicle/counting"},
    ]
    return write_tsv(root / "mme_realworld_lite.tsv", rows)


def mme_json(root: Path) -> Path:
    _image_file(root / "images" / "ad" / "0.png", (50, 50, 50))
    return write_json(root / "MME_RealWorld.json", [
        {"Question_id": "Perception/Autonomous_Driving/Objects_Identify/0000", "Image": "images/ad/0.png",
         "Text": "What is in front of the car?", "Answer choices": ["(A) a bus", "(B) a dog", "(C) nothing",
                                                                    "(D) a tree", "(E) a cone"],
         "Ground truth": "D", "Task": "Perception", "Subtask": "Autonomous_Driving", "Category": "Objects_Identify"}])


def ocrbench_json(root: Path) -> Path:
    for name in ("a", "b", "c", "d"):
        _image_file(root / "OCRBench_Images" / f"{name}.png", (240, 240, 240))
    return write_json(root / "OCRBench.json", [
        {"dataset_name": "IIIT5K", "id": 0, "image_path": "OCRBench_Images/a.png",
         "question": "what is written in the image?", "answers": "CENTRE", "type": "Regular Text Recognition"},
        {"dataset_name": "docVQA", "id": 1, "image_path": "OCRBench_Images/b.png", "question": "What is the total?",
         "answers": ["$12.50", "12.50"], "type": "Doc-oriented VQA"},
        {"dataset_name": "HME100k", "id": 2, "image_path": "OCRBench_Images/c.png",
         "question": "Write the expression in LaTeX.", "answers": "x ^ { 2 } + 1", "type": "Handwritten Mathematical "
                                                                                           "Expression Recognition"},
        {"dataset_name": "IC13", "id": 3, "image_path": "OCRBench_Images/d.png",
         "question": "what is written on the sign?", "answers": "Hello", "type": "Irregular Text Recognition"}])


def mathvista_json(root: Path) -> Path:
    for pid in ("1", "2", "3"):
        _image_file(root / "images" / f"{pid}.jpg", (100, 100, 100), "JPEG")
    base = {"unit": None, "metadata": {"split": "testmini", "task": "geometry problem solving",
                                       "skills": ["geometry reasoning", "algebraic reasoning"]}}
    return write_json(root / "testmini.json", {
        "1": {**base, "pid": "1", "question": "What is the length?", "image": "images/1.jpg", "choices": None,
              "precision": 1, "answer": "1.2", "question_type": "free_form", "answer_type": "float",
              "query": "Hint: answer with one decimal.\nQuestion: What is the length?"},
        "2": {**base, "pid": "2", "question": "How many sides?", "image": "images/2.jpg", "choices": None,
              "precision": None, "answer": "6", "question_type": "free_form", "answer_type": "integer",
              "metadata": {"task": "math word problem", "skills": ["arithmetic reasoning"]}},
        "3": {**base, "pid": "3", "question": "∠BOC = ?", "image": "images/3.jpg",
              "choices": ["135°", "140°", "145°", "150°"], "precision": None, "answer": "145°",
              "question_type": "multi_choice", "answer_type": "text"}})


def mathvista_tsv(root: Path) -> Path:
    return write_tsv(root / "MathVista_MINI.tsv", [
        {"index": 3, "image": b64(), "question": "∠BOC = ?\nChoices: (A) 135° (B) 140° (C) 145° (D) 150°",
         "answer": "145°", "question_type": "multi_choice", "answer_type": "text",
         "choices": repr(["135°", "140°", "145°", "150°"]), "answer_option": "C",
         "task": "geometry problem solving", "skills": repr(["geometry reasoning"])},
        {"index": 2, "image": b64(), "question": "How many sides?", "answer": "6", "question_type": "free_form",
         "answer_type": "integer", "choices": "[]", "task": "math word problem", "skills": "['arithmetic reasoning']"}])


def mathverse_json(root: Path) -> Path:
    rows: list[dict[str, Any]] = []
    versions = ["Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only"]
    for i, v in enumerate(versions):
        _image_file(root / "images" / f"image_{i}.png", (20 * i, 20, 20))
        rows.append({"sample_index": str(i + 1), "problem_index": "1", "problem_version": v,
                     "question": "" if v == "Vision Only" else "Find the area of the triangle.",
                     "image": f"images/image_{i}.png", "answer": "14", "question_type": "free-form",
                     "metadata": {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry",
                                  "subfield": "Area"},
                     "query_wo": "Please directly answer the question.", "query_cot": "According to the question "
                     "shown in the image, please first conduct reasoning, and then answer the question.",
                     "question_for_eval": "Find the area of the triangle."})
    rows[1].update(answer="B", question_type="multi-choice", question="Which is right?\nChoices:\nA:12\nB:14")
    return write_json(root / "testmini.json", rows)


def mmsearch_parquet(root: Path) -> Path:
    return write_parquet(root / "end2end.parquet", [
        {"sample_id": "0", "query": "Who won the 2024 race shown?", "query_image": {"bytes": image_bytes(), "path": None},
         "area": "news", "subfield": "sports", "gt_answer": "Max Verstappen", "alternative_gt_answers": ["Verstappen"],
         "gt_requery": "2024 race winner"},
        {"sample_id": "1", "query": "When was the bridge opened?", "query_image": None, "area": "knowledge",
         "subfield": "architecture", "gt_answer": "27 May 1937", "alternative_gt_answers": [],
         "gt_requery": "bridge opening date"},
        {"sample_id": "2", "query": "Which company makes the phone?", "query_image": None, "area": "news",
         "subfield": "tech", "gt_answer": "Apple Inc.", "alternative_gt_answers": ["Apple"], "gt_requery": "phone"}])


def realx_parquet(root: Path) -> Path:
    rows = [
        {"query": "Which city is this?", "answer": "Paris or Paris, France", "perception": 1, "search": 1,
         "reason": 0, "image": {"bytes": image_bytes((1, 2, 3)), "path": "a.png"}},
        {"query": "How many windows are lit?", "answer": "4", "perception": 1, "search": 0, "reason": 1,
         "image": {"bytes": image_bytes((4, 5, 6)), "path": "b.png"}},
        {"query": "What year was the painter born?", "answer": "1853", "perception": 0, "search": 1, "reason": 1,
         "image": {"bytes": image_bytes((7, 8, 9)), "path": "c.png"}},
    ]
    return write_parquet(root / "test.parquet", rows)


def fvqa_parquet(root: Path) -> Path:
    def row(q: str, gt: str, cands: list[str], i: int) -> dict[str, Any]:
        return {"id": str(i), "prompt": [{"content": f"<image>{q}", "role": "user"}],
                "images": [{"bytes": image_bytes((i * 40, 0, 0))}],
                "reward_model": {"ground_truth": gt, "candidate_answers": json.dumps(cands), "style": "rule"},
                "data_source": "fvqa_test", "image_urls": None}

    return write_parquet(root / "fvqa_test.parquet", [
        row("What is the country of origin of this food?", "Spain", ["Kingdom of Spain", "ESP", "Spain"], 0),
        row("Who designed this building?", "Gaudí", ["Antoni Gaudí"], 1),
        row("What breed is this dog?", "Beagle", [], 2)])


def infoseek_jsonl(root: Path) -> Path:
    for name in ("oven_1", "oven_2", "oven_3"):
        _image_file(root / "images" / f"{name}.jpg", (30, 60, 90), "JPEG")
    return write_json(root / "infoseek_val.jsonl", [
        {"data_id": "q1", "image_id": "oven_1", "question": "What is the name of this mountain?",
         "answer_eval": ["Mount Fuji", "Fuji"], "data_split": "val_unseen_question", "question_type": "STRING"},
        {"data_id": "q2", "image_id": "oven_2", "question": "How tall is this building in metres?",
         "answer_eval": [{"wikidata": 828, "range": [800, 850]}], "data_split": "val_unseen_entity",
         "question_type": "NUMERICAL"},
        {"data_id": "q3", "image_id": "oven_3", "question": "When was this bridge built?",
         "answer_eval": ["1937"], "data_split": "val_unseen_entity", "question_type": "TIME"}], lines=True)


def simplevqa_parquet(root: Path) -> Path:
    return write_parquet(root / "test.parquet", [
        {"data_id": 0, "image": b64(), "question": "What is this landmark?", "answer": "Big Ben", "language": "EN",
         "vqa_category": "landmark"},
        {"data_id": 1, "image": b64((0, 0, 255)), "question": "这是什么动物？", "answer": "熊猫", "language": "CN",
         "vqa_category": "animal"},
        {"data_id": 2, "image": b64((0, 255, 0)), "question": "Which river is this?", "answer": "Thames",
         "language": "EN", "vqa_category": "landmark"}])


def save_to_disk_dir(root: Path) -> Path:
    """V* rows as the lmms-eval dataset, written with datasets' save_to_disk (image as {bytes, path})."""
    import datasets

    rows = [{"image": {"bytes": image_bytes(), "path": None}, "text": "What colour?\n(A) red\n(B) blue",
             "label": "A", "category": "direct_attributes", "question_id": "0"},
            {"image": {"bytes": image_bytes((0, 0, 255)), "path": None}, "text": "Which side?\n(A) left\n(B) right",
             "label": "B", "category": "relative_position", "question_id": "1"}]
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string"),
                                  "label": datasets.Value("string"), "category": datasets.Value("string"),
                                  "question_id": datasets.Value("string")})
    datasets.Dataset.from_list(rows, features=features).save_to_disk(str(root / "vstar_disk"))
    return root / "vstar_disk"


# benchmark name -> (writer, expected usable items)
FIXTURES: dict[str, tuple[Callable[[Path], Path], int]] = {
    "vstar": (vstar_tsv, 3), "hrbench4k": (hrbench_parquet, 4), "mme-realworld-lite": (mme_lite_tsv, 3),
    "mme-realworld": (mme_json, 1), "ocrbench": (ocrbench_json, 4), "mathvista": (mathvista_json, 3),
    "mathverse": (mathverse_json, 5), "mmsearch": (mmsearch_parquet, 3), "realx": (realx_parquet, 3),
    "fvqa": (fvqa_parquet, 3), "infoseek": (infoseek_jsonl, 3), "simplevqa": (simplevqa_parquet, 3),
    "heldout": (fvqa_parquet, 3),
}
