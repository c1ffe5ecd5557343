"""``isolation: docker``: each kernel in its own container from ``sandbox_image/``.

The container has no network (``network_mode: none``), a read-only root, tmpfs ``/tmp`` and
work dir, memory (no swap), CPU and pids limits, rlimits for files, file size and CPU time,
no capabilities, ``no-new-privileges``, and runs as the session's unprivileged uid. The host
talks to the kernel over ZMQ ``ipc`` sockets in the kernel's directory, bind-mounted at
``/sandbox/kernel``, so the Docker engine must run on this machine (the usual case).

Containers are always removed: when their session ends or is evicted (the kernel is killed,
which removes its container), when the pool closes (and then every container this server
labelled, in case a removal failed), and after a crash: each server holds an ``flock`` on an
owner file for as long as it lives (released by the kernel even on SIGKILL) and labels its
containers with that file; a server that starts removes the labelled containers of this host
whose owner file is no longer locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import tempfile
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import SandboxError
from deepeyes_cli.sandbox.launchers import KERNEL_ARGS, KernelProcess
from deepeyes_cli.sandbox.state import INSIDE, KernelSlot, kernel_env

if TYPE_CHECKING:
    from deepeyes_cli.sandbox.config import SandboxConfig

IMAGE_MPL_CACHE = "/opt/deepeyes/mpl"  # matplotlib's font list, built into the image
IMAGE_VENV = "/opt/venv"  # the image's Python environment (sandbox_image/Dockerfile)
LABEL_ROLE, LABEL_OWNER, LABEL_HOST = "org.deepeyes.sandbox", "org.deepeyes.owner", "org.deepeyes.host"


def owners_dir() -> Path:
    """Where servers keep their owner locks: root's ``/run/deepeyes-sandbox/owners`` (shared by all
    servers of this machine), a per-user directory otherwise."""
    if os.geteuid() == 0 and os.access("/run", os.W_OK):
        return Path("/run/deepeyes-sandbox/owners")
    return Path(tempfile.gettempdir()) / f"deepeyes-sandbox-owners-{os.geteuid()}"


class Owner:
    """This server's identity on the engine: an owner file locked while the server lives."""

    def __init__(self, directory: Path | None = None) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.host = socket.gethostname()
        self.dir = directory or owners_dir()
        try:
            self.dir.mkdir(parents=True, mode=0o700, exist_ok=True)
            self.path = self.dir / self.id
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise SandboxError(f"cannot take the sandbox's owner lock in {self.dir}: {e}",
                               hint="make that directory writable, or remove it") from e

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_ROLE: "kernel", LABEL_OWNER: str(self.path), LABEL_HOST: self.host}

    @staticmethod
    def alive(lock_path: str) -> bool:
        """Whether the server that labelled a container with ``lock_path`` still runs. A missing
        file is a server gone (it removes its file only after its containers); one we cannot open
        is someone else's: alive, as far as we can tell."""
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True  # locked: its server lives
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        return False

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None


def container_spec(cfg: SandboxConfig, slot: KernelSlot, owner: Owner | None = None) -> dict[str, Any]:
    """Keyword arguments for ``docker.containers.create`` of one kernel."""
    from docker.types import Ulimit

    mb = cfg.memory_mb
    env = kernel_env(INSIDE)
    env.update(DEEPEYES_MPL_CACHE=IMAGE_MPL_CACHE, PATH=f"{IMAGE_VENV}/bin:{env['PATH']}")
    uid = slot.uid if slot.uid is not None else 65534
    return {
        "image": cfg.docker_image,
        "command": [f"{IMAGE_VENV}/bin/python", *KERNEL_ARGS, "-f", f"{INSIDE['kernel']}/connection.json"],
        "name": f"deepeyes-sandbox-{owner.id if owner else os.getpid()}-{slot.name}",
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
                    Ulimit(name="core", soft=0, hard=0),
                    # its uid is the kernel's own; also: an engine left to choose (podman) may ask for
                    # more than a host without CAP_SYS_RESOURCE lets it set, and the start fails
                    Ulimit(name="nproc", soft=cfg.max_processes, hard=cfg.max_processes)],
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "init": True,
        "labels": {**(owner.labels if owner else {LABEL_ROLE: "kernel"}), "org.deepeyes.kernel": slot.name},
    }


class ContainerKernel:
    """A kernel's container: wait for it, kill it, say why it stopped."""

    def __init__(self, container: Any, memory_mb: int) -> None:
        self.container = container
        self.memory_mb = memory_mb
        self._returncode: int | None = None
        self._last_words = ""  # the container's last log line, kept before it is removed

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
            with contextlib.suppress(Exception):
                text = self.container.logs(tail=5).decode(errors="replace").replace("\0", "\n")
                lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "deepeyes-sync" not in ln]
                self._last_words = lines[-1][:300] if lines else ""
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
        if self._returncode == 137:  # SIGKILL; engines with an init as PID 1 (podman) may not flag the OOM kill
            return (f"the kernel was killed (SIGKILL): most likely it ran out of memory (the session's limit is "
                    f"{self.memory_mb} MiB)")
        why = f"the kernel's container exited with status {self._returncode}"
        return f"{why} ({self._last_words})" if self._last_words else why


class DockerLauncher:
    isolation = "docker"

    def __init__(self, cfg: SandboxConfig) -> None:
        from deepeyes_cli.sandbox.image import docker_client, engine_name

        self.cfg = cfg
        self.client: Any = docker_client()
        self.engine = engine_name(self.client)
        try:
            self.client.images.get(cfg.docker_image)
        except Exception as e:
            self.client.close()
            raise SandboxError(f"the Docker image {cfg.docker_image} is not here ({e})",
                               hint="build it with `deepeyes sandbox build-image`") from e
        self.owner = Owner()
        self.swept = self.remove_orphans()

    def _kernel_containers(self) -> list[Any]:
        return list(self.client.containers.list(all=True, filters={"label": f"{LABEL_ROLE}=kernel"}))

    def remove_orphans(self) -> int:
        """Remove kernel containers of servers on this host that died without cleaning up."""
        from deepeyes_cli.procs import pid_alive

        removed = 0
        with contextlib.suppress(Exception):
            for container in self._kernel_containers():
                labels = container.labels or {}
                lock = labels.get(LABEL_OWNER)
                if lock is not None:
                    orphan = labels.get(LABEL_HOST) == self.owner.host and lock != str(self.owner.path) \
                        and not Owner.alive(lock)
                else:  # labelled by an older server: its pid is in the name
                    parts = container.name.split("-")
                    orphan = len(parts) > 2 and parts[2].isdigit() and not pid_alive(int(parts[2]))
                if orphan:
                    with contextlib.suppress(Exception):
                        container.remove(force=True)
                        removed += 1
        return removed

    def paths_for(self, slot: KernelSlot) -> dict[str, str]:
        return dict(INSIDE)

    def enforcement(self) -> dict[str, str]:
        return {"memory": f"cgroup of the container ({self.engine}): the whole session, tmpfs included, no swap",
                "processes": f"cgroup of the container ({self.engine}): pids limit; RLIMIT_NPROC on its own uid",
                "cpu": f"cgroup of the container ({self.engine}): quota of `cpus`"}

    async def launch(self, slot: KernelSlot) -> KernelProcess:
        spec = container_spec(self.cfg, slot, self.owner)

        def create_and_start() -> Any:
            container = self.client.containers.create(**spec)
            try:
                container.start()
            except BaseException:  # created but not started: never leave it behind
                with contextlib.suppress(Exception):
                    container.remove(force=True)
                raise
            return container

        container = await asyncio.to_thread(create_and_start)
        return ContainerKernel(container, self.cfg.memory_mb)

    def own_containers(self) -> list[Any]:
        with contextlib.suppress(Exception):
            return list(self.client.containers.list(
                all=True, filters={"label": [f"{LABEL_ROLE}=kernel", f"{LABEL_OWNER}={self.owner.path}"]}))
        return []

    def close(self) -> None:
        """Remove whatever this server still has on the engine (every kernel should be gone by
        now), then give up the owner lock."""
        for container in self.own_containers():
            with contextlib.suppress(Exception):
                container.remove(force=True)
        self.owner.close()
        with contextlib.suppress(Exception):
            self.client.close()
