"""The real `deepeyes` entry point, run as a user would (subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

from deepeyes_cli import __version__


def test_version_and_help(cli) -> None:
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.startswith(f"deepeyes {__version__}")
    out = cli("--help")
    assert out.returncode == 0
    for group in ("recipes", "model", "completions"):
        assert group in out.stdout


def test_recipes_ls_show_cp_validate(cli, tmp_path: Path) -> None:
    out = cli("recipes", "ls")
    assert out.returncode == 0 and all(n in out.stdout for n in ("tiny", "7b", "32b"))
    out = cli("recipes", "show", "32b", "agent.max_turns=11")
    assert out.returncode == 0
    assert "Qwen/Qwen2.5-VL-32B-Instruct" in out.stdout and "max_turns: 11" in out.stdout
    out = cli("recipes", "show", "tiny", "--json")
    assert json.loads(out.stdout)["model"]["path"] == "builtin:tiny"
    out = cli("recipes", "cp", "tiny", str(tmp_path))
    assert out.returncode == 0 and (tmp_path / "tiny.yaml").is_file()
    out = cli("recipes", "cp", "tiny", str(tmp_path))
    assert out.returncode == 1 and "already exists" in out.stderr and "--force" in out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: tiny\nagent:\n  max_turnz: 3\n")
    out = cli("recipes", "validate", str(tmp_path / "tiny.yaml"), str(bad))
    assert out.returncode == 1
    assert "ok" in out.stdout and "bad.yaml:3" in out.stderr and "did you mean 'agent.max_turns'" in out.stderr


def test_user_errors_are_one_line_without_traceback(cli) -> None:
    out = cli("recipes", "show", "tyni")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines == ["error: unknown recipe 'tyni'",
                     "hint: did you mean 'tiny'? `deepeyes recipes ls` lists the recipes"]
    assert "Traceback" not in out.stderr


def test_debug_shows_the_traceback(cli) -> None:
    out = cli("--debug", "recipes", "show", "tyni")
    assert out.returncode != 0 and "Traceback" in out.stderr and "RecipeError" in out.stderr


def test_usage_errors_exit_2(cli) -> None:
    assert cli("recipes", "bogus").returncode == 2
    assert cli("model", "check", "--max-new-tokens", "zero").returncode == 2


def test_dry_run_prints_recipe_and_plan_and_writes_nothing(cli, tmp_path: Path) -> None:
    out = cli("model", "check", "--recipe", "tiny", "model.max_pixels=50176", "--dry-run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "max_pixels: 50176" in out.stdout and "# would run:" in out.stdout
    assert not (tmp_path / "runs").exists()


def test_model_check_on_tiny_writes_a_run_dir(cli, tmp_path: Path, tiny_model_dir: Path) -> None:
    out = cli("model", "check", "--recipe", "tiny", "--max-new-tokens", "5", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("tiny-model-")
    report = json.loads((runs[0] / "model_check.json").read_text())
    assert report["new_tokens"] == 5 and report["image_tokens"] > 0
    assert (runs[0] / "logs" / "model.log").is_file()
    # Re-running into the same directory resumes it.
    out = cli("model", "check", "--recipe", "tiny", "--max-new-tokens", "5", "--run-dir", str(runs[0]), cwd=tmp_path)
    assert out.returncode == 0
    assert len(json.loads((runs[0] / "run.json").read_text())["invocations"]) == 2


def test_model_check_missing_image_is_a_user_error(cli, tmp_path: Path) -> None:
    out = cli("model", "check", "--recipe", "tiny", "--image", str(tmp_path / "nope.jpg"), cwd=tmp_path)
    assert out.returncode == 1 and "error: image not found" in out.stderr and "Traceback" not in out.stderr
    notimg = tmp_path / "x.jpg"
    notimg.write_text("not an image")
    out = cli("model", "check", "--recipe", "tiny", "--image", str(notimg), cwd=tmp_path)
    assert out.returncode == 1 and "not a readable image" in out.stderr


def test_build_tiny_refuses_to_clobber(cli, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    out = cli("model", "build-tiny", "--out", str(tmp_path))
    assert out.returncode == 1 and "not empty" in out.stderr and (tmp_path / "keep.txt").exists()


def _blocked_reading_stdin(pid: int) -> bool:
    """The main thread sleeps in a read of a pipe (``sandbox run -`` waiting for its cell)."""
    try:
        return "pipe_read" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


def _interrupt_when(proc, ready, timeout: float = 60) -> tuple[int, str]:
    import signal
    import time

    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the command never reached the point to interrupt"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_ctrl_c_is_one_clear_line_and_exit_130(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    # `sandbox run -` blocks reading the cell from stdin: a deterministic place to interrupt.
    proc = subprocess.Popen([sys.executable, "-m", "deepeyes_cli", "sandbox", "run", "-", "-r", "tiny"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"})
    code, err = _interrupt_when(proc, lambda: _blocked_reading_stdin(proc.pid))
    assert code == 130
    assert "error: interrupted" in err and "Traceback" not in err


def test_ctrl_c_while_the_command_is_still_starting_is_the_same_clear_line(tmp_path: Path) -> None:
    """Interrupted after the CLI package is imported but before ``run`` catches Ctrl-C (the
    window of typer, rich and the subcommands' imports): no traceback either."""
    import os
    import subprocess
    import sys

    starting = ("import sys\nsys.argv[0] = 'deepeyes'\nimport deepeyes_cli.cli.main\n"
                "print('imported', flush=True)\nsys.stdin.readline()\n"
                "deepeyes_cli.cli.main.run(['--version'])\n")
    proc = subprocess.Popen([sys.executable, "-c", starting], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"})
    assert proc.stdout is not None and proc.stdout.readline() == "imported\n"
    code, err = _interrupt_when(proc, lambda: _blocked_reading_stdin(proc.pid))
    assert code == 130, err
    assert err.startswith("error: interrupted\nhint: ") and "Traceback" not in err


def test_a_program_that_imports_the_cli_keeps_its_own_ctrl_c() -> None:
    import subprocess
    import sys

    code = ("import signal\nimport deepeyes_cli.cli.main\n"
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr
