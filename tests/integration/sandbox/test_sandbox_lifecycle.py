"""A session's edge cases: a kernel that cannot be restarted at once, a session closed while a
cell runs or while it waits for room, a caller that gives up on a cell."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deepeyes_cli.errors import SandboxError
from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.pool import KernelPool
from deepeyes_cli.sandbox.server import create_app
from deepeyes_cli.testing.servers import BackgroundServer

pytestmark = pytest.mark.needs_bwrap  # skips without bwrap; fails without it when CI is set


def test_a_kernel_that_cannot_be_restarted_yet_is_retried_by_the_next_cell(make_http_client: Any) -> None:
    cfg = SandboxConfig(pool_size=0, memory_mb=512, kernel_start="exec")  # each start runs launcher.python
    pool = KernelPool(cfg)
    with BackgroundServer(create_app(cfg, pool=pool)) as server, make_http_client(server.url) as client:
        def cell(code: str) -> dict[str, Any]:
            resp = client.post("/jupyter_sandbox", json={"session_id": "traj-1", "code": code, "timeout": 30})
            assert resp.status_code == 200, resp.text
            return dict(resp.json()["deepeyes"]) | {"stdout": resp.json()["output"]["stdout"]}

        assert cell("x = 1")["status"] == "ok"
        python = pool.launcher.python  # type: ignore[attr-defined]
        pool.launcher.python = "/nonexistent/python3"  # type: ignore[attr-defined]  # no kernel can start now
        crashed = cell("import os; os.kill(os.getpid(), 9)")
        assert crashed["status"] == "crashed" and not crashed["restarted"], crashed
        assert "could not be restarted yet" in crashed["error"]
        pool.launcher.python = python  # type: ignore[attr-defined]
        after = cell("print('x' in globals())")  # the same session id still reaches its session
        assert after["status"] == "ok" and after["restarted"] and after["stdout"] == "False\n", after
        assert "an earlier restart failed" in after["notes"][0]


def test_closing_or_giving_up_mid_cell_and_closing_a_queued_session() -> None:
    cfg = SandboxConfig(pool_size=0, max_sessions=1, queue_timeout_s=60, memory_mb=512)

    async def go() -> None:
        async with KernelPool(cfg) as pool:
            session = await pool.open_session()
            # A caller that gives up: the cell is interrupted, not left running ahead of the next one.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(session.run("import time; time.sleep(120)", 300), 1.0)
            after = await session.run("print('next')", 20)
            assert after.status == "ok" and after.stdout == "next\n", after
            # Closed while a cell runs: that cell reports it, nothing else breaks.
            running = asyncio.ensure_future(session.run("import time; time.sleep(120)", 300))
            while not session.busy:
                await asyncio.sleep(0.01)
            await session.close()
            ended = await running
            assert ended.status == "crashed" and not ended.restarted and "closed while it ran" in (ended.error or "")
            # Closed while it waits for room: its open fails with that reason, the holder is untouched.
            holder = await pool.open_session()
            queued = asyncio.ensure_future(pool.open_session(session_id="queued"))
            while "queued" not in pool.sessions:
                await asyncio.sleep(0.01)
            await pool.sessions["queued"].close()
            with pytest.raises(SandboxError, match="closed while it waited"):
                await queued
            assert list(pool.sessions) == [holder.id]
            assert (await holder.run("6 * 7")).result == "42"

    asyncio.run(go())
