"""One real `deepeyes sandbox serve` (bwrap isolation, small limits) shared by the sandbox tests,
and one with ``isolation: docker`` for the suites that run under both.

It runs as a separate process, started through the CLI, with secrets in its environment that
no session may see. Tests talk to it over HTTP like a trainer would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from deepeyes_cli.testing.docker import DOCKER_IMAGE

REPO = Path(__file__).resolve().parents[3]
SECRET = "sk-deepeyes-test-" + uuid.uuid4().hex
MAX_PROCESSES = 48

needs_bwrap = pytest.mark.needs_bwrap  # skips without bwrap; fails without it when CI is set


@dataclass
class Server:
    url: str
    token: str
    proc: subprocess.Popen[str]
    client: httpx.Client
    log: list[str]
    secret: str = SECRET
    memory_mb: int = 320
    max_processes: int = MAX_PROCESSES
    isolation: str = "bwrap"

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return self.client.post(path, json=body)
        except httpx.TransportError as e:  # say why: the server's own words
            raise AssertionError(f"the sandbox server did not answer ({e}; exit code {self.proc.poll()}):\n"
                                 + "".join(self.log[-40:])) from e

    def cell(self, code: str, session_id: str | None = None, timeout: float = 20.0) -> dict[str, Any]:
        """Run a cell in ``session_id``, or in a session of its own that is ended afterwards (the
        suite shares one server: a session left open would hold a kernel and a slot to the end)."""
        sid = session_id or uuid.uuid4().hex
        try:
            resp = self.post("/jupyter_sandbox", {"session_id": sid, "code": code, "timeout": timeout})
        finally:
            if session_id is None:
                self.end(sid)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def end(self, session_id: str) -> None:
        self.post("/clear_session", {"session_id": session_id})

    @property
    def limits(self) -> dict[str, str]:
        """How the server's memory, process and CPU limits hold on this host (cgroup, rlimit, none)."""
        return dict(self.client.get("/health").json()["limits"])

    def assert_serving(self) -> None:
        """The server still answers and a brand-new session still computes."""
        assert self.proc.poll() is None, "the server process died"
        assert self.client.get("/health").json()["status"] == "ok"
        sid = uuid.uuid4().hex
        body = self.cell("print(6 * 7)", sid)
        assert body["output"]["stdout"] == "42\n", body
        self.end(sid)


def http_client(url: str, token: str | None = None) -> httpx.Client:
    # TCP_NODELAY: a keep-alive client that leaves Nagle on waits 40 ms for every request body.
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, transport=transport, timeout=120)


@pytest.fixture
def make_http_client() -> Any:
    """``make_http_client(url, token=None)``: an httpx client as a trainer would keep it."""
    return http_client


def start_server(tmp_path_factory: pytest.TempPathFactory, isolation: str, memory_mb: int,
                 extra: tuple[str, ...] = ()) -> Server:
    """`deepeyes sandbox serve` in a process of its own, with secrets in its environment."""
    token = uuid.uuid4().hex
    run_dir = tmp_path_factory.mktemp(f"sandbox-serve-{isolation}")
    env = {**os.environ, "OPENAI_API_KEY": SECRET, "DEEPEYES_TEST_SECRET": SECRET, "PYTHONPATH": str(REPO),
           "DEEPEYES_SANDBOX_TOKEN": token}
    cmd = [sys.executable, "-m", "deepeyes_cli", "sandbox", "serve", "--port", "0", "--run-dir", str(run_dir),
           f"sandbox.isolation={isolation}", "sandbox.pool_size=3", f"sandbox.memory_mb={memory_mb}",
           f"sandbox.max_processes={MAX_PROCESSES}", "sandbox.max_output_chars=4000", "sandbox.max_sessions=24",
           "sandbox.interrupt_grace_s=3", "sandbox.file_size_mb=8", *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=run_dir)
    assert proc.stderr is not None
    url = None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "listening on" in line:
            url = line.strip().rsplit(" ", 1)[-1]
            break
    if url is None:
        raise RuntimeError("the sandbox server did not start:\n" + "".join(lines))
    # Keep reading its stderr, or a chatty server would block on a full pipe.
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    return Server(url, token, proc, http_client(url, token), lines, memory_mb=memory_mb, isolation=isolation)


def stop_server(server: Server) -> None:
    server.client.close()
    server.proc.terminate()
    try:
        server.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if shutil.which("bwrap") is None:
        from deepeyes_cli.testing.ci import skip_or_fail

        skip_or_fail("bubblewrap is not installed (make sandbox-deps installs it)")
    from deepeyes_cli.sandbox.limits import CgroupFactory

    cgroups = CgroupFactory.detect()
    # A memory cgroup counts what a session really uses; RLIMIT_AS (without one) counts address space,
    # of which a kernel reserves ~0.3-0.6 GB before any cell runs.
    memory_mb = 320 if cgroups is not None and "memory" in cgroups.controllers else 1024
    if cgroups is not None:
        cgroups.close()
    server = start_server(tmp_path_factory, "bwrap", memory_mb)
    try:
        yield server
    finally:
        stop_server(server)


def need_docker(image: str | None = DOCKER_IMAGE) -> None:
    """Skip with the reason, or fail with DEEPEYES_REQUIRE_DOCKER=1 (make test-docker, once the engine runs)."""
    from deepeyes_cli.testing.docker import docker_required, docker_unavailable

    why = docker_unavailable(image)
    if why is not None:
        if docker_required():
            pytest.fail(f"DEEPEYES_REQUIRE_DOCKER=1, but {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def docker_sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same server with ``isolation: docker``: a container per kernel."""
    need_docker()
    server = start_server(tmp_path_factory, "docker", 320, (f"sandbox.docker_image={DOCKER_IMAGE}",))
    try:
        yield server
    finally:
        stop_server(server)
