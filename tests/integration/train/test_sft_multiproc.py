"""Several training processes: torchrun with 2 ranks and DeepSpeed ZeRO-3 on the CPU
accelerator (gloo), and two simulated nodes (two `torchrun --nnodes 2` on localhost).
The ZeRO code is the code under test. Run with `make test-train` (it warms DeepSpeed's JIT
op once per machine); skipped unless DEEPEYES_MULTIPROC=1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from deepeyes_cli.testing.sft_data import write_short_sharegpt

pytestmark = [pytest.mark.multiproc, pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("DEEPEYES_MULTIPROC") != "1",
                                 reason="multi-process training: `make test-train` (DEEPEYES_MULTIPROC=1)")]

COMMON = ["sft.dataloader_workers=0", "sft.report_to=[]", "sft.learning_rate=1e-3", "sft.lr_scheduler=constant",
          "sft.per_device_batch_size=1", "sft.max_steps=2", "sft.save_steps=1"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_short_sharegpt(tmp_path_factory.mktemp("mp"), 8, seed=11)


def test_torchrun_two_ranks_deepspeed_zero3_matches_one_process(cli, tmp_path: Path, data: Path) -> None:
    base = ["sft", "-r", "tiny", f"sft.datasets=[{data}]", *COMMON]
    one = tmp_path / "one"
    res = cli(*base, "sft.gradient_accumulation_steps=2", "--run-dir", str(one), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    two = tmp_path / "two"
    res = cli(*base, "launch.launcher=torchrun", "launch.gpus_per_node=2", "launch.zero_stage=3",
              f"launch.master_port={_port()}", "sft.gradient_accumulation_steps=1", "--run-dir", str(two),
              cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _losses(one), _losses(two)
    # the same two samples per optimizer step, as 2 micro-batches on 1 rank or 1 on each of 2
    # ranks: the exact token mean makes the loss and the update the same
    assert sorted(a) == sorted(b) == [1, 2]
    assert abs(a[1] - b[1]) < 1e-5 and abs(a[2] - b[2]) < 1e-4, (a, b)
    shards = sorted(p.name for p in (two / "checkpoints" / "step-000002" / "engine" / "state").iterdir())
    assert any("zero_pp_rank_1" in s for s in shards), shards
    launch = json.loads((two / "launch.json").read_text())
    assert launch["commands"][0]["env"]["DS_ACCELERATOR"] == "cpu"
    assert (two / "export" / "model.safetensors").is_file()
    from transformers import Qwen2_5_VLForConditionalGeneration

    Qwen2_5_VLForConditionalGeneration.from_pretrained(two / "export")


def test_two_simulated_nodes_zero3(tmp_path: Path, data: Path) -> None:
    from deepeyes_cli.launch.argv import build_plan
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.rundir import RunDir

    port = _port()
    resolved = load_recipe("tiny", [f"sft.datasets=[{data}]", *COMMON, "launch.launcher=torchrun", "launch.nnodes=2",
                                    "launch.gpus_per_node=1", "launch.zero_stage=3", f"launch.master_port={port}",
                                    f"run.runs_dir={tmp_path / 'runs'}"])
    rd = RunDir.open(resolved, "sft", ["test"], tmp_path / "run")
    import sys

    plan = build_plan(resolved.recipe.launch, run_dir=rd.path, device="cpu", python=sys.executable)
    assert [c.where for c in plan.commands] == ["node 0", "node 1"]
    procs = [subprocess.Popen(c.argv, env={**os.environ, **c.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for c in plan.commands]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    losses = _losses(rd.path)
    assert sorted(losses) == [1, 2] and all(v == v for v in losses.values())
    assert (rd.path / "checkpoints" / "latest").read_text().strip() == "step-000002"
