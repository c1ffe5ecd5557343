"""The threat model's "no capabilities", read from inside a cell: the kernel's effective,
permitted, inheritable, ambient and bounding sets are empty and no_new_privs is on — as
root (a uid of its own, setpriv) and without root (a user namespace; .ci/run runs this file
as an unprivileged user too), and in a Docker container (marked `docker`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.pool import KernelPool

READ_STATUS = """
fields = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines() if ':' in line)
import os
print({k: fields[k].strip() for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs')},
      os.getuid())
"""
NONE = "0000000000000000"


def _check(stdout: str) -> None:
    status_text, uid = stdout.rsplit(" ", 1)
    status = eval(status_text)
    assert status == {"CapInh": NONE, "CapPrm": NONE, "CapEff": NONE, "CapBnd": NONE, "CapAmb": NONE,
                      "NoNewPrivs": "1"}, stdout
    assert int(uid) != 0, "the kernel runs as root"


@pytest.mark.needs_bwrap
def test_a_bwrap_kernel_has_no_capabilities_and_no_new_privileges(sandbox_server: Any) -> None:
    out = sandbox_server.cell(READ_STATUS)
    assert out["output"]["stderr"] == "" and out["output"].get("error") in (None, ""), out
    _check(out["output"]["stdout"])


@pytest.mark.needs_bwrap
def test_a_bwrap_kernel_child_cannot_regain_capabilities(sandbox_server: Any) -> None:
    """What a cell starts inherits nothing either (a setuid binary cannot raise it: no_new_privs)."""
    code = ("import subprocess, sys\n"
            f"print(subprocess.run([sys.executable, '-c', {READ_STATUS!r}], capture_output=True, text=True).stdout,"
            " end='')")
    _check(sandbox_server.cell(code)["output"]["stdout"])


@pytest.mark.docker
def test_a_docker_kernel_has_no_capabilities_and_no_new_privileges() -> None:
    try:
        from deepeyes_cli.sandbox.image import docker_client

        docker_client()
    except Exception:
        pytest.skip("no Docker engine answers here (docker SDK ping failed)")

    async def go() -> str:
        cfg = SandboxConfig(isolation="docker", pool_size=0, memory_mb=512)
        async with KernelPool(cfg) as pool:
            session = await pool.open_session([])
            return (await session.run(READ_STATUS, 60)).stdout

    _check(asyncio.run(go()))
