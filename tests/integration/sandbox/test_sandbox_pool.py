"""The in-process pool: what the agent's code tool uses on one machine."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from PIL import Image

from deepeyes_cli.errors import SandboxError
from deepeyes_cli.sandbox.base import SandboxExecutor, SandboxSession
from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.factory import make_executor
from deepeyes_cli.sandbox.pool import KernelPool

pytestmark = pytest.mark.needs_bwrap  # skips without bwrap; fails without it when CI is set


def test_pool_sessions_state_images_and_back_pressure() -> None:
    cfg = SandboxConfig(pool_size=1, max_sessions=1, queue_timeout_s=0.5, memory_mb=512)

    async def go() -> None:
        async with make_executor(cfg) as pool:  # type: ignore[attr-defined]
            assert isinstance(pool, KernelPool) and isinstance(pool, SandboxExecutor)
            images = [Image.new("RGB", (8, 4), "red"), Image.new("P", (3, 3)), Image.new("LA", (2, 2))]
            session = await pool.open_session(images)
            assert isinstance(session, SandboxSession)
            r = await session.run("print(image_1.size, image_2.mode, image_3.mode)\nn = 5")
            assert r.status == "ok" and r.stdout == "(8, 4) RGB LA\n"
            r = await session.run("n * 2")
            assert r.result == "10"
            with pytest.raises(SandboxError, match="busy"):
                await pool.open_session()
            r = await session.run("for i in range(15):\n    plt.figure(figsize=(1, 1))")  # left open
            assert len(r.images) == 10 and r.images_dropped == 5 and "5 more image" in r.notes[0]
            await session.close()
            with pytest.raises(SandboxError, match="closed"):
                await session.run("1")
            other = await pool.open_session()  # the slot is free again
            assert (await other.run("'n' in globals()")).result == "False"

    asyncio.run(go())


def test_idle_sessions_are_reaped() -> None:
    cfg = SandboxConfig(pool_size=0, idle_timeout_s=0.3, memory_mb=512)

    async def go() -> None:
        async with KernelPool(cfg) as pool:
            session = await pool.open_session(session_id="sleepy")
            await session.run("1")
            used = time.monotonic()
            deadline = used + 60
            while "sleepy" in pool.sessions:  # wait for the reaper itself, not a guessed delay
                assert time.monotonic() < deadline, "the idle session was never reaped"
                await asyncio.sleep(0.02)
            assert time.monotonic() - used >= 0.3  # not before it had been idle that long
            assert "idle" in pool.expired["sleepy"]
            assert pool.stats()["sessions_reaped"] == 1

    asyncio.run(go())


def test_isolation_none_runs_and_says_it_is_unisolated(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> str:
        async with KernelPool(SandboxConfig(isolation="none", pool_size=0)) as pool:
            session = await pool.open_session()
            return (await session.run(f"import os; print(os.getuid() == {os.getuid()})")).stdout

    assert asyncio.run(go()) == "True\n"
    assert "unisolated" in caplog.text


def test_missing_bubblewrap_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")

    async def go() -> None:
        async with KernelPool(SandboxConfig(isolation="bwrap")):
            pass

    with pytest.raises(SandboxError, match="bubblewrap") as err:
        asyncio.run(go())
    assert "isolation: none" in (err.value.hint or "")
