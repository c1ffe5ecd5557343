"""Resource limits of one kernel: a cgroup when this machine lets us create one, rlimits always.

cgroup v2 is used when ``/sys/fs/cgroup`` is the unified hierarchy and our own cgroup hands
the memory, pids and cpu controllers down to children; otherwise the v1 ``memory``, ``pids``
and ``cpu`` hierarchies are used, each one that lets us create a child under our own cgroup.
What a cgroup gives that rlimits cannot: a memory limit that counts every process of the
session and its tmpfs files (OOM kills only that session's processes), a process limit that
holds even for root, and a CPU quota. Without one, memory falls back to RLIMIT_AS (per
process, address space) and processes to RLIMIT_NPROC (binds only under a non-root uid).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from deepeyes_cli.procs import pid_alive

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "pids", "cpu")
_CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    cpus: float
    cpu_time_s: int
    file_size_bytes: int
    open_files: int
    max_processes: int

    @classmethod
    def from_config(cls, cfg: object) -> Limits:
        return cls(memory_bytes=int(cfg.memory_mb) << 20, cpus=float(cfg.cpus),  # type: ignore[attr-defined]
                   cpu_time_s=int(cfg.cpu_time_s), file_size_bytes=int(cfg.file_size_mb) << 20,  # type: ignore[attr-defined]
                   open_files=int(cfg.open_files), max_processes=int(cfg.max_processes))  # type: ignore[attr-defined]


def prlimit_argv(limits: Limits, *, address_space: bool, own_uid: bool = True) -> list[str]:
    """`prlimit … --` setting the per-process limits for the command that follows (inherited
    across exec and fork). RLIMIT_AS only when no memory cgroup holds the session; RLIMIT_NPROC
    only when the kernel runs under a uid of its own (it counts every process of that uid)."""
    argv = ["prlimit", f"--cpu={limits.cpu_time_s}", f"--fsize={limits.file_size_bytes}",
            f"--nofile={limits.open_files}", "--core=0"]
    if own_uid:
        argv.append(f"--nproc={limits.max_processes}")
    if address_space:
        argv.append(f"--as={limits.memory_bytes}")
    return [*argv, "--"]


def _write(path: Path, value: str) -> None:
    path.write_text(value)



def remove_stale(directory: Path, prefix: str = "deepeyes-sandbox-") -> None:
    """Remove what a server killed with SIGKILL left behind: ``<prefix><pid>…`` entries whose
    pid is gone (cgroup directories, state directories)."""
    import re
    import shutil

    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            match = pattern.match(entry.name)
            if not match or pid_alive(int(match.group(1))) or not entry.is_dir():
                continue
            if str(entry).startswith(str(CGROUP_ROOT)):
                with contextlib.suppress(OSError):
                    for child in entry.iterdir():
                        if child.is_dir():
                            child.rmdir()
                    entry.rmdir()
            else:
                shutil.rmtree(entry, ignore_errors=True)


def _own_cgroup(controller: str | None) -> str | None:
    """Our process's path in the hierarchy of ``controller`` (None: the v2 unified one)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, names, path = line.split(":", 2)
        if (controller is None and names == "") or (controller and controller in names.split(",")):
            return path
    return None


class Cgroup:
    """The cgroup directories of one kernel (one per v1 controller, or one v2 directory)."""

    def __init__(self, dirs: dict[str, Path], version: str) -> None:
        self.dirs = dirs
        self.version = version

    @property
    def procs_files(self) -> list[Path]:
        return sorted({d / "cgroup.procs" for d in self.dirs.values()})

    def oom_killed(self) -> bool:
        memory = self.dirs.get("memory")
        if memory is None:
            return False
        try:
            if self.version == "v2":
                events = dict(line.split() for line in (memory / "memory.events").read_text().splitlines())
                return int(events.get("oom_kill", 0)) > 0
            control = dict(line.split() for line in (memory / "memory.oom_control").read_text().splitlines())
            return int(control.get("oom_kill", 0)) > 0 or int((memory / "memory.failcnt").read_text()) > 0
        except (OSError, ValueError):
            return False

    def pids(self) -> set[int]:
        found: set[int] = set()
        for f in self.procs_files:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(x) for x in f.read_text().split())
        return found

    def kill(self) -> None:
        """SIGKILL every process still in the cgroup (forks that left the process group)."""
        kill_file = self.dirs.get("unified", Path("/nonexistent")) / "cgroup.kill"
        if kill_file.exists():
            with contextlib.suppress(OSError):
                _write(kill_file, "1")
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> bool:
        ok = True
        for d in self.dirs.values():
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                ok = False
        return ok


class CgroupFactory:
    """Creates per-kernel cgroups under ``<our cgroup>/deepeyes-sandbox-<pid>/``."""

    def __init__(self, parents: dict[str, Path], version: str) -> None:
        self.parents = parents
        self.version = version

    @property
    def controllers(self) -> list[str]:
        if self.version == "v2":
            return sorted(V1_CONTROLLERS)
        return sorted(self.parents)

    @classmethod
    def detect(cls, root: Path = CGROUP_ROOT) -> CgroupFactory | None:
        name = f"deepeyes-sandbox-{os.getpid()}"
        if (root / "cgroup.controllers").exists():
            return cls._detect_v2(root, name)
        parents: dict[str, Path] = {}
        for controller in V1_CONTROLLERS:
            own = _own_cgroup(controller)
            base = root / controller
            if own is None or not (base / "cgroup.procs").exists():
                continue
            parent = base / own.lstrip("/") / name
            remove_stale(parent.parent)
            try:
                parent.mkdir(exist_ok=True)
            except OSError:
                continue
            parents[controller] = parent
        return cls(parents, "v1") if parents else None

    @classmethod
    def _detect_v2(cls, root: Path, name: str) -> CgroupFactory | None:
        own = _own_cgroup(None)
        if own is None:
            return None
        parent = root / own.lstrip("/") / name
        remove_stale(parent.parent)
        try:
            parent.mkdir(exist_ok=True)
            available = set((parent / "cgroup.controllers").read_text().split())
            if not set(V1_CONTROLLERS) <= available:
                parent.rmdir()
                return None
            _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in V1_CONTROLLERS))
        except OSError:
            with contextlib.suppress(OSError):
                parent.rmdir()
            return None
        return cls({"unified": parent}, "v2")

    def create(self, name: str, limits: Limits) -> Cgroup:
        dirs: dict[str, Path] = {}
        try:
            if self.version == "v2":
                d = self.parents["unified"] / name
                d.mkdir(exist_ok=True)
                dirs = {"unified": d, "memory": d}
                _write(d / "memory.max", str(limits.memory_bytes))
                with contextlib.suppress(OSError):
                    _write(d / "memory.swap.max", "0")
                _write(d / "pids.max", str(limits.max_processes))
                _write(d / "cpu.max", f"{int(limits.cpus * _CPU_PERIOD_US)} {_CPU_PERIOD_US}")
                return Cgroup(dirs, "v2")
            for controller, parent in self.parents.items():
                d = parent / name
                d.mkdir(exist_ok=True)
                dirs[controller] = d
            if "memory" in dirs:
                _write(dirs["memory"] / "memory.limit_in_bytes", str(limits.memory_bytes))
                with contextlib.suppress(OSError):  # no swap accounting on this kernel
                    _write(dirs["memory"] / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
            if "pids" in dirs:
                _write(dirs["pids"] / "pids.max", str(limits.max_processes))
            if "cpu" in dirs:
                _write(dirs["cpu"] / "cpu.cfs_period_us", str(_CPU_PERIOD_US))
                _write(dirs["cpu"] / "cpu.cfs_quota_us", str(int(limits.cpus * _CPU_PERIOD_US)))
        except OSError:
            Cgroup(dirs, self.version).remove()
            raise
        return Cgroup(dirs, "v1")

    def close(self) -> None:
        for parent in self.parents.values():
            with contextlib.suppress(OSError):
                for child in parent.iterdir():
                    if child.is_dir():
                        child.rmdir()
                parent.rmdir()


def enforcement(cgroups: CgroupFactory | None, own_uid: bool) -> dict[str, str]:
    """How each per-session limit holds here (said by ``deepeyes sandbox check`` and ``/health``).
    ``own_uid``: each kernel runs under a uid of its own (bwrap as root), so RLIMIT_NPROC is per session."""
    held = set(cgroups.controllers) if cgroups else set()
    via = f"cgroup {cgroups.version}" if cgroups else ""
    return {
        "memory": f"{via}: the whole session, tmpfs included" if "memory" in held else
                  "RLIMIT_AS per process (each fork gets as much; /tmp and the work dir are tmpfs of memory_mb each)",
        "processes": f"{via}: pids.max" if "pids" in held else
                     "RLIMIT_NPROC on the kernel's own uid" if own_uid else "none",
        "cpu": f"{via}: quota of `cpus`" if "cpu" in held else "no quota (RLIMIT_CPU per process, the cell timeout)",
    }


def join_cgroup_script(cgroup: Cgroup | None) -> list[str]:
    """`sh -c` prefix that moves itself into the cgroup, then execs the rest of the argv, so the
    kernel and everything it forks start inside (no preexec_fn in a threaded server)."""
    import shlex

    if cgroup is None or not cgroup.procs_files:
        return []
    joins = "; ".join(f"echo $$ > {shlex.quote(str(f))} || exit 97" for f in cgroup.procs_files)
    return ["/bin/sh", "-c", f'{joins}; exec "$@"', "sh"]
