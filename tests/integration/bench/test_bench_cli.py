"""The `deepeyes bench` command line: listing, errors, dry run, a real run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def test_ls_lists_every_benchmark_with_files_and_download(cli: Any) -> None:
    r = cli("bench", "ls", "--json")
    assert r.returncode == 0, r.stderr
    names = {b["name"]: b for b in json.loads(r.stdout)}
    for n in ("realx", "vstar", "hrbench4k", "hrbench8k", "mme-realworld", "mme-realworld-lite", "ocrbench",
              "mathvista", "mathverse", "mmsearch", "fvqa", "infoseek", "simplevqa"):
        assert names[n]["download"] and names[n]["layout"]
    r = cli("bench", "ls")
    assert r.returncode == 0 and "hr_bench_4k.tsv" in r.stdout and "paper DeepEyesV2-7B 81.8" in r.stdout


def test_errors_are_one_line_with_a_hint(cli: Any, tmp_path: Path) -> None:
    r = cli("bench", "hrbench4", "-r", "tiny", cwd=tmp_path)
    assert r.returncode == 1 and "error: unknown benchmark 'hrbench4'" in r.stderr
    assert "did you mean 'hrbench4k'" in r.stderr and "Traceback" not in r.stderr
    r = cli("bench", "ocrbench", "-r", "tiny", "--data", str(tmp_path / "none"), cwd=tmp_path)
    assert r.returncode == 1 and "no such file or folder" in r.stderr
    assert "hint: download https://github.com/Yuliang-Liu/MultimodalOCR" in r.stderr
    r = cli("bench", "mini", "-r", "tiny", "--tools", "maybe", cwd=tmp_path)
    assert r.returncode == 1 and "--tools maybe" in r.stderr


def test_dry_run_shows_the_plan(cli: Any, tmp_path: Path) -> None:
    r = cli("bench", "vstar", "mmsearch", "-r", "tiny", "--data", str(tmp_path), "--tools", "both", "--dry-run",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "vstar: " in r.stdout and "tools code; ≤11 model calls" in r.stdout
    assert "mmsearch: " in r.stdout and "tools code, search, image_search" in r.stdout
    assert "vstar-no-tools" in r.stdout and not list(tmp_path.glob("runs/*"))


@pytest.mark.slow
def test_a_scripted_run_writes_the_reports(cli: Any, tmp_path: Path) -> None:
    script = tmp_path / "turns.json"
    script.write_text(json.dumps(["<think>red</think>\n<answer>A</answer>"]))
    r = cli("bench", "mini", "-r", "tiny", "--backend", "scripted", f"policy.script={script}", "--tools", "off",
            "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "mini" in r.stdout and "25.0" in r.stdout and "report:" in r.stdout
    assert (tmp_path / "run" / "report.md").is_file()
    s = json.loads((tmp_path / "run" / "mini-no-tools" / "summary.json").read_text())
    assert s["headline"]["value"] == 25.0 and s["run"]["backend"] == "scripted"
