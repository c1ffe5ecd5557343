"""How a kernel process is started: under bubblewrap (default), bare (``isolation: none``), or
in a container (``docker_backend.py``). A launcher turns a :class:`KernelSlot` (the host
directories of one kernel) into a running process and a handle to wait for or kill it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from deepeyes_cli.errors import SandboxError
from deepeyes_cli.sandbox.limits import (
    Cgroup,
    CgroupFactory,
    Limits,
    enforcement,
    join_cgroup_script,
    prlimit_argv,
)
from deepeyes_cli.sandbox.state import INSIDE, INSIDE_ROOT, KernelSlot, kernel_env, python_layout

# No history database; no 0.5 ms nap before each reply (it lets clients that stop at the reply
# catch the last output: we wait for the kernel's "idle" on IOPub, which comes after it anyway).
KERNEL_ARGS = ["-m", "ipykernel_launcher", "--HistoryManager.enabled=False", "--Kernel._execute_sleep=0",
               "--Application.log_level=WARN"]
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives", "fonts", "mime.types")


class KernelProcess(Protocol):
    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    async def kill(self) -> None: ...

    def exit_reason(self) -> str: ...


class Launcher(Protocol):
    isolation: str

    def paths_for(self, slot: KernelSlot) -> dict[str, str]:
        """Where the kernel sees its work dir, kernel (ipc) dir, input, assets and tmp."""
        ...

    async def launch(self, slot: KernelSlot) -> KernelProcess: ...

    def enforcement(self) -> dict[str, str]:
        """How memory, process and CPU limits hold for its kernels."""
        ...

    def close(self) -> None: ...


@dataclass
class SubprocessKernel:
    """A kernel started as a child process tree (bwrap or bare), in its own process group."""

    proc: asyncio.subprocess.Process
    cgroup: Cgroup | None = None
    limits: Limits | None = None
    killed: bool = field(default=False)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def wait(self) -> int:
        return await self.proc.wait()

    async def kill(self) -> None:
        self.killed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 10)
        if self.cgroup is not None:
            await release_cgroup(self.cgroup)

    def exit_reason(self) -> str:
        return exit_reason(self.proc.returncode, self.cgroup, self.limits)


async def release_cgroup(cgroup: Cgroup) -> None:
    """Remove a kernel's cgroup, killing what is left in it (the last processes may take a moment
    to leave)."""
    for _ in range(50):
        if cgroup.remove():
            break
        cgroup.kill()
        await asyncio.sleep(0.05)


def exit_reason(code: int | None, cgroup: Cgroup | None, limits: Limits | None) -> str:
    """Why a kernel ended, from its exit status (negative, or 128 + n: signal n) and its cgroup."""
    if cgroup is not None and cgroup.oom_killed():
        mb = (limits.memory_bytes >> 20) if limits else "?"
        return f"it ran out of memory (the session's limit is {mb} MiB)"
    if code is not None and (code < 0 or code > 128):
        sig = -code if code < 0 else code - 128
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = {"SIGXCPU": " (CPU-time limit)", "SIGKILL": " (killed: memory or another limit)",
                "SIGXFSZ": " (file-size limit)"}.get(name, "")
        return f"the kernel was killed by {name}{hint}"
    return f"the kernel exited with status {code}"


class _SubprocessLauncher:
    """Shared by bwrap and none: cgroup, rlimits, clean environment, own process group."""

    isolation = "none"

    def __init__(self, limits: Limits, python: str | None = None, use_cgroups: bool = True) -> None:
        self.limits = limits
        self.python = python or sys.executable
        self.cgroups = CgroupFactory.detect() if use_cgroups else None
        self.own_uid = False  # does each kernel run under a uid of its own?

    def _argv(self, slot: KernelSlot, python_exe: str) -> tuple[list[str], int | None]:
        """The command, and a file descriptor it reads (closed here once it is started)."""
        raise NotImplementedError

    def enforcement(self) -> dict[str, str]:
        return enforcement(self.cgroups, self.own_uid)

    def _cwd(self, slot: KernelSlot) -> str | None:
        return None

    def paths_for(self, slot: KernelSlot) -> dict[str, str]:
        return dict(INSIDE)

    async def launch(self, slot: KernelSlot) -> KernelProcess:
        cgroup = self.cgroups.create(slot.name, self.limits) if self.cgroups else None
        memory_held = cgroup is not None and "memory" in cgroup.dirs
        layout = python_layout(self.python)
        command, fd = self._argv(slot, str(layout["executable"]))
        limits = prlimit_argv(self.limits, address_space=not memory_held, own_uid=self.own_uid)
        argv = [*join_cgroup_script(cgroup), *limits, *command]
        try:
            with open(slot.log, "ab") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True,
                    env=self._env(slot), cwd=self._cwd(slot), pass_fds=() if fd is None else (fd,))
        finally:
            if fd is not None:
                os.close(fd)
        return SubprocessKernel(proc, cgroup, self.limits)

    def _env(self, slot: KernelSlot) -> dict[str, str]:
        return kernel_env(self.paths_for(slot))

    def close(self) -> None:
        if self.cgroups is not None:
            self.cgroups.close()


class PlainLauncher(_SubprocessLauncher):
    """``isolation: none``: the kernel runs as the server's user with the server's view of the
    machine. Only the limits and the empty environment apply."""

    isolation = "none"

    def paths_for(self, slot: KernelSlot) -> dict[str, str]:
        return {"work": str(slot.dir / "work"), "kernel": str(slot.ipc), "input": str(slot.input),
                "assets": str(slot.assets), "tmp": str(slot.dir / "tmp")}

    def _env(self, slot: KernelSlot) -> dict[str, str]:
        # The kernel is our direct child here: ipykernel exits when we die (under bwrap,
        # --die-with-parent does this, and a PID namespace would confuse the poller).
        return {**kernel_env(self.paths_for(slot)), "JPY_PARENT_PID": str(os.getpid())}

    def _cwd(self, slot: KernelSlot) -> str | None:
        for sub in ("work", "tmp"):
            (slot.dir / sub).mkdir(exist_ok=True)
        return str(slot.dir / "work")

    def _argv(self, slot: KernelSlot, python_exe: str) -> tuple[list[str], int | None]:
        return [python_exe, *KERNEL_ARGS, "-f", str(slot.ipc / "connection.json")], None


def _ancestors(path: str) -> list[str]:
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


class BwrapLauncher(_SubprocessLauncher):
    """``isolation: bwrap``: new PID, network, IPC and UTS namespaces; a read-only view of /usr,
    a few /etc files and the Python installation; a private tmpfs /tmp and work dir; the
    kernel's own directory for its sockets; an unprivileged uid with no capabilities."""

    isolation = "bwrap"

    def __init__(self, limits: Limits, python: str | None = None) -> None:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxError("bubblewrap (bwrap) is not installed, so sessions cannot be isolated",
                               hint="install it (apt-get install bubblewrap; `make sandbox-deps`), or set "
                                    "sandbox.isolation: none in the recipe to run untrusted code unisolated")
        for tool in ("setpriv", "prlimit"):
            if shutil.which(tool) is None:
                raise SandboxError(f"{tool} (util-linux) is not installed", hint="apt-get install util-linux")
        super().__init__(limits, python)
        self.bwrap = bwrap
        # As root we drop each kernel to a uid of its own. Otherwise bwrap makes a user namespace
        # and the kernel keeps our uid: no per-session RLIMIT_NPROC then, only a pids cgroup if any.
        self.own_uid = os.geteuid() == 0

    def _argv(self, slot: KernelSlot, python_exe: str) -> tuple[list[str], int | None]:
        """bwrap reads its options from a file descriptor, so the sandbox's ``/proc/1/cmdline``
        (bwrap's own) shows no host path."""
        assert slot.uid is not None, "bwrap kernels run under their own uid"
        uid = str(slot.uid)
        fd = self.options_fd(slot, self.options(slot))
        kernel = [python_exe, *KERNEL_ARGS, "-f", f"{INSIDE['kernel']}/connection.json"]
        drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--no-new-privs"]
        command = [*drop, *kernel] if self.own_uid else kernel
        return [self.bwrap, "--args", str(fd), "--", *command], fd

    @staticmethod
    def options_fd(slot: KernelSlot, options: list[str]) -> int:
        path = slot.dir / "bwrap.args"
        path.write_bytes(b"".join(x.encode() + b"\0" for x in options))
        return os.open(path, os.O_RDONLY)

    def options(self, slot: KernelSlot) -> list[str]:
        """bwrap's options for a kernel of ``slot``: its namespaces and its view of the files."""
        tmpfs_size = str(self.limits.memory_bytes)  # bounds the tmpfs even where no memory cgroup does
        a = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session", "--hostname", "sandbox",
             "--proc", "/proc", "--dev", "/dev", "--size", tmpfs_size, "--perms", "1777", "--tmpfs", "/tmp",
             "--perms", "0755", "--dir", INSIDE_ROOT, "--size", tmpfs_size, "--perms", "1777",
             "--tmpfs", INSIDE["work"], "--ro-bind", "/usr", "/usr"]
        if not self.own_uid:  # bwrap works in a user namespace of ours anyway: no nested ones for the kernel
            a[:0] = ["--unshare-user", "--disable-userns"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
            if os.path.islink(top):
                a += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                a += ["--ro-bind", top, top]
        a += ["--perms", "0755", "--dir", "/etc"]
        for name in _ETC_FILES:
            a += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        a += ["--ro-bind", str(slot.dir / "etc" / "passwd"), "/etc/passwd",
              "--ro-bind", str(slot.dir / "etc" / "group"), "/etc/group"]
        made: set[str] = {"/etc", INSIDE_ROOT}
        roots: list[str] = python_layout(self.python)["roots"]  # type: ignore[assignment]
        for root in roots:
            if root == "/usr" or root.startswith("/usr/"):
                continue
            for d in _ancestors(root + "/x"):
                if d not in made and d != root:
                    a += ["--perms", "0755", "--dir", d]
                    made.add(d)
            a += ["--ro-bind", root, root]
        a += ["--ro-bind", str(slot.assets), INSIDE["assets"], "--bind", str(slot.ipc), INSIDE["kernel"],
              "--ro-bind", str(slot.input), INSIDE["input"],
              # The root bwrap builds is a tmpfs with no size limit, and without root (a user namespace) the
              # kernel owns it: made read-only, only /tmp and the work dir (sized tmpfs) stay writable.
              "--remount-ro", "/", "--chdir", INSIDE["work"], "--clearenv"]
        for k, v in kernel_env(self.paths_for(slot)).items():
            a += ["--setenv", k, v]
        return a

    def _env(self, slot: KernelSlot) -> dict[str, str]:
        (slot.dir / "etc").mkdir(exist_ok=True)
        uid = slot.uid if self.own_uid else os.getuid()
        (slot.dir / "etc" / "passwd").write_text(f"sandbox:x:{uid}:{uid}:sandbox:{INSIDE['work']}:/usr/sbin/nologin\n")
        (slot.dir / "etc" / "group").write_text(f"sandbox:x:{uid}:\n")
        return {"PATH": "/usr/local/bin:/usr/bin:/bin"}  # bwrap's own environment; the kernel's is --clearenv'd
