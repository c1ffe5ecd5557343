"""How a docker-backed server knows another one is gone (its owner lock), and how
`sandbox check` reads a container's limits. No engine needed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.docker_backend import Owner
from deepeyes_cli.sandbox.oneshot import container_rows

HOLD = """
import sys, time
from pathlib import Path
from deepeyes_cli.sandbox.docker_backend import Owner
owner = Owner(Path(sys.argv[1]))
print(owner.path, flush=True)
time.sleep(120)
"""


def test_an_owner_is_alive_while_its_process_holds_the_lock(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={"PYTHONPATH": str(Path(__file__).resolve().parents[3])})
    assert proc.stdout is not None
    lock = proc.stdout.readline().strip()
    try:
        assert Path(lock).exists() and Owner.alive(lock)
        assert Owner.alive(lock)  # asking does not take the lock away
    finally:
        proc.kill()  # SIGKILL: no cleanup, the lock file stays
        proc.wait()
    assert Path(lock).exists()
    deadline = time.monotonic() + 5
    while Owner.alive(lock) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Owner.alive(lock) and not Path(lock).exists()  # found dead, and its file swept
    assert not Owner.alive(str(tmp_path / "never-existed"))


def test_a_clean_close_removes_the_owner_file(tmp_path: Path) -> None:
    owner = Owner(tmp_path)
    assert Owner.alive(str(owner.path)) and owner.labels["org.deepeyes.owner"] == str(owner.path)
    owner.close()
    assert not owner.path.exists() and not Owner.alive(str(owner.path))


def test_check_rows_say_which_limits_hold() -> None:
    cfg = SandboxConfig(isolation="docker", memory_mb=300, max_processes=40, cpus=0.5)
    good = {"uid": 61000, "memory": str(300 << 20), "pids": "40", "cpu": "50000 100000", "caps": "0000000000000000",
            "no_new_privs": "1", "root": "read-only (Read-only file system)", "network": "blocked (unreachable)"}
    rows = dict(container_rows(cfg, good))
    assert all(v.startswith("holds") for v in rows.values()), rows
    bad = {**good, "memory": "9223372036854771712", "pids": "max", "cpu": "-1 100000", "caps": "00000000a80425fb",
           "no_new_privs": "0", "root": "WRITABLE", "network": "REACHABLE", "uid": 0}
    rows = dict(container_rows(cfg, bad))
    assert all(v.startswith("DOES NOT HOLD") for v in rows.values()), rows
