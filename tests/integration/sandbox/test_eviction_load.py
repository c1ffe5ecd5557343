"""The load test of issue 10: 500 distinct session ids x 2 cells, never ended, on loopback,
against `deepeyes sandbox serve` with default settings. It must finish with no error and with
memory bounded (kernels at most max_sessions plus the ready pool; no growth with the count).

``DEEPEYES_LOAD_SESSIONS`` changes the count (e.g. 2000 for a longer run by hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
SESSIONS = int(os.environ.get("DEEPEYES_LOAD_SESSIONS", "500"))
WORKERS = 8

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")]


def _tree(pid: int) -> tuple[int, float]:
    """Processes under ``pid`` (itself included) and their proportional set size in MiB."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
    members, grew = {pid}, True
    while grew:
        grew = False
        for p, parent in parents.items():
            if parent in members and p not in members:
                members.add(p)
                grew = True
    pss = 0
    for p in members:
        with contextlib.suppress(OSError), open(f"/proc/{p}/smaps_rollup") as f:
            pss += next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
    return len(members), pss / 1024


@pytest.fixture
def default_server(tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    token = uuid.uuid4().hex
    env = {**os.environ, "PYTHONPATH": str(REPO), "DEEPEYES_SANDBOX_TOKEN": token}
    cmd = [sys.executable, "-m", "deepeyes_cli", "sandbox", "serve", "--port", "0", "--run-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path)
    assert proc.stderr is not None
    lines: list[str] = []
    url = None
    for line in proc.stderr:
        lines.append(line)
        if "listening on" in line:
            url = line.strip().rsplit(" ", 1)[-1]
            break
    if url is None:
        raise RuntimeError("the sandbox server did not start:\n" + "".join(lines))
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    try:
        yield url, token, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.timeout(900)
def test_500_never_ended_sessions_with_default_settings(default_server: tuple[str, str, subprocess.Popen[str]]) -> None:
    url, token, proc = default_server
    failures: list[str] = []
    memory: dict[str, float] = {}
    done = 0

    async def go() -> None:
        nonlocal done
        transport = httpx.AsyncHTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                     transport=transport, timeout=180) as client:
            ids = iter(range(SESSIONS))

            async def worker() -> None:
                nonlocal done
                for i in ids:
                    sid = f"traj-{i}"
                    for code, want in ((f"x = {i}", ""), ("print(x)", f"{i}\n")):
                        resp = await client.post("/jupyter_sandbox", json={"session_id": sid, "code": code})
                        body = resp.json() if resp.status_code == 200 else {}
                        if resp.status_code != 200 or body["deepeyes"]["status"] != "ok" \
                                or body["output"]["stdout"] != want:
                            failures.append(f"{sid} {code!r}: {resp.status_code} {resp.text[:300]}")
                    done += 1
                    if done == 100:
                        memory["after_100"] = _tree(proc.pid)[1]

            await asyncio.gather(*(worker() for _ in range(WORKERS)))
            memory["after_all"] = _tree(proc.pid)[1]
            health = (await client.get("/health")).json()
            metrics = (await client.get("/metrics")).text
            # The first session was evicted long ago: it reopens empty, and says so.
            resp = (await client.post("/jupyter_sandbox", json={"session_id": "traj-0", "code": "print(x)"})).json()
            assert "NameError" in resp["output"]["stderr"], resp
            assert "make room" in resp["deepeyes"]["notes"][0] and "variables are gone" in resp["deepeyes"]["notes"][0]
            processes = _tree(proc.pid)[0]
            assert health["sessions"] <= health["max_sessions"] == 32 and health["queued_sessions"] == 0
            assert health["sessions_evicted"] >= SESSIONS - 32, health
            evicted = re.search(r"^deepeyes_sandbox_sessions_evicted_total (\S+)$", metrics, re.M)
            assert evicted and float(evicted.group(1)) >= SESSIONS - 32
            # Kernels alive: the sessions' and the ready pool's (which grows with the arrival rate), no more;
            # at most 3 processes each (bwrap's two and the kernel, or a forked kernel's monitor, init, kernel).
            assert processes <= 3 * (2 * health["max_sessions"] + 8) + 8, processes

    asyncio.run(go())
    assert not failures, f"{len(failures)} failed cells, first: {failures[:3]}"
    assert proc.poll() is None
    # Bounded: 400 more sessions than at the 100th did not grow the server's tree by more than a few kernels.
    assert memory["after_all"] < memory["after_100"] + 400, memory
