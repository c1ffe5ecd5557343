"""The container our docker backend asks for, checked by the Docker SDK itself (no engine needed),
and how it waits for containers."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.docker_backend import ContainerKernel, container_spec
from deepeyes_cli.sandbox.state import KernelSlot


def test_container_spec_is_locked_down_and_valid_for_the_sdk(tmp_path: Path) -> None:
    from docker.models.containers import _create_container_args

    cfg = SandboxConfig(isolation="docker", memory_mb=768, cpus=1.5, max_processes=40, open_files=128,
                        file_size_mb=16, cpu_time_s=300, docker_image="deepeyes-sandbox:test")
    slot = KernelSlot(name="k7", dir=tmp_path / "k7", assets=tmp_path / "assets", uid=61007)
    spec = container_spec(cfg, slot)
    args = _create_container_args({**spec, "version": "1.45"})
    host = args["host_config"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["Memory"] == 768 << 20 and host["MemorySwap"] == 768 << 20
    assert host["NanoCpus"] == 1_500_000_000 and host["PidsLimit"] == 40
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    ulimits = {u["Name"]: u["Soft"] for u in host["Ulimits"]}
    assert ulimits == {"nofile": 128, "fsize": 16 << 20, "cpu": 300, "core": 0, "nproc": 40}
    assert sorted(host["Binds"]) == sorted([f"{slot.ipc}:/sandbox/kernel:rw", f"{slot.input}:/sandbox/input:ro"])
    assert set(host["Tmpfs"]) == {"/tmp", "/sandbox/work"}
    assert args["user"] == "61007:61007" and args["image"] == "deepeyes-sandbox:test"
    env = args["environment"]
    env = dict(e.split("=", 1) for e in env) if isinstance(env, list) else env
    assert env["HOME"] == "/sandbox/work" and not any("KEY" in k or "TOKEN" in k for k in env)
    assert args["command"][-2:] == ["-f", "/sandbox/kernel/connection.json"]


class _RunningContainer:
    """Stands in for docker-py's Container: ``wait()`` blocks until the container stops."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopped = threading.Event()

    def wait(self) -> dict[str, int]:
        self.stopped.wait(30)
        return {"StatusCode": 137}


def test_waiting_for_many_containers_leaves_asyncio_threads_free() -> None:
    async def go() -> list[int]:
        containers = [_RunningContainer(f"k{i}") for i in range(40)]  # more than asyncio's default pool
        waits = [asyncio.ensure_future(ContainerKernel(c, 512).wait()) for c in containers]
        await asyncio.sleep(0.1)
        # Starting or removing a container goes through asyncio.to_thread: it must not starve.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 10) == "free"
        for c in containers:
            c.stopped.set()
        return await asyncio.wait_for(asyncio.gather(*waits), 10)

    assert asyncio.run(go()) == [137] * 40
