"""``isolation: docker``: each kernel in its own container from ``sandbox_image/``.

The container has no network (``network_mode: none``), a read-only root, tmpfs ``/tmp`` and
work dir, memory (no swap), CPU and pids limits, rlimits for files, file size and CPU time,
no capabilities, ``no-new-privileges``, and runs as the session's unprivileged uid. The host
talks to the kernel over ZMQ ``ipc`` sockets in the kernel's directory, bind-mounted at
``/sandbox/kernel``, so the Docker engine must run on this machine (the usual case).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import SandboxError
from deepeyes_cli.sandbox.launchers import KERNEL_ARGS, KernelProcess
from deepeyes_cli.sandbox.state import INSIDE, KernelSlot, kernel_env

if TYPE_CHECKING:
    from deepeyes_cli.sandbox.config import SandboxConfig

IMAGE_MPL_CACHE = "/opt/deepeyes/mpl"  # matplotlib's font list, built into the image


def container_spec(cfg: SandboxConfig, slot: KernelSlot) -> dict[str, Any]:
    """Keyword arguments for ``docker.containers.run`` starting one kernel."""
    from docker.types import Ulimit

    mb = cfg.memory_mb
    env = {**kernel_env(INSIDE), "DEEPEYES_MPL_CACHE": IMAGE_MPL_CACHE}
    uid = slot.uid if slot.uid is not None else 65534
    return {
        "image": cfg.docker_image,
        "command": ["python", *KERNEL_ARGS, "-f", f"{INSIDE['kernel']}/connection.json"],
        "name": f"deepeyes-sandbox-{os.getpid()}-{slot.name}",
        "hostname": "sandbox",
        "detach": True,
        "network_mode": "none",
        "read_only": True,
        "user": f"{uid}:{uid}",
        "working_dir": INSIDE["work"],
        "environment": env,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={mb}m,mode=1777",
                  INSIDE["work"]: f"rw,nosuid,nodev,size={mb}m,mode=1777"},
        "volumes": {str(slot.ipc): {"bind": INSIDE["kernel"], "mode": "rw"},
                    str(slot.input): {"bind": INSIDE["input"], "mode": "ro"}},
        "mem_limit": f"{mb}m",
        "memswap_limit": f"{mb}m",
        "nano_cpus": int(cfg.cpus * 1e9),
        "pids_limit": cfg.max_processes,
        "ulimits": [Ulimit(name="nofile", soft=cfg.open_files, hard=cfg.open_files),
                    Ulimit(name="fsize", soft=cfg.file_size_mb << 20, hard=cfg.file_size_mb << 20),
                    Ulimit(name="cpu", soft=cfg.cpu_time_s, hard=cfg.cpu_time_s),
                    Ulimit(name="core", soft=0, hard=0)],
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "init": True,
        "labels": {"org.deepeyes.sandbox": "kernel", "org.deepeyes.kernel": slot.name},
    }


class ContainerKernel:
    """A kernel's container: wait for it, kill it, say why it stopped."""

    def __init__(self, container: Any, memory_mb: int) -> None:
        self.container = container
        self.memory_mb = memory_mb
        self._returncode: int | None = None

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def wait(self) -> int:
        """The container's exit status. Waited for on a thread of its own: the wait lasts as long as
        the session, and parking it in asyncio's small default pool (cores + 4 threads) would
        leave no thread for starting or removing containers once a few sessions are open."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()

        def settle(code: int) -> None:
            if not done.done():
                done.set_result(code)

        def watch() -> None:
            try:
                code = int(self.container.wait().get("StatusCode", -1))
            except Exception:  # the engine went away, or the container was removed under us
                code = -1
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(settle, code)

        threading.Thread(target=watch, name=f"wait-{self.container.name}", daemon=True).start()
        self._returncode = await done
        return self._returncode

    async def kill(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.container.remove, force=True)

    def exit_reason(self) -> str:
        with contextlib.suppress(Exception):
            self.container.reload()
            if self.container.attrs["State"].get("OOMKilled"):
                return f"it ran out of memory (the session's limit is {self.memory_mb} MiB)"
        return f"the kernel's container exited with status {self._returncode}"


class DockerLauncher:
    isolation = "docker"

    def __init__(self, cfg: SandboxConfig) -> None:
        from deepeyes_cli.sandbox.image import docker_client

        self.cfg = cfg
        self.client: Any = docker_client()
        try:
            self.client.images.get(cfg.docker_image)
        except Exception as e:
            raise SandboxError(f"the Docker image {cfg.docker_image} is not here ({e})",
                               hint="build it with `deepeyes sandbox build-image`") from e
        self._remove_orphans()

    def _remove_orphans(self) -> None:
        """Kernel containers of servers that died without cleaning up (their pid is in the name)."""
        from deepeyes_cli.procs import pid_alive

        with contextlib.suppress(Exception):
            for container in self.client.containers.list(all=True, filters={"label": "org.deepeyes.sandbox=kernel"}):
                parts = container.name.split("-")
                if len(parts) > 2 and parts[2].isdigit() and not pid_alive(int(parts[2])):
                    container.remove(force=True)

    def paths_for(self, slot: KernelSlot) -> dict[str, str]:
        return dict(INSIDE)

    def enforcement(self) -> dict[str, str]:
        return {"memory": "docker (memory, no swap)", "processes": "docker (pids limit)", "cpu": "docker (nano_cpus)"}

    async def launch(self, slot: KernelSlot) -> KernelProcess:
        spec = container_spec(self.cfg, slot)
        container = await asyncio.to_thread(self.client.containers.run, **spec)
        return ContainerKernel(container, self.cfg.memory_mb)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
