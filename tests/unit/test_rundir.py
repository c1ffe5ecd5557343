from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deepeyes_cli.logs import setup_logging
from deepeyes_cli.recipe.loader import load_recipe
from deepeyes_cli.rundir import RunDir, redact_argv

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_new_run_dir_records_everything(tmp_path: Path) -> None:
    r = load_recipe("tiny", [f"run.runs_dir={tmp_path}"])
    rd = RunDir.open(r, "model", ["deepeyes", "model", "check", "--recipe", "tiny"], now=T0)
    assert rd.path == tmp_path / "tiny-model-20260102T030405Z" and not rd.resumed
    for name in ("recipe.yaml", "command.txt", "run.json", "versions.json", "git.json"):
        assert (rd.path / name).is_file(), name
    assert "deepeyes model check --recipe tiny" in (rd.path / "command.txt").read_text()
    versions = json.loads((rd.path / "versions.json").read_text())
    assert versions["packages"]["transformers"] and versions["packages"]["torch"]
    info = json.loads((rd.path / "run.json").read_text())
    assert info["digest"] == r.digest and len(info["invocations"]) == 1
    # The written recipe loads back to the same recipe.
    again = load_recipe(str(rd.path / "recipe.yaml"))
    assert again.recipe == r.recipe


def test_same_second_gets_a_distinct_dir(tmp_path: Path) -> None:
    r = load_recipe("tiny", [f"run.runs_dir={tmp_path}"])
    a = RunDir.open(r, "model", ["deepeyes"], now=T0)
    b = RunDir.open(r, "model", ["deepeyes"], now=T0)
    assert a.path != b.path and not b.resumed


def test_reopening_resumes_without_overwriting(tmp_path: Path) -> None:
    r = load_recipe("tiny")
    rd = RunDir.open(r, "sft", ["deepeyes", "sft"], run_dir=tmp_path / "run", now=T0)
    rd.write_state({"step": 10})
    first_recipe = (rd.path / "recipe.yaml").read_text()
    again = RunDir.open(r, "sft", ["deepeyes", "sft", "--resume"], run_dir=tmp_path / "run")
    assert again.resumed and again.read_state() == {"step": 10}
    assert (rd.path / "recipe.yaml").read_text() == first_recipe
    assert (rd.path / "command.txt").read_text().count("deepeyes sft") == 2
    changed = load_recipe("tiny", ["agent.max_turns=2"])
    RunDir.open(changed, "sft", ["deepeyes", "sft"], run_dir=tmp_path / "run")
    assert (rd.path / "recipe.yaml").read_text() == first_recipe
    extra = sorted(p.name for p in rd.path.glob("recipe.*.yaml"))
    assert len(extra) == 1
    assert "max_turns: 2" in (rd.path / extra[0]).read_text()
    assert len(json.loads((rd.path / "run.json").read_text())["invocations"]) == 3


def test_run_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    from deepeyes_cli.errors import RunDirError

    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirError):
        RunDir.open(load_recipe("tiny"), "sft", ["deepeyes"], run_dir=tmp_path / "f")


def test_secrets_never_reach_files_or_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DE_SECRET_TOKEN", "tok-123456")
    recipe = tmp_path / "s.yaml"
    recipe.write_text("extends: tiny\nsandbox:\n  token: ${DE_SECRET_TOKEN}\n")
    r = load_recipe(str(recipe), ["sandbox.url=http://x"])
    argv = ["deepeyes", "sandbox", "serve", "--token", "tok-123456", "search.api_key=abc", "--api-key=zzz"]
    rd = RunDir.open(r, "sandbox", argv, run_dir=tmp_path / "run")
    setup_logging("info", rd.log_path(), rd.secrets)
    logging.getLogger("deepeyes_cli.test").info("connecting with tok-123456")
    for h in logging.getLogger("deepeyes_cli").handlers:
        h.flush()
    for f in rd.path.rglob("*"):
        if f.is_file():
            text = f.read_text()
            assert "tok-123456" not in text, f
            assert "abc" not in text.split("search.api_key=")[-1][:3] if "search.api_key=" in text else True
    assert "connecting with ***" in rd.log_path().read_text()
    assert "${DE_SECRET_TOKEN}" in (rd.path / "recipe.yaml").read_text()


def test_redact_argv_forms() -> None:
    out = redact_argv(["x", "--token", "a", "--token=b", "search.api_key=c", "--other", "d", "has-s3cret"],
                      secrets=["s3cret"])
    assert out == ["x", "--token", "***", "--token=***", "search.api_key=***", "--other", "d", "has-***"]
