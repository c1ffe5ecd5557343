"""Ingest: every layout to one Sample per question, bad rows listed, resumable after kill -9."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from deepeyes_cli.curate.config import CurateConfig
from deepeyes_cli.curate.ingest import ingest
from deepeyes_cli.curate.store import DataDir
from deepeyes_cli.errors import InputError

REPO = Path(__file__).resolve().parents[3]


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (20, 12)) -> bytes:
    buf = io.BytesIO()
    im = Image.new("RGB", size, colour)
    im.putpixel((1, 1), (colour[0] ^ 255, 7, 9))
    im.save(buf, format="PNG")
    return buf.getvalue()


def _pixels(data: DataDir, sample) -> bytes:  # type: ignore[no-untyped-def]
    return sample.images[0].load(data.path).tobytes()


def test_plain_jsonl_with_images_beside_it_and_every_bad_row_listed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(_png((200, 10, 10)))
    (src / "broken.png").write_bytes(b"not an image")
    rows = [{"id": "q1", "question": "What colour?", "answer": "red", "image": "a.png", "data_source": "perception",
             "extra": 5},
            {"id": "q2", "question": "Missing?", "answer": "x", "image": "nope.png"},
            {"id": "q3", "question": "Broken?", "answer": "x", "image": "broken.png"},
            {"id": "q4", "question": "  ", "answer": "x"},
            {"id": "q5", "question": "No answer?", "answer": ""},
            {"id": "q1", "question": "Duplicate?", "answer": "y"}]
    (src / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    s = ingest([str(src)], tmp_path / "data", CurateConfig())
    data = DataDir(tmp_path / "data")
    samples = data.load_samples()
    assert [x.id for x in samples] == ["q1"] and s.samples == 1 and s.bad == 6 and s.rows == 7
    assert samples[0].metadata["extra"] == 5 and samples[0].data_source == "perception"
    assert _pixels(data, samples[0]) == Image.open(src / "a.png").convert("RGB").tobytes()
    bad = [json.loads(line) for line in (tmp_path / "data" / "ingest" / "bad_rows.jsonl").read_text().splitlines()]
    assert [(b["row"], b["kind"]) for b in bad] == [
        (1, "missing image"), (2, "unreadable image"), (3, "empty question"), (4, "empty answer"),
        (5, "duplicate id"), (6, "not JSON")]
    assert bad[0]["id"] == "q2"
    with pytest.raises(InputError, match="row 1: missing image"):
        ingest([str(src / "rows.jsonl")], tmp_path / "strict", CurateConfig.model_validate(
            {"ingest": {"strict": True}}))


def test_images_are_stored_once_by_content(tmp_path: Path) -> None:
    png = _png((1, 2, 3))
    rows = [{"id": f"q{i}", "question": "Q?", "answer": "a", "image": {"bytes": png, "path": None}} for i in range(3)]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    ingest([str(tmp_path / "rows.parquet")], tmp_path / "data", CurateConfig())
    assert len(list((tmp_path / "data" / "images").iterdir())) == 1
    assert len(DataDir(tmp_path / "data").load_samples()) == 3


def test_released_rl_parquet_sharegpt_and_hf_datasets_dir_with_column_mapping(tmp_path: Path) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    png = _png((10, 200, 10))
    rl = [{"data_source": "search", "env_name": "deepeyes_v2",
           "prompt": [{"role": "system", "content": "sys"}, {"role": "user", "content": "<image>\nWho built it?"}],
           "images": [{"bytes": png}], "reward_model": {"ground_truth": "Eiffel"},
           "extra_info": {"index": "fvqa-1", "question": "Who built it?"}}]
    pq.write_table(pa.Table.from_pylist(rl), tmp_path / "search.parquet")
    (tmp_path / "a.png").write_bytes(png)
    sharegpt = [{"messages": [{"role": "user", "content": "<image>\nHow many?"},
                              {"role": "assistant", "content": "<think>count</think><answer>3</answer>"}],
                 "images": ["a.png"]}]
    (tmp_path / "sft_part_0.json").write_text(json.dumps(sharegpt))
    ds = datasets.Dataset.from_dict({"problem": ["Which side?"], "solution": ["left"], "pic": [Image.open(io.BytesIO(png))],
                                     "qid": ["hf-1"]}).cast_column("pic", datasets.Image())
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "hfdir"))
    cfg = CurateConfig.model_validate({"ingest": {"columns": {"image": "pic"}}})
    s = ingest([str(tmp_path / "search.parquet"), str(tmp_path / "sft_part_0.json"), str(tmp_path / "hfdir")],
               tmp_path / "data", cfg)
    assert s.bad == 0, (tmp_path / "data" / "ingest" / "bad_rows.jsonl").read_text()
    got = {x.id: x for x in DataDir(tmp_path / "data").load_samples()}
    assert got["fvqa-1"].question == "Who built it?" and got["fvqa-1"].answer == "Eiffel"
    assert got["fvqa-1"].data_source == "search" and got["fvqa-1"].metadata["env_name"] == "deepeyes_v2"
    sg = got["sft_part_0-0"]
    assert sg.question == "How many?" and sg.answer == "3" and len(sg.images) == 1
    hf = got["hf-1"]
    assert hf.question == "Which side?" and hf.answer == "left" and hf.metadata["split"] == "test"
    assert hf.images[0].sha256 == got["fvqa-1"].images[0].sha256 == sg.images[0].sha256


def test_a_finished_ingest_is_skipped_and_other_settings_run_again(tmp_path: Path) -> None:
    cfg = CurateConfig.model_validate({"synthetic": {"n": 4}})
    first = ingest(["builtin:synthetic"], tmp_path / "d", cfg)
    again = ingest(["builtin:synthetic"], tmp_path / "d", cfg)
    assert not first.skipped and again.skipped and again.samples == 4
    more = ingest(["builtin:synthetic"], tmp_path / "d", CurateConfig.model_validate({"synthetic": {"n": 6}}))
    assert not more.skipped and more.samples == 6
    assert len(DataDir(tmp_path / "d").load_samples()) == 6


def test_kill_9_during_ingest_then_resume_is_identical(tmp_path: Path) -> None:
    src = tmp_path / "rows.jsonl"
    (tmp_path / "a.png").write_bytes(_png((5, 6, 7)))
    with open(src, "w") as f:
        for i in range(3000):
            f.write(json.dumps({"id": f"r{i}", "question": f"Q{i}?", "answer": str(i),
                                **({"image": "a.png"} if i % 500 == 0 else {})}) + "\n")
        f.write(json.dumps({"id": "r7", "question": "dup", "answer": "1"}) + "\n")
    script = ("import sys; from deepeyes_cli.curate.ingest import ingest; from deepeyes_cli.curate.config import "
              "CurateConfig; ingest([sys.argv[1]], sys.argv[2], CurateConfig())")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", script, str(src), str(tmp_path / "full")], env=env, check=True, timeout=120)
    proc = subprocess.Popen([sys.executable, "-c", script, str(src), str(tmp_path / "cut")], env=env)
    progress = tmp_path / "cut" / "ingest" / "progress.json"
    deadline = time.time() + 60
    while time.time() < deadline and not (progress.exists() and json.loads(progress.read_text())["row"] >= 512):
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "ingest" / "summary.json").exists(), "the run finished before the kill"
    subprocess.run([sys.executable, "-c", script, str(src), str(tmp_path / "cut")], env=env, check=True, timeout=120)
    for name in ("samples.jsonl", "ingest/bad_rows.jsonl"):
        assert (tmp_path / "cut" / name).read_text() == (tmp_path / "full" / name).read_text()
    assert (tmp_path / "full" / "samples.jsonl").read_text().count("\n") == 3000
