"""Kernels forked from the pre-imported template (``kernel_start: fork``, the default as root):
each one keeps the isolation of a kernel started under bwrap of its own."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import pytest

from deepeyes_cli.errors import SandboxError
from deepeyes_cli.sandbox import forking
from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.forking import ForkLauncher
from deepeyes_cli.sandbox.launchers import BwrapLauncher
from deepeyes_cli.sandbox.limits import Limits
from deepeyes_cli.sandbox.pool import KernelPool, _under_session_tmp

pytestmark = [pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed"),
              pytest.mark.skipif(os.geteuid() != 0, reason="kernels are forked from a template only as root"),
              pytest.mark.skipif(_under_session_tmp(None), reason="this interpreter lives under /tmp, which a forked "
                                 "session replaces: kernel_start auto starts kernels with exec here")]

PROBE = """
import os, random, socket, resource
import numpy as np
status = dict(line.split(':\\t', 1) for line in open('/proc/self/status').read().splitlines() if ':\\t' in line)
try:
    socket.create_connection(('1.1.1.1', 53), timeout=2)
    net = 'reached'
except OSError as e:
    net = 'blocked'
server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen()
socket.create_connection(server.getsockname(), timeout=2).close()
open('/tmp/mine', 'w').write('x')
print(repr({'uid': os.getuid(), 'pid': os.getpid(), 'host': socket.gethostname(), 'net': net,
            'random': (random.random(), float(np.random.rand())),
            'caps': [status[k].strip() for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')],
            'no_new_privs': status['NoNewPrivs'].strip(), 'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
            'state_dir': [os.path.ismount('/sandbox/state'), os.path.exists('/sandbox/state/assets')], 'tmp': sorted(os.listdir('/tmp')),
            'nofile': resource.getrlimit(resource.RLIMIT_NOFILE), 'cwd': os.getcwd(),
            'env': sorted(os.environ), 'work_writable': os.access('/sandbox/work', os.W_OK),
            'root_writable': os.access('/usr', os.W_OK)}))
"""


def test_forked_kernels_are_isolated_from_each_other_and_from_the_template() -> None:
    cfg = SandboxConfig(pool_size=1, memory_mb=512, open_files=200)

    async def go() -> None:
        async with KernelPool(cfg) as pool:
            assert isinstance(pool.launcher, ForkLauncher) and pool.launcher.forking
            assert "template" in pool.stats()["limits"]["kernel start"]
            a, b = await pool.open_session(), await pool.open_session()
            assert (await a.run("open('/tmp/only_a', 'w').write('1')")).status == "ok"
            seen = []
            for session in (a, b):
                r = await session.run(PROBE)
                assert r.status == "ok", r
                seen.append(eval(r.stdout))  # our own probe's repr
            for probe in seen:
                assert probe["uid"] >= cfg.uid_base and probe["host"] == "sandbox" and probe["net"] == "blocked"
                assert probe["caps"] == ["0000000000000000"] * 5 and probe["no_new_privs"] == "1"
                assert probe["pids"][:2] == [1, 2] and len(probe["pids"]) <= 3  # its own PID namespace
                assert probe["state_dir"] == [False, False] and "mine" in probe["tmp"]  # no kernel's host files
                assert probe["nofile"] == (200, 200) and probe["cwd"] == "/sandbox/work" and probe["work_writable"]
                assert not probe["root_writable"] and "OPENAI_API_KEY" not in probe["env"]
                assert "PYTHONPATH" not in probe["env"]
            assert "only_a" in seen[0]["tmp"] and "only_a" not in seen[1]["tmp"]  # a /tmp of its own
            assert seen[0]["uid"] != seen[1]["uid"]
            assert seen[0]["random"][0] != seen[1]["random"][0] and seen[0]["random"][1] != seen[1]["random"][1]

    asyncio.run(go())


def test_the_template_dying_costs_sessions_their_variables_not_the_pool() -> None:
    cfg = SandboxConfig(pool_size=1, memory_mb=512)

    async def go() -> None:
        async with KernelPool(cfg) as pool:
            session = await pool.open_session()
            assert (await session.run("x = 1; x")).result == "1"
            launcher = pool.launcher
            assert isinstance(launcher, ForkLauncher) and launcher._template is not None
            os.killpg(launcher._template.proc.pid, signal.SIGKILL)
            for _ in range(100):
                if session.kernel is not None and not session.kernel.alive:
                    break
                await asyncio.sleep(0.05)
            r = await session.run("print('x' in globals())")
            assert r.status == "ok" and r.restarted and r.stdout == "False\n", r
            assert "restarted" in r.notes[0]
            other = await pool.open_session()
            assert (await other.run("6 * 7")).result == "42"

    asyncio.run(go())


def test_a_template_that_cannot_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "zygote.py"
    broken.write_text("raise SystemExit('no template today')\n")
    monkeypatch.setattr(forking, "_ZYGOTE", broken)

    async def go(kernel_start: str) -> None:
        cfg = SandboxConfig(pool_size=0, memory_mb=512, kernel_start=kernel_start)  # type: ignore[arg-type]
        async with KernelPool(cfg) as pool:  # auto: kernels start the ordinary way
            assert not pool.launcher.forking  # type: ignore[attr-defined]
            assert "exec" in pool.stats()["limits"]["kernel start"]
            session = await pool.open_session()
            assert (await session.run("1 + 1")).result == "2"

    asyncio.run(go("auto"))
    with pytest.raises(SandboxError, match="template did not start"):
        asyncio.run(go("fork"))


def test_forking_needs_root() -> None:
    base = BwrapLauncher(Limits.from_config(SandboxConfig()))
    base.own_uid = False  # as a server that is not root
    with pytest.raises(SandboxError, match="root") as e:
        ForkLauncher(base)
    assert "kernel_start" in (e.value.hint or "")
    base.close()
