"""`deepeyes sandbox …` through the real entry point."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from PIL import Image

needs_bwrap = pytest.mark.needs_bwrap  # skips without bwrap; fails without it when CI is set


@needs_bwrap
def test_run_a_cell_on_an_image(cli, tmp_path: Path) -> None:
    img = tmp_path / "in.png"
    Image.new("RGB", (40, 30), "green").save(img)
    out = tmp_path / "out"
    r = cli("sandbox", "run", "print(image_1.size)\nimage_1.crop((0, 0, 4, 4))", "--image", str(img),
            "--out", str(out), "--json", "sandbox.pool_size=0")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["status"] == "ok" and result["stdout"] == "(40, 30)\n"
    assert Image.open(result["images"][0]).size == (4, 4)
    r = cli("sandbox", "run", "1/0")
    assert r.returncode == 1 and "ZeroDivisionError" in r.stdout


def test_run_refuses_bad_input_in_one_line(cli, tmp_path: Path) -> None:
    r = cli("sandbox", "run", "--file", str(tmp_path / "missing.py"))
    assert r.returncode == 1 and r.stderr.startswith("error: cannot read") and "Traceback" not in r.stderr
    assert "hint:" in r.stderr
    r = cli("sandbox", "run", "print(1)", "--file", str(tmp_path / "missing.py"))
    assert r.returncode == 1 and "not both" in r.stderr
    r = cli("sandbox", "run", "print(1)", "--timeout", "-3")
    assert r.returncode == 2 and "--timeout" in r.stderr
    r = cli("sandbox", "run", "print(1)", f"sandbox.state_dir={tmp_path / ('d' * 80)}")
    assert r.returncode == 1 and "too deep" in r.stderr and "Traceback" not in r.stderr
    state = Path(tempfile.mkdtemp(prefix="sbx-"))
    try:
        r = cli("sandbox", "run", "print(1)", "sandbox.python=/bin/false", f"sandbox.state_dir={state}")
        assert r.returncode == 1 and r.stderr.startswith("error: cannot run the kernel Python '/bin/false'")
        assert not list(state.iterdir())  # nothing left behind
    finally:
        shutil.rmtree(state, ignore_errors=True)


@needs_bwrap
def test_check_reports_the_kernels_view(cli) -> None:
    r = cli("sandbox", "check")
    assert r.returncode == 0, r.stderr
    uid = int(re.search(r"'uid': (\d+)", r.stdout).group(1))  # type: ignore[union-attr]
    assert "network" in r.stdout and "blocked" in r.stdout
    # As root each kernel gets an unprivileged uid of its own; otherwise it keeps ours (in a user namespace).
    assert uid >= 61000 if os.geteuid() == 0 else uid == os.getuid()


def test_serve_refuses_workers_and_dry_runs(cli) -> None:
    r = cli("sandbox", "serve", "--workers", "4")
    assert r.returncode == 2 and "one process" in r.stderr
    r = cli("sandbox", "serve", "--dry-run", "--host", "0.0.0.0", "sandbox.max_sessions=7")
    assert r.returncode == 0 and "max_sessions: 7" in r.stdout and "at most 7 sessions" in r.stdout
    assert "without a token" in r.stderr
    r = cli("sandbox", "serve", "--dry-run", "--host", "0.0.0.0", "--token", "t0k3n")
    assert r.returncode == 0 and "without a token" not in r.stderr and "t0k3n" not in r.stdout


def test_build_image_without_an_engine_and_its_context(cli, tmp_path: Path) -> None:
    r = cli("sandbox", "build-image", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert r.returncode == 1 and "no Docker engine" in r.stderr and "hint:" in r.stderr
    r = cli("sandbox", "build-image", "--context-out", str(tmp_path / "ctx"))
    assert r.returncode == 0, r.stderr
    ctx = tmp_path / "ctx"
    assert (ctx / "Dockerfile").is_file() and (ctx / "requirements.txt").is_file()
    assert (ctx / "deepeyes_cli" / "sandbox" / "kernel_init.py").is_file()
    assert not list(ctx.rglob("__pycache__"))


@needs_bwrap
def test_serve_on_ipv6_with_a_token_then_ctrl_c_cleans_up(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    import httpx

    state = Path(tempfile.mkdtemp(prefix="sbx-"))  # short: unix socket paths are at most 107 bytes
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepeyes_cli", "sandbox", "serve", "--host", "::1", "--port", "0", "--token", "t0k",
         "--run-dir", str(tmp_path / "run"), "sandbox.pool_size=0", f"sandbox.state_dir={state}"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])})
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("sandbox listening on http://[::1]:"), line
        url = line.split()[-1]
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        assert httpx.post(f"{url}/jupyter_sandbox", json={"code": "1"}).status_code == 401
        assert list(state.glob("deepeyes-sandbox-*/k*"))  # its first kernel lives there
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) in (0, 130)  # 130: interrupted, after a clean shutdown
    finally:
        proc.kill()
        proc.wait()
        leftovers = list(state.glob("deepeyes-sandbox-*"))
        shutil.rmtree(state, ignore_errors=True)
    assert not leftovers  # kernels and their directories are gone
