"""Where kernels live on the host: the server's state directory (shared read-only assets, one
directory per kernel), what a kernel's Python needs to see, and the environment it gets."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deepeyes_cli.errors import SandboxError

UNIX_SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with its terminating NUL (Linux)
# Paths a kernel sees inside bubblewrap or a container.
INSIDE_ROOT = "/sandbox"
INSIDE = {"work": f"{INSIDE_ROOT}/work", "kernel": f"{INSIDE_ROOT}/kernel", "input": f"{INSIDE_ROOT}/input",
          "assets": f"{INSIDE_ROOT}/assets", "tmp": "/tmp"}


@dataclass
class KernelSlot:
    """The host side of one kernel: ``dir/ipc`` (connection file, sockets; writable by the
    kernel), ``dir/input`` (images, read-only for it), ``dir/kernel.log`` (its stdout/stderr)."""

    name: str
    dir: Path
    assets: Path
    uid: int | None = None

    @property
    def ipc(self) -> Path:
        return self.dir / "ipc"

    @property
    def input(self) -> Path:
        return self.dir / "input"

    @property
    def log(self) -> Path:
        return self.dir / "kernel.log"


@functools.lru_cache(maxsize=8)
def python_layout(python: str) -> dict[str, object]:
    """Where an interpreter lives: the directories to expose read-only and the path to run.
    Asked of the interpreter itself (once), with an empty environment."""
    code = ("import json, os, sys; print(json.dumps({'roots': [sys.prefix, sys.base_prefix, sys.exec_prefix, "
            "sys.base_exec_prefix], 'venv': sys.prefix != sys.base_prefix, 'prefix': sys.prefix, "
            "'executable': sys.executable}))")
    try:
        out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/local/bin:/usr/bin:/bin"}, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        why = f"exit status {e.returncode}" if isinstance(e, subprocess.CalledProcessError) else str(e)
        raise SandboxError(f"cannot run the kernel Python {python!r} ({why})",
                           hint="set sandbox.python to an interpreter with ipykernel installed") from e
    try:
        info = json.loads(out)
    except ValueError as e:
        raise SandboxError(f"{python!r} did not answer like a Python interpreter",
                           hint="set sandbox.python to an interpreter with ipykernel installed") from e
    roots = sorted({os.path.realpath(p) for p in info["roots"]})
    exe = os.path.realpath(info["executable"])
    if info["venv"]:  # run the venv's own bin/python so the venv's site-packages are used
        exe = os.path.join(os.path.realpath(info["prefix"]), "bin", os.path.basename(info["executable"]))
    kept = [r for r in roots if not any(r != o and r.startswith(o + os.sep) for o in roots)]
    return {"roots": kept, "executable": exe}


def kernel_env(inside: dict[str, str]) -> dict[str, str]:
    """The whole environment of a kernel: nothing inherited from the server (no secrets)."""
    return {"HOME": inside["work"], "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "TMPDIR": inside["tmp"], "MPLBACKEND": "agg", "MPLCONFIGDIR": f"{inside['tmp']}/mpl",
            "DEEPEYES_MPL_CACHE": f"{inside['assets']}/mpl", "IPYTHONDIR": f"{inside['tmp']}/ipython",
            "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1", "MALLOC_ARENA_MAX": "2"}


async def prepare_state_dir(base: str | None, python: str | None, font_list: bool) -> Path:
    """A private ``deepeyes-sandbox-<pid>-…`` directory (leftovers of killed servers removed),
    with ``assets/mpl``: matplotlib's font list, built once here instead of in every kernel."""
    from deepeyes_cli.sandbox.limits import remove_stale

    try:
        if base:
            Path(base).mkdir(parents=True, exist_ok=True)
        remove_stale(Path(base or tempfile.gettempdir()))
        state = Path(tempfile.mkdtemp(prefix=f"deepeyes-sandbox-{os.getpid()}-", dir=base))
    except OSError as e:
        raise SandboxError(f"cannot make the sandbox's state directory: {e}",
                           hint="set sandbox.state_dir to a writable directory") from e
    deepest_socket = state / "k1000000" / "ipc" / "s-5"
    if len(os.fsencode(deepest_socket)) > UNIX_SOCKET_PATH_MAX:
        state.rmdir()
        raise SandboxError(f"sandbox.state_dir {base} is too deep: kernel sockets under it would exceed the "
                           f"{UNIX_SOCKET_PATH_MAX}-byte limit of a unix socket path",
                           hint="choose a shorter sandbox.state_dir (e.g. /tmp/sandbox), or leave it unset")
    try:
        state.chmod(0o711)
        mpl = state / "assets" / "mpl"
        mpl.mkdir(parents=True)
        mpl.parent.chmod(0o755)
        mpl.chmod(0o755)
        if font_list:
            exe = str(python_layout(python or sys.executable)["executable"])
            await asyncio.to_thread(subprocess.run, [exe, "-I", "-c", "import matplotlib.font_manager"],
                                    capture_output=True, env={"MPLCONFIGDIR": str(mpl), "PATH": "/usr/bin:/bin"},
                                    timeout=120)
            for f in mpl.iterdir():
                f.chmod(0o644)
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        raise
    return state


def make_slot(state: Path, serial: int, uid: int, world_writable_ipc: bool = False) -> KernelSlot:
    """A kernel's directory: ``ipc`` owned by its uid (when we are root), ``input`` read-only to it."""
    slot = KernelSlot(name=f"k{serial}", dir=state / f"k{serial}", assets=state / "assets", uid=uid)
    slot.ipc.mkdir(parents=True)
    slot.input.mkdir()
    slot.dir.chmod(0o711)
    slot.input.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(slot.ipc, uid, uid)
        slot.ipc.chmod(0o700)
    elif world_writable_ipc:  # a container's uid must create its sockets here
        slot.ipc.chmod(0o777)
    return slot


class UidLeases:
    """Uids for kernels, unique on this host, not just in this server: each is held with an
    ``flock`` on ``<directory>/<uid>`` while its kernel lives, so two servers on one machine (a
    test run beside another, a benchmark beside a trainer's server) never hand out the same uid
    and share its RLIMIT_NPROC count. The kernel releases the lock when the server exits, even on
    SIGKILL. The directory is root's ``/run/deepeyes-sandbox`` (a per-user one elsewhere)."""

    def __init__(self, base: int, directory: Path | None = None) -> None:
        self.base = base
        self.directory = directory or self._default_directory()
        self.held: dict[int, int] = {}  # uid -> file descriptor holding its lock

    @staticmethod
    def _default_directory() -> Path:
        if os.geteuid() == 0 and os.access("/run", os.W_OK):
            return Path("/run/deepeyes-sandbox")
        return Path(tempfile.gettempdir()) / f"deepeyes-sandbox-uids-{os.geteuid()}"

    def _open_directory(self) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(self.directory)
        if not os.path.isdir(self.directory) or os.path.islink(self.directory) or info.st_uid != os.geteuid():
            raise SandboxError(f"{self.directory} is not a directory of ours",
                               hint="remove it; the sandbox keeps its uid locks there")

    def take(self) -> int:
        self._open_directory()
        for uid in range(self.base, self.base + 100_000):
            if uid in self.held:
                continue
            fd = os.open(self.directory / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # another server's kernel has it
                os.close(fd)
                continue
            self.held[uid] = fd
            return uid
        raise SandboxError(f"no free kernel uid from {self.base} on", hint="close sessions or other sandbox servers")

    def release(self, uid: int | None) -> None:
        fd = self.held.pop(uid, None) if uid is not None else None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # the file stays: removing it could race with another server locking it

    def close(self) -> None:
        for uid in list(self.held):
            self.release(uid)
