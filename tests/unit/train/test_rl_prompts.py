"""RL prompts: the DeepEyesV2 parquet layout, our JSONL, and the resumable sampler."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from deepeyes_cli.errors import InputError
from deepeyes_cli.train.rl.prompts import PromptSampler, load_prompts


def test_released_parquet_layout(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (9, 9, 9)).save(buf, format="PNG")
    rows = [{"data_source": "perception", "images": [{"bytes": buf.getvalue()}],
             "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "<image>\nWhat color?"}],
             "reward_model": {"ground_truth": "black", "style": "model"}, "extra_info": {"index": 7}}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rl.parquet")
    (task,) = load_prompts([tmp_path / "rl.parquet"])
    assert task.sample.question == "<image>\nWhat color?" and task.sample.answer == "black"
    assert task.sample.data_source == "perception" and task.sample.id == "7"
    assert task.images[0].size == (40, 30)


def test_jsonl_and_errors(tmp_path: Path) -> None:
    from deepeyes_cli.testing.rl_task import write_dataset

    tasks = load_prompts([write_dataset(tmp_path / "d.jsonl", 3)])
    assert len(tasks) == 3 and all(t.images and t.sample.answer for t in tasks)
    (tmp_path / "bad.jsonl").write_text("{\"x\": 1}\n")
    with pytest.raises(InputError, match="bad.jsonl:1"):
        load_prompts([tmp_path / "bad.jsonl"])
    with pytest.raises(InputError, match="no such RL dataset"):
        load_prompts([tmp_path / "missing.parquet"])


def test_sampler_resumes_exactly_and_covers_each_epoch() -> None:
    a = PromptSampler(10, seed=3)
    first = a.take(4) + a.take(4)
    b = PromptSampler(10, seed=3)
    b.load_state_dict(a.state_dict())
    assert a.take(7) == b.take(7)
    c = PromptSampler(10, seed=3)
    epoch = c.take(10)
    assert sorted(epoch) == list(range(10)) and epoch[:8] == first
    assert c.take(10) != epoch  # a new shuffle each epoch
