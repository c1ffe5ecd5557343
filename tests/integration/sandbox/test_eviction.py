"""At max_sessions, the least recently used idle session makes room for a new one.

A client that never ends its sessions (DeepEyesV2's own never calls /clear_session) must not
stall the pool: only sessions running cells hold their place.
"""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from deepeyes_cli.errors import SandboxError
from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.pool import KernelPool

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def test_lru_idle_session_is_evicted_and_busy_ones_are_kept() -> None:
    cfg = SandboxConfig(pool_size=1, max_sessions=2, evict_grace_s=0.3, queue_timeout_s=20, memory_mb=512)

    async def go() -> None:
        async with KernelPool(cfg) as pool:
            old = await pool.open_session(session_id="old")
            await old.run("x = 'old'")
            recent = await pool.open_session(session_id="recent")
            await recent.run("x = 'recent'")
            await asyncio.sleep(0.05)
            await old.run("x = 'old, used again'")  # now "recent" is the least recently used
            start = time.monotonic()
            new = await pool.open_session(session_id="new")  # waits out the grace, then evicts "recent"
            assert time.monotonic() - start < 10
            assert "recent" not in pool.sessions and "make room" in pool.expired["recent"]
            assert recent.closed and not old.closed
            assert (await old.run("x")).result == "'old, used again'"
            assert (await new.run("'x' in globals()")).result == "False"
            assert pool.stats()["sessions_evicted"] == 1
            with pytest.raises(SandboxError, match="closed"):
                await recent.run("x")

    asyncio.run(go())


def test_a_new_session_waits_while_every_session_is_busy_or_within_grace() -> None:
    cfg = SandboxConfig(pool_size=1, max_sessions=1, evict_grace_s=0.2, queue_timeout_s=1.0, memory_mb=512)

    async def go() -> None:
        async with KernelPool(cfg) as pool:
            busy = await pool.open_session(session_id="busy")
            await busy.run("import time")
            cell = asyncio.ensure_future(busy.run("time.sleep(2.5); print('done')"))
            await asyncio.sleep(0.5)  # past the grace, but running a cell: it keeps its place
            with pytest.raises(SandboxError, match="busy"):
                await pool.open_session(session_id="waits")
            result = await cell
            assert result.status == "ok" and result.stdout == "done\n"
            assert pool.stats()["sessions_evicted"] == 0
            # Once it is idle (and past the grace), the queued session takes its place.
            waiter = asyncio.ensure_future(pool.open_session(session_id="second"))
            second = await asyncio.wait_for(waiter, 10)
            assert busy.closed and (await second.run("1 + 1")).result == "2"
            assert pool.stats()["sessions_evicted"] == 1

    asyncio.run(go())


def test_grace_protects_a_session_between_two_cells() -> None:
    cfg = SandboxConfig(pool_size=1, max_sessions=1, evict_grace_s=30, queue_timeout_s=0.5, memory_mb=512)

    async def go() -> None:
        async with KernelPool(cfg) as pool:
            session = await pool.open_session(session_id="thinking")
            await session.run("y = 1")
            with pytest.raises(SandboxError, match="busy"):
                await pool.open_session(session_id="other")
            assert (await session.run("y")).result == "1"

    asyncio.run(go())
