"""Where kernels live on the host: the server's state directory (shared read-only assets, one
directory per kernel), what a kernel's Python needs to see, and the environment it gets."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deepeyes_cli.errors import SandboxError

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
        raise SandboxError(f"cannot run the kernel Python {python!r}: {e}",
                           hint="set sandbox.python to an interpreter with ipykernel installed") from e
    info = json.loads(out)
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
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


async def prepare_state_dir(base: str | None, python: str | None, font_list: bool) -> Path:
    """A private ``deepeyes-sandbox-<pid>-…`` directory (leftovers of killed servers removed),
    with ``assets/mpl``: matplotlib's font list, built once here instead of in every kernel."""
    from deepeyes_cli.sandbox.limits import remove_stale

    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    remove_stale(Path(base or tempfile.gettempdir()))
    state = Path(tempfile.mkdtemp(prefix=f"deepeyes-sandbox-{os.getpid()}-", dir=base))
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
