"""`deepeyes curate …` end to end: clear errors, and `curate run` killed with SIGKILL in the
middle of a stage, then rerun, gives the same data as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepeyes_cli.agent.batch import canonical
from deepeyes_cli.agent.trajectory import Trajectory

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_stage_errors_are_one_line_with_a_hint(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("curate", "difficulty", str(tmp_path / "nothing"), "-r", "tiny", "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 1
    assert "error:" in r.stderr and "holds no ingested samples" in r.stderr and "hint: run `deepeyes curate ingest" \
        in r.stderr
    r = cli("curate", "ingest", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "d"), "--run-dir",
            str(tmp_path / "run2"))
    assert r.returncode == 1 and "no such source" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "q.jsonl").write_text('{"question": "Q?", "answer": "a"}\n{"question": ""}\n')
    r = cli("curate", "ingest", str(tmp_path / "q.jsonl"), "-o", str(tmp_path / "d"), "--strict", "--run-dir",
            str(tmp_path / "run3"))
    assert r.returncode == 1 and "row 1: empty question" in r.stderr
    r = cli("curate", "ingest", str(tmp_path / "q.jsonl"), "-o", str(tmp_path / "d"), "curate.ingest.strict=false",
            "--run-dir", str(tmp_path / "run4"))
    assert r.returncode == 0, r.stderr
    assert "1 bad rows are listed" in r.stderr
    r = cli("curate", "synthesize", str(tmp_path / "d"), "-r", "tiny", "curate.synthesize.models=[]", "--run-dir",
            str(tmp_path / "run5"))
    assert r.returncode == 1 and "no teacher models configured" in r.stderr


def _args(tmp_path: Path, data: Path) -> list[str]:
    script = tmp_path / "base.json"
    script.write_text(json.dumps(["<think>I guess.</think>\n<answer>0</answer>"]))
    return ["curate", "run", "-r", "tiny", "-o", str(data), "policy.backend=scripted", f"policy.script={script}",
            "curate.synthetic.n=8", "curate.synthetic.size=128", "curate.difficulty.tools=[]",
            "curate.difficulty.k=2", "curate.tool_benefit.k=1", "reward.matching=rules", "curate.split.val_fraction=0",
            "curate.synthesize.models=[{name: oracle, backend: scripted, script: 'builtin:oracle', concurrency: 1}]"]


def _lines(path: Path, pattern: str) -> int:
    return sum(p.read_text().count("\n") for p in path.glob(pattern))


def test_run_killed_mid_synthesis_resumes_to_the_same_data(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "deepeyes_cli"]
    full = subprocess.run([*cmd, *_args(tmp_path, tmp_path / "full"), "--run-dir", str(tmp_path / "r1")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    assert "curate export" in full.stdout and "curate report" in full.stdout
    cut = tmp_path / "cut"
    proc = subprocess.Popen([*cmd, *_args(tmp_path, cut), "--run-dir", str(tmp_path / "r2")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and _lines(cut / "synthesize", "*/shard-*.jsonl") < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / "export").exists(), "the run finished before the kill"
    again = subprocess.run([*cmd, *_args(tmp_path, cut), "--run-dir", str(tmp_path / "r3")], capture_output=True,
                           text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already complete, skipped" in again.stdout  # ingest, difficulty, tool-benefit were done
    for name in ("split/rl.jsonl", "split/sft.jsonl", "export/sharegpt/deepeyes_sft.json",
                 "export/sharegpt/dataset_info.json", "export/rl.jsonl"):
        assert (cut / name).read_text() == (tmp_path / "full" / name).read_text(), name
    a = [canonical(Trajectory.model_validate_json(x)) for x in (tmp_path / "full/export/sft.jsonl").read_text().splitlines()]
    b = [canonical(Trajectory.model_validate_json(x)) for x in (cut / "export/sft.jsonl").read_text().splitlines()]
    assert a == b and len(a) > 0
    import pyarrow.parquet as pq

    verl = "export/verl/train.parquet"
    assert pq.read_table(cut / verl).equals(pq.read_table(tmp_path / "full" / verl))
    records = [json.loads(line) for p in (cut / "synthesize").glob("*/shard-*.jsonl")
               for line in p.read_text().splitlines() if line.endswith("}")]
    keys = [r["metadata"]["batch"]["key"] for r in records]
    failed = sum(r["end_reason"] in ("error", "tool_fatal") for r in records)  # retried: superseded
    assert len(set(keys)) == 8 and len(keys) <= 8 + failed
    assert (cut / "report.html").read_text().count("<img") >= 4
