"""Containers of ``isolation: docker`` never outlive their use: a session's container goes when
the session ends, the pool's when it closes, a killed server's when the next server starts.
Also `deepeyes sandbox check` under docker: which engine answered and which limits hold."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.docker_backend import LABEL_OWNER, LABEL_ROLE
from deepeyes_cli.sandbox.pool import KernelPool

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]  # container starts: slow when loaded
REPO = Path(__file__).resolve().parents[2]


def _containers(**labels: str) -> list[Any]:
    from deepeyes_cli.sandbox.image import docker_client

    client = docker_client()
    try:
        wanted = [f"{LABEL_ROLE}=kernel", *(f"{k}={v}" for k, v in labels.items())]
        return list(client.containers.list(all=True, filters={"label": wanted}))
    finally:
        client.close()


def _eventually(check: Any, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return bool(check())


def test_session_end_and_pool_close_remove_containers(docker_image: str) -> None:
    async def go() -> None:
        cfg = SandboxConfig(isolation="docker", docker_image=docker_image, pool_size=1, memory_mb=256)
        async with KernelPool(cfg) as pool:
            owner = str(pool.launcher.owner.path)  # type: ignore[attr-defined]
            session = await pool.open_session()
            assert (await session.run("print(6 * 7)")).stdout == "42\n"
            mine = session.kernel.process.container.name  # type: ignore[union-attr]
            names = {c.name for c in await asyncio.to_thread(_containers, **{LABEL_OWNER: owner})}
            assert mine in names  # the session's kernel, and the pool's ready one
            await session.close()
            gone = await asyncio.to_thread(_eventually, lambda: mine not in {
                c.name for c in _containers(**{LABEL_OWNER: owner})})
            assert gone, "the ended session's container is still there"
        assert _containers(**{LABEL_OWNER: owner}) == []  # the ready kernel's too, once the pool closed

    asyncio.run(go())


def _serve(run_dir: Path, image: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "deepeyes_cli", "sandbox", "serve", "--port", "0", "--isolation", "docker",
           "--run-dir", str(run_dir), "sandbox.pool_size=1", f"sandbox.docker_image={image}", "sandbox.memory_mb=256"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=run_dir,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "listening on" in line:
            return proc, line.strip().rsplit(" ", 1)[-1]
    raise AssertionError("the server did not start:\n" + "".join(lines))


def test_a_killed_servers_containers_are_gone_after_restart(docker_image: str, tmp_path: Path) -> None:
    before = {c.name for c in _containers()}
    proc, url = _serve(tmp_path, docker_image)
    try:
        r = httpx.post(f"{url}/jupyter_sandbox", json={"session_id": uuid.uuid4().hex, "code": "x = 1"}, timeout=120)
        assert r.status_code == 200, r.text
        left = {c.name for c in _containers()} - before
        assert left  # the session's container (and the pool's ready one) run
    finally:
        proc.send_signal(signal.SIGKILL)  # no cleanup at all
        proc.wait(timeout=30)
    assert left <= {c.name for c in _containers()}, "the containers should outlive a SIGKILLed server"
    proc2, _ = _serve(tmp_path, docker_image)  # a new server sweeps what the dead one labelled
    try:
        assert not left & {c.name for c in _containers()}, "a dead server's containers survived a restart"
    finally:
        proc2.terminate()
        proc2.wait(timeout=60)
    assert not ({c.name for c in _containers()} - before), "a stopped server left containers behind"


def test_sandbox_check_names_the_engine_and_the_limits_that_hold(docker_image: str, cli) -> None:
    r = cli("sandbox", "check", "--isolation", "docker", f"sandbox.docker_image={docker_image}",
            "sandbox.memory_mb=300", "sandbox.max_processes=40", "sandbox.cpus=0.5", timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {line[:22].strip(): line[22:].strip() for line in r.stdout.splitlines() if line.strip()}
    assert rows["isolation"] == "docker" and ("Podman" in rows["engine"] or "Docker" in rows["engine"])
    assert rows["memory limit"] == f"holds: {300 << 20} bytes (asked 300 MiB)"
    assert rows["process limit"].startswith("holds: pids.max 40") and rows["cpu limit"].startswith("holds")
    for name in ("capabilities", "no-new-privileges", "root filesystem", "network", "user"):
        assert rows[name].startswith("holds"), (name, rows[name])
