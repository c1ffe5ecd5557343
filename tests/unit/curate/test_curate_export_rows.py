"""`curate export` on a hand-made data directory (no rollouts): every format's rows field by
field, images linked by content hash, the stage marker, and the errors. Fast enough for
`make mutation` (the pipeline test in tests/integration/curate covers the consumers)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from deepeyes_cli.agent.trajectory import (
    ImagePart,
    ImageRef,
    Message,
    Sample,
    TextPart,
    Trajectory,
    encode_png,
)
from deepeyes_cli.curate import export as export_mod
from deepeyes_cli.curate.export import export, sharegpt_row, verl_row
from deepeyes_cli.curate.store import DataDir
from deepeyes_cli.errors import InputError


def _png(path: Path, color: tuple[int, int, int]) -> ImageRef:
    image = Image.new("RGB", (8, 6), color)
    ref = ImageRef.from_pil(image)
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{ref.sha256}.png").write_bytes(encode_png(image))
    return ref


@pytest.fixture(scope="module")
def recipe() -> Any:
    from deepeyes_cli.recipe.loader import load_recipe

    return load_recipe("tiny").recipe


def _data(root: Path) -> tuple[DataDir, dict[str, Any]]:
    data = DataDir(root / "data")
    red = _png(data.images, (255, 0, 0))
    blue = _png(data.images, (0, 0, 255))
    for ref in (red, blue):
        ref.path = f"images/{ref.sha256}.png"
    s1 = Sample(id="s1", question="What colour?", answer="red", data_source="perception", images=[red],
                metadata={"capability": "colour"})
    s2 = Sample(id="s2", question="Which one is blue?", answer=None, data_source="search", images=[blue])
    data.samples.write_text(s1.model_dump_json() + "\n" + s2.model_dump_json() + "\n")
    split = data.stage("split")
    data.write_jsonl(split / "rl.jsonl", [{"id": "s1"}])
    data.write_jsonl(split / "val.jsonl", [{"id": "s2"}])
    data.write_jsonl(split / "sft.jsonl", [{"id": "s1"}])
    data.finish("split", "d", {"rl": 1})
    crop = _png(data.path / "synthesize" / "teacher", (0, 255, 0))
    crop.path = f"teacher/{crop.sha256}.png"
    # a kept trajectory's image paths are relative to its own folder (synthesize/)
    up = red.model_copy(update={"path": f"../images/{red.sha256}.png"})
    traj = Trajectory(id="t1", sample=s1.model_copy(update={"images": [up]}), messages=[
        Message(role="system", content=[TextPart(text="sys")]),
        Message(role="user", content=[ImagePart(image=up.model_copy()), TextPart(text="What colour?")]),
        Message(role="assistant", content=[TextPart(text="<think>crop</think><code>crop()</code>")]),
        Message(role="user", content=[TextPart(text="out: "), ImagePart(image=crop)]),
        Message(role="assistant", content=[TextPart(text="<answer>red</answer>")])])
    data.write_jsonl(data.path / "synthesize" / "kept.jsonl", [traj.model_dump(mode="json")])
    return data, {"red": red, "blue": blue, "crop": crop, "s1": s1, "s2": s2, "traj": traj}


def test_export_writes_every_format(tmp_path: Path, recipe: Any) -> None:
    data, x = _data(tmp_path)
    summary = export(recipe, data)
    out = data.path / "export"
    assert summary == {"sft_trajectories": 1, "rl": 1, "val": 1,
                       "files": ["sft.jsonl", "rl.jsonl", "val.jsonl", "sharegpt/deepeyes_sft.json",
                                 "sharegpt/dataset_info.json", "verl/train.parquet", "verl/val.parquet"]}
    # (a) trajectories and samples with images next to them, by content hash
    (sft,) = [Trajectory.model_validate_json(line) for line in (out / "sft.jsonl").read_text().splitlines()]
    paths = [ref.path for ref in sft.image_refs()]
    assert paths == [f"images/{x['red'].sha256}.png"] * 2 + [f"images/{x['crop'].sha256}.png"]
    assert (out / paths[0]).read_bytes() == (data.path / x["red"].path).read_bytes()
    assert (out / paths[2]).read_bytes() == (data.path / "synthesize" / x["crop"].path).read_bytes()
    (rl,) = [json.loads(line) for line in (out / "rl.jsonl").read_text().splitlines()]
    assert rl["id"] == "s1" and rl["images"][0]["path"] == f"images/{x['red'].sha256}.png"
    (val,) = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    assert val["id"] == "s2" and "answer" not in val  # None fields are left out
    assert (out / val["images"][0]["path"]).read_bytes() == (data.path / x["blue"].path).read_bytes()
    # (b) sharegpt
    rows = json.loads((out / "sharegpt" / "deepeyes_sft.json").read_text())
    assert [r["id"] for r in rows] == ["t1"] and len(rows[0]["images"]) == 2
    info = json.loads((out / "sharegpt" / "dataset_info.json").read_text())
    assert info == {"deepeyes_sft": {  # LLaMA-Factory's dataset_info.json entry for sharegpt data with images
        "file_name": "deepeyes_sft.json", "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"}}}
    # (c) verl parquet, read back with datasets
    from datasets import Dataset

    train = Dataset.from_parquet(str(out / "verl" / "train.parquet"))
    assert train.num_rows == 1 and train[0]["extra_info"]["split"] == "train"
    assert train[0]["data_source"] == "perception" and train[0]["ability"] == "colour"
    from deepeyes_cli.curate.export import prompt_texts

    system, instruction = prompt_texts(recipe)  # the recipe's own prompts, as the loop would render them
    assert train[0]["prompt"] == [{"role": "system", "content": system},
                                  {"role": "user", "content": f"<image>\nWhat colour?\n\n{instruction}"}]
    assert train[0]["env_name"] == recipe.curate.export.env_name == "deepeyes_v2"
    valset = Dataset.from_parquet(str(out / "verl" / "val.parquet"))
    assert valset[0]["extra_info"]["split"] == "val" and valset[0]["reward_model"]["ground_truth"] == ""
    assert valset[0]["images"][0].size == (8, 6)
    # done: the same inputs skip, force runs again
    assert export(recipe, data) == {**summary, "digest": data.summary("export")["digest"], "skipped": True}  # type: ignore[index]
    assert "skipped" not in export(recipe, data, force=True)


def test_export_of_one_format_only(tmp_path: Path, recipe: Any) -> None:
    data, _ = _data(tmp_path)
    only = recipe.model_copy(deep=True)
    only.curate.export.formats = ["sharegpt"]
    only.curate.export.dataset_name = "mine"
    assert export(only, data)["files"] == ["sharegpt/mine.json", "sharegpt/dataset_info.json"]
    assert sorted(p.name for p in (data.path / "export").iterdir()) == ["sharegpt", "summary.json"]
    info = json.loads((data.path / "export" / "sharegpt" / "dataset_info.json").read_text())
    assert info["mine"]["file_name"] == "mine.json"


def test_export_before_split_is_a_clear_error(tmp_path: Path, recipe: Any) -> None:
    data, _ = _data(tmp_path)
    shutil.rmtree(data.path / "split")
    with pytest.raises(InputError) as err:
        export(recipe, data)
    assert str(err.value) == f"{data.path} has not been split yet"
    assert err.value.hint == f"run `deepeyes curate split {data.path}` first"


def test_sharegpt_row_places_one_image_tag_per_image(tmp_path: Path) -> None:
    data, x = _data(tmp_path)
    traj = x["traj"]
    row = sharegpt_row(traj, data.path / "synthesize", tmp_path / "sg")
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert row["messages"][1]["content"] == "<image>What colour?"
    assert row["messages"][3]["content"] == "out: <image>"
    assert row["images"] == [f"images/{x['red'].sha256}.png", f"images/{x['crop'].sha256}.png"]
    assert all((tmp_path / "sg" / p).is_file() for p in row["images"])
    sample = json.loads(row["sample"])
    assert sample["id"] == "s1" and sample["images"] == [] and row["id"] == "t1"
    zh = traj.model_copy(update={"sample": traj.sample.model_copy(update={"question": "什么颜色？"})})
    assert "什么颜色？" in sharegpt_row(zh, data.path / "synthesize", tmp_path / "sg")["sample"]  # kept readable


def test_verl_row_fields(tmp_path: Path) -> None:
    data, x = _data(tmp_path)
    s1 = x["s1"].model_copy(deep=True)
    s1.question = " 什么颜色？ "
    row = verl_row(s1, data.path, "SYS", "Answer.", "env", "train")
    assert row["prompt"] == [{"role": "system", "content": "SYS"},
                             {"role": "user", "content": "<image>\n什么颜色？\n\nAnswer."}]
    assert row["images"] == [{"bytes": (data.path / x["red"].path).read_bytes(), "path": None}]
    assert row["data_source"] == "perception" and row["ability"] == "colour" and row["env_name"] == "env"
    assert row["reward_model"] == {"ground_truth": "red", "style": "rule"}
    extra = row["extra_info"]
    assert (extra["index"], extra["question"], extra["answer"], extra["split"]) == ("s1", " 什么颜色？ ", "red", "train")
    assert "什么颜色" in extra["sample"] and json.loads(extra["sample"])["images"] == []
    no_system = verl_row(x["s2"], data.path, None, "", "env", "val")
    assert no_system["prompt"] == [{"role": "user", "content": "<image>\nWhich one is blue?"}]
    assert no_system["ability"] == "search" and no_system["extra_info"]["answer"] == ""
    absolute = x["s2"].model_copy(deep=True)
    absolute.images[0].path = str(data.path / x["blue"].path)
    assert verl_row(absolute, tmp_path / "elsewhere", None, "", "env", "val")["images"] == no_system["images"]


def test_images_are_hard_linked_else_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, x = _data(tmp_path)
    src = data.path / x["red"].path
    rel = export_mod._copy_image(data.path, x["red"].path, tmp_path / "a", x["red"].sha256)
    assert rel == f"images/{x['red'].sha256}.png" and os.stat(tmp_path / "a" / rel).st_ino == os.stat(src).st_ino

    def no_link(*_: Any) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(export_mod.os, "link", no_link)
    rel = export_mod._copy_image(data.path, str(src), tmp_path / "b", x["red"].sha256)  # an absolute path
    copied = tmp_path / "b" / rel
    assert copied.read_bytes() == src.read_bytes() and os.stat(copied).st_ino != os.stat(src).st_ino
    src.write_bytes(b"changed")  # an image already there is not copied again
    export_mod._copy_image(data.path, x["red"].path, tmp_path / "b", x["red"].sha256)
    assert copied.read_bytes() != b"changed"


def test_verl_parquet_gives_every_field_back(tmp_path: Path, recipe: Any) -> None:
    from datasets import Dataset

    from deepeyes_cli.curate.export import verl_features, write_verl

    data, x = _data(tmp_path)
    row = verl_row(x["s1"], data.path, "SYS", "Answer.", "env", "train")
    path = tmp_path / "new" / "nested" / "train.parquet"  # folders made as needed
    write_verl([row], path)
    back = Dataset.from_parquet(str(path))
    assert back.features == verl_features()
    got = back[0]
    assert got["prompt"] == row["prompt"] and got["reward_model"] == row["reward_model"]
    assert got["extra_info"] == row["extra_info"]
    assert (got["data_source"], got["ability"], got["env_name"]) == ("perception", "colour", "env")
    assert not list(tmp_path.glob("new/nested/.*.tmp"))  # written whole, then moved into place
    empty = tmp_path / "other" / "val.parquet"
    write_verl([], empty)  # an empty split still has the columns
    import pyarrow.parquet as pq
    from datasets import Features

    assert pq.read_metadata(empty).num_rows == 0
    assert Features.from_arrow_schema(pq.read_schema(empty)) == verl_features()


@pytest.mark.parametrize(("tools", "present", "absent"), [
    (["code"], ["<code>"], ['"name": "search"', '"name": "image_search"']),
    (["search"], ['"name": "search"'], ["<code>", '"name": "image_search"']),
    (["image_search"], ['"name": "image_search"'], ["<code>", '"name": "search"']),
    ([], [], ["<code>", '"name": "search"', '"name": "image_search"']),
    (["code", "search", "image_search"], ["<code>", '"name": "search"', '"name": "image_search"'], []),
], ids=["code", "search", "image_search", "none", "all"])
def test_prompt_texts_offer_the_recipes_tools_only(recipe: Any, tools: list[str], present: list[str],
                                                   absent: list[str]) -> None:
    from deepeyes_cli.curate.export import prompt_texts

    only = recipe.model_copy(deep=True)
    only.agent.tools = tools
    system, instruction = prompt_texts(only)
    assert system is not None
    assert all(p in system for p in present) and not any(a in system for a in absent)
    assert ("<code>" in instruction) == bool(tools)  # the instruction with tools names both forms
    assert ("<tool_call>" in instruction) == any(t in tools for t in ("search", "image_search"))


def test_export_runs_again_when_any_of_its_inputs_changes(tmp_path: Path, recipe: Any) -> None:
    data, x = _data(tmp_path)
    assert "skipped" not in export(recipe, data)
    assert export(recipe, data).get("skipped") is True

    def again(r: Any = recipe) -> bool:
        return "skipped" not in export(r, data)

    data.samples.write_text(data.samples.read_text() + x["s2"].model_copy(update={"id": "s3"}).model_dump_json() + "\n")
    assert again()  # the samples
    data.write_jsonl(data.path / "split" / "val.jsonl", [{"id": "s3"}])
    assert again()  # the split
    kept = data.path / "synthesize" / "kept.jsonl"
    kept.write_text(kept.read_text().replace('"id":"t1"', '"id":"t2"').replace('"id": "t1"', '"id": "t2"'))
    assert again()  # the kept trajectories
    other = recipe.model_copy(deep=True)
    other.curate.export.env_name = "other_env"
    assert again(other)  # the export settings
    prompts = other.model_copy(deep=True)
    prompts.agent.tools = ["code"]
    assert again(prompts)  # the agent (its prompts)
    assert not again(prompts)


def test_rewriting_jsonl_image_paths_leaves_the_samples_for_verl_alone(tmp_path: Path, recipe: Any) -> None:
    data, x = _data(tmp_path)
    raw = data.path / "raw"
    raw.mkdir()
    shutil.copyfile(data.path / x["blue"].path, raw / "blue.png")
    (data.path / x["blue"].path).unlink()  # the val sample's image lives elsewhere than images/
    moved = x["s2"].model_copy(deep=True)
    moved.images[0].path = "raw/blue.png"
    data.samples.write_text(x["s1"].model_dump_json() + "\n" + moved.model_dump_json() + "\n")
    export(recipe, data)
    from datasets import Dataset

    val = Dataset.from_parquet(str(data.path / "export" / "verl" / "val.parquet"))
    assert val[0]["images"][0].size == (8, 6)
