"""`sandbox:` section (owned by the sandbox package)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepeyes_cli.recipe.base import Section


class SandboxConfig(Section):
    isolation: Literal["bwrap", "docker", "none"] = Field(
        "bwrap", description="bwrap (default): bubblewrap namespaces; docker: a container per kernel; "
                             "none: no isolation at all (refused unless written explicitly, then warned).")
    url: str | None = Field(None, description="Shared sandbox server; in-process pool when unset.")
    token: str | None = Field(None, description="Bearer token for the sandbox server (use ${ENV_VAR}).")
    timeout_s: float = Field(60.0, gt=0, description="Per-cell time limit.")
    max_timeout_s: float = Field(600.0, gt=0, description="Cap on a timeout a client asks for.")
    interrupt_grace_s: float = Field(3.0, gt=0, description="How long an interrupted cell may take to stop "
                                                            "before the kernel is restarted.")
    # Pool.
    pool_size: int = Field(4, ge=0, description="Kernels kept started and idle, so a new session does not wait "
                                                "(up to 4x this while sessions arrive faster than kernels start).")
    max_sessions: int = Field(32, ge=1, description="Live sessions at most. At the limit the least recently used "
                                                    "idle session is closed to make room; a new one waits only "
                                                    "while none is idle (back-pressure).")
    evict_grace_s: float = Field(2.0, ge=0, description="At max_sessions, a session idle at least this long may be "
                                                        "closed for a new one (it reopens empty, with a note).")
    queue_timeout_s: float = Field(120.0, gt=0, description="How long a new session waits for a free slot.")
    idle_timeout_s: float = Field(900.0, gt=0, description="Sessions idle this long are closed.")
    start_timeout_s: float = Field(60.0, gt=0, description="A kernel that is not ready after this is killed.")
    start_concurrency: int = Field(2, ge=1, description="Kernels started at the same time (forked ones: 4x this).")
    kernel_start: Literal["auto", "fork", "exec"] = Field(
        "auto", description="fork: fork each kernel from a pre-imported template process under bwrap (root "
                            "only; ~0.1 s of CPU instead of ~0.7 s); exec: start each one from scratch; auto: "
                            "fork where it works (bwrap as root), else exec.")
    # Limits, per session.
    memory_mb: int = Field(2048, ge=64, description="Memory of one session (cgroup; address space otherwise).")
    cpus: float = Field(1.0, gt=0, description="CPU share of one session (cgroup cpu quota, when available).")
    cpu_time_s: int = Field(1800, ge=1, description="CPU seconds of one process (RLIMIT_CPU).")
    file_size_mb: int = Field(256, ge=1, description="Largest file a session may write (RLIMIT_FSIZE).")
    open_files: int = Field(256, ge=32, description="Open file descriptors per process (RLIMIT_NOFILE).")
    max_processes: int = Field(64, ge=8, description="Processes and threads of one session (pids cgroup, "
                                                     "RLIMIT_NPROC under an unprivileged uid).")
    uid_base: int = Field(61000, ge=1000, description="Sessions run as unprivileged uids from here on (bwrap).")
    # Output.
    max_images_per_cell: int = Field(10, ge=0, description="Images returned per cell (the original's cap).")
    max_image_pixels: int = Field(2048 * 2048, ge=1024, description="Larger images are scaled down to this.")
    max_output_chars: int = Field(20000, ge=100, description="stdout / stderr / result / error beyond this "
                                                             "are cut, with a marker.")
    # Where kernels come from.
    python: str | None = Field(None, description="Python that runs kernels (default: this one). It needs "
                                                 "ipykernel, pillow, numpy and matplotlib.")
    docker_image: str = Field("deepeyes-sandbox:latest", description="Image for isolation: docker.")
    state_dir: str | None = Field(None, description="Kernel sockets and inputs (default: a private temp dir).")
