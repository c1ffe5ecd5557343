"""Kernels forked from a template (``sandbox.kernel_start: fork``, the default where it works).

A kernel started the ordinary way costs about 0.7 s of CPU (Python, ipykernel, numpy, PIL,
matplotlib), which caps a 2-core machine at a few new sessions a second. Here one template
process per server, itself under bubblewrap, imports all of that once, and each kernel is
forked from it into namespaces, mounts, cgroups, rlimits and a uid of its own
(:mod:`deepeyes_cli.sandbox.zygote` says how). This needs root (the template makes the
namespaces and drops each kernel's privileges itself) and bwrap isolation; elsewhere (not
root, ``isolation: docker`` or ``none``) kernels start the ordinary way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import SandboxError
from deepeyes_cli.sandbox.launchers import (
    KERNEL_ARGS,
    BwrapLauncher,
    KernelProcess,
    exit_reason,
    release_cgroup,
)
from deepeyes_cli.sandbox.limits import Cgroup, Limits
from deepeyes_cli.sandbox.state import INSIDE, KernelSlot, kernel_env, python_layout

log = logging.getLogger(__name__)
_ZYGOTE = Path(__file__).with_name("zygote.py")
# Its name inside the sandbox: every process forked from it shows it in its command line (tools that
# look for "ipykernel" there find forked kernels too).
TEMPLATE_SCRIPT = "ipykernel_template.py"
STATE_INSIDE = "/sandbox/state"  # the server's state directory, as the template sees it


@dataclass
class ForkedKernel:
    """A kernel forked by the template: it is the template's child, so its end is what the
    template reports; it is killed through the template (and its cgroup)."""

    template: Template
    name: str
    cgroup: Cgroup | None
    limits: Limits
    exited: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def returncode(self) -> int | None:
        return self.exited.result() if self.exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self.exited)

    async def kill(self) -> None:
        self.template.kill(self.name)
        if self.cgroup is not None:
            self.cgroup.kill()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), 10)
        if self.cgroup is not None:
            await release_cgroup(self.cgroup)

    def exit_reason(self) -> str:
        return exit_reason(self.returncode, self.cgroup, self.limits)


class Template:
    """The template process (under bwrap) and the socket the server speaks to it on."""

    def __init__(self, proc: asyncio.subprocess.Process, sock: socket.socket, log_path: Path) -> None:
        self.proc, self.sock, self.log_path = proc, sock, log_path
        self.kernels: dict[str, ForkedKernel] = {}
        self.spawning: dict[str, asyncio.Future[None]] = {}
        self.alive = True
        self.lost_at: float | None = None  # when it was found gone (time.monotonic())
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    @classmethod
    async def start(cls, argv: list[str], pass_fds: tuple[int, ...], sock: socket.socket, theirs: socket.socket,
                    log_path: Path, env: dict[str, str], timeout: float) -> Template:
        try:
            with open(log_path, "ab") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True,
                    env=env, pass_fds=(*pass_fds, theirs.fileno()))
        finally:
            theirs.close()
            for fd in pass_fds:
                os.close(fd)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            first = json.loads(await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), timeout) or b"{}")
        except (asyncio.TimeoutError, ValueError, OSError) as e:
            first = {"op": "failed", "error": f"{type(e).__name__}: {e}"}
        if first.get("op") != "ready":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            sock.close()
            tail = log_path.read_text(errors="replace")[-600:] if log_path.exists() else ""
            raise SandboxError(f"the kernel template did not start: {first.get('error', 'it exited')}",
                               hint=tail.strip() or "set sandbox.kernel_start: exec to start kernels one by one")
        return cls(proc, sock, log_path)

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            msg = json.loads(data)
            name = msg.get("name", "")
            if msg["op"] == "spawned":
                waiter = self.spawning.pop(name, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            elif msg["op"] == "failed":
                waiter = self.spawning.pop(name, None)
                self.kernels.pop(name, None)
                if waiter is not None and not waiter.done():
                    waiter.set_exception(SandboxError(f"the kernel template could not fork a kernel: {msg['error']}",
                                                      hint="the machine may be out of processes or memory"))
            elif msg["op"] == "exited":
                kernel = self.kernels.pop(name, None)
                if kernel is not None and not kernel.exited.done():
                    kernel.exited.set_result(int(msg["code"]))

    def _lost(self) -> None:
        """The template is gone: so is every kernel it forked (parent-death signals)."""
        self.alive = False
        self.lost_at = time.monotonic()
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        for waiter in self.spawning.values():
            if not waiter.done():
                waiter.set_exception(SandboxError("the kernel template exited", hint=f"see {self.log_path}"))
        for kernel in self.kernels.values():
            if not kernel.exited.done():
                kernel.exited.set_result(137)
        self.spawning.clear()
        self.kernels.clear()

    async def spawn(self, spec: dict[str, Any], fds: list[int], kernel: ForkedKernel, timeout: float) -> None:
        if not self.alive:
            raise SandboxError("the kernel template exited", hint=f"see {self.log_path}")
        waiter = asyncio.get_running_loop().create_future()
        self.spawning[spec["name"]] = waiter
        self.kernels[spec["name"]] = kernel
        try:
            socket.send_fds(self.sock, [json.dumps(spec).encode()], fds)
            await asyncio.wait_for(waiter, timeout)
        except BaseException:
            self.spawning.pop(spec["name"], None)
            self.kernels.pop(spec["name"], None)
            raise

    def kill(self, name: str) -> None:
        if self.alive:
            with contextlib.suppress(OSError):
                self.sock.send(json.dumps({"op": "kill", "name": name}).encode())

    def close(self) -> None:
        if self.alive:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.alive = False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, 9)
        self.sock.close()


class ForkLauncher:
    """:class:`~deepeyes_cli.sandbox.launchers.Launcher` forking bwrap kernels from a template.
    Kernels see what a :class:`BwrapLauncher` kernel sees and run under the same limits."""

    isolation = "bwrap"

    def __init__(self, base: BwrapLauncher, start_timeout_s: float = 60.0, fallback: bool = False) -> None:
        if not base.own_uid:
            raise SandboxError("kernels can be forked from a template only when the server runs as root",
                               hint="set sandbox.kernel_start: exec (or auto)")
        self.base = base
        self.limits = base.limits
        self.start_timeout_s = start_timeout_s
        self._template: Template | None = None
        self._lock: asyncio.Lock | None = None
        self.fallback = fallback  # start kernels the ordinary way if the template cannot start
        self.forking = True

    def paths_for(self, slot: KernelSlot) -> dict[str, str]:
        return self.base.paths_for(slot)

    def lost_template_since(self, when: float) -> bool:
        """Did a template die after ``when`` (time.monotonic())? Kernels starting on it died with it."""
        t = self._template
        return t is not None and (not t.alive) and t.lost_at is not None and t.lost_at >= when

    def enforcement(self) -> dict[str, str]:
        how = "forked from a pre-imported template" if self.forking else "exec (the template could not start)"
        return {**self.base.enforcement(), "kernel start": how}

    async def _ensure_template(self, slot: KernelSlot) -> Template:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._template is not None and self._template.alive:
                return self._template
            if self._template is not None:
                log.warning("the sandbox's kernel template exited; starting a new one (see %s)",
                            self._template.log_path)
                self._template.close()
            self._template = await self._start_template(slot.dir.parent)
            return self._template

    async def _start_template(self, state: Path) -> Template:
        home = state / "template"
        fake = KernelSlot(name="template", dir=home, assets=state / "assets", uid=0)
        for sub in (fake.ipc, fake.input, home / "etc"):
            sub.mkdir(parents=True, exist_ok=True)
        home.chmod(0o711)
        (home / "etc" / "passwd").write_text("root:x:0:0:root:/:/usr/sbin/nologin\n")
        (home / "etc" / "group").write_text("root:x:0:\n")
        script = fake.assets / TEMPLATE_SCRIPT
        shutil.copyfile(_ZYGOTE, script)
        script.chmod(0o644)
        options = self.base.options(fake)
        at = options.index("--remount-ro")
        # Every kernel's host directory, for the template's children to mount their own from (a bind
        # mount's source must be in the caller's mount namespace); each unmounts the rest.
        options[at:at] = ["--bind", str(state), STATE_INSIDE]
        options += ["--cap-add", "ALL"]
        fd = self.base.options_fd(fake, options)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        exe = str(python_layout(self.base.python)["executable"])
        argv = [self.base.bwrap, "--args", str(fd), "--", exe, "-s", f"{INSIDE['assets']}/{TEMPLATE_SCRIPT}",
                str(theirs.fileno())]
        return await Template.start(argv, (fd,), ours, theirs, home / "template.log",
                                    {"PATH": "/usr/local/bin:/usr/bin:/bin"}, self.start_timeout_s)

    def _rlimits(self, memory_held: bool) -> dict[str, int]:
        lim = self.limits
        out = {"cpu": lim.cpu_time_s, "fsize": lim.file_size_bytes, "nofile": lim.open_files, "core": 0,
               "nproc": lim.max_processes}
        if not memory_held:
            out["as"] = lim.memory_bytes
        return out

    async def launch(self, slot: KernelSlot) -> KernelProcess:
        assert slot.uid is not None, "forked kernels run under their own uid"
        if not self.forking:
            return await self.base.launch(slot)
        try:
            template = await self._ensure_template(slot)
        except SandboxError as e:
            if not self.fallback:
                raise
            log.warning("%s (%s); kernels start the ordinary way", e.message, e.hint)
            self.forking = False
            return await self.base.launch(slot)
        self.base._env(slot)  # the slot's passwd and group
        cgroup = self.base.cgroups.create(slot.name, self.limits) if self.base.cgroups else None
        memory_held = cgroup is not None and "memory" in cgroup.dirs
        fds: list[int] = []
        try:
            fds.append(os.open(slot.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))
            fds += [os.open(f, os.O_WRONLY | os.O_CLOEXEC) for f in (cgroup.procs_files if cgroup else [])]
            inside = self.paths_for(slot)
            spec = {"op": "spawn", "name": slot.name, "dir": f"{STATE_INSIDE}/{slot.dir.name}", "state": STATE_INSIDE, "uid": slot.uid, "env": kernel_env(inside),
                    "args": [*KERNEL_ARGS[2:], "-f", f"{inside['kernel']}/connection.json"],
                    "cwd": inside["work"], "tmpfs_bytes": self.limits.memory_bytes,
                    "rlimits": self._rlimits(memory_held)}
            kernel = ForkedKernel(template, slot.name, cgroup, self.limits)
            await template.spawn(spec, fds, kernel, self.start_timeout_s)
        except BaseException:
            if cgroup is not None:
                cgroup.kill()
                cgroup.remove()
            raise
        finally:
            for fd in fds:
                os.close(fd)
        return kernel

    def close(self) -> None:
        if self._template is not None:
            self._template.close()
        self.base.close()
