"""A session closed for idleness, then used again under the same id: the server opens a new
one and says so ("earlier variables are gone"), and the old variables are really gone."""

from __future__ import annotations

import time
from typing import Any

import pytest

from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.pool import KernelPool
from deepeyes_cli.sandbox.server import create_app
from deepeyes_cli.testing.servers import BackgroundServer

pytestmark = pytest.mark.needs_bwrap


def test_an_idle_session_reopened_says_its_variables_are_gone(make_http_client: Any) -> None:
    cfg = SandboxConfig(pool_size=0, idle_timeout_s=0.5, memory_mb=512)
    pool = KernelPool(cfg)
    with BackgroundServer(create_app(cfg, pool=pool)) as server, make_http_client(server.url) as client:
        def cell(code: str) -> dict[str, Any]:
            resp = client.post("/jupyter_sandbox", json={"session_id": "traj-idle", "code": code, "timeout": 30})
            assert resp.status_code == 200, resp.text
            return dict(resp.json())

        first = cell("x = 41")
        assert first["deepeyes"]["status"] == "ok" and not first["deepeyes"].get("notes")
        deadline = time.monotonic() + 60
        while "traj-idle" not in pool.expired:  # the reaper's own record that it closed the session
            assert time.monotonic() < deadline, "the idle session was never closed"
            time.sleep(0.02)
        assert "idle" in pool.expired["traj-idle"] and "traj-idle" not in pool.sessions
        again = cell("print('x' in globals())")
        notes = again["deepeyes"]["notes"]
        assert again["output"]["stdout"] == "False\n"
        assert len(notes) == 1 and "had ended (closed after 0.5 s idle)" in notes[0]
        assert notes[0].endswith("earlier variables are gone")
        third = cell("print('still here')")  # the new session is an ordinary one now: no note
        assert third["output"]["stdout"] == "still here\n" and not third["deepeyes"].get("notes")
