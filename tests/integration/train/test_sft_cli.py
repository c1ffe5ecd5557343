"""`deepeyes sft` end to end on the tiny model: preflight, the run directory, exact resume
after kill -9, and the exported checkpoint loading in `deepeyes ask`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepeyes_cli.testing.sft_data import write_short_sharegpt

COMMON = ["sft.per_device_batch_size=1", "sft.dataloader_workers=0", "sft.report_to=[]", "sft.save_steps=2",
          "sft.learning_rate=1e-3", "sft.lr_scheduler=linear"]


@pytest.fixture(scope="module")
def short_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_short_sharegpt(tmp_path_factory.mktemp("short"), 12, seed=5)


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    out: dict[int, float] = {}
    for r in rows:
        out[r["step"]] = r["loss"]  # a step trained again after a resume: the last wins
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_preflight_catches_a_broken_sample(cli, tmp_path: Path, short_data: Path) -> None:
    rows = json.loads(short_data.read_text())
    rows[3]["messages"][0]["content"] = "<image><image>" + rows[3]["messages"][0]["content"]  # 3 pads, 1 image
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rows))
    for img in rows[3]["images"]:
        (tmp_path / img).write_bytes((short_data.parent / img).read_bytes())
    for r in rows:
        for img in r["images"]:
            if not (tmp_path / img).exists():
                (tmp_path / img).write_bytes((short_data.parent / img).read_bytes())
    res = cli("sft", "-r", "tiny", f"sft.datasets=[{bad}]", "--preflight", cwd=tmp_path)
    assert res.returncode == 1
    assert "image tokens = images" in res.stdout and "FAIL" in res.stdout
    assert f"{bad}:4" in res.stdout and "3 <image> placeholders for 1 images" in res.stdout
    assert "error: preflight failed" in res.stderr
    # a real start fails the same way, before any run directory or process exists
    res = cli("sft", "-r", "tiny", f"sft.datasets=[{bad}]", cwd=tmp_path)
    assert res.returncode == 1 and "preflight failed" in res.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_kill_9_then_resume_is_bit_identical_and_export_loads(cli, tmp_path: Path, short_data: Path) -> None:
    args = ["sft", "-r", "tiny", f"sft.datasets=[{short_data}]", "sft.max_steps=8", *COMMON]
    ref = tmp_path / "ref"
    res = cli(*args, "--run-dir", str(ref), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    want = _losses(ref)
    assert sorted(want) == list(range(1, 9))
    assert (ref / "checkpoints" / "latest").read_text().strip() == "step-000008"
    assert sorted(p.name for p in (ref / "checkpoints").glob("step-*")) == ["step-000006", "step-000008"]
    assert (ref / "loss_curve.png").stat().st_size > 0

    run = tmp_path / "killed"
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "deepeyes_cli", *args, "--run-dir", str(run)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = run / "checkpoints" / "latest"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip():
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = _losses(run)
    assert max(saved) < 8
    res = cli(*args, "--resume", "--run-dir", str(run), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    got = _losses(run)
    assert got == want  # every step, the ones after the checkpoint included, bit for bit

    ask = cli("ask", "-r", "tiny", "--model", str(ref / "export"), str(short_data.parent / "short-5-0.png"),
              "What color is it?", "agent.max_turns=1", "agent.max_tokens_per_turn=8", "agent.tools=[]",
              "--json", cwd=tmp_path)
    assert ask.returncode == 0, ask.stderr[-2000:]
