"""The core of `deepeyes sandbox run` and `deepeyes sandbox check`: one session, one cell."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import InputError, SandboxError
from deepeyes_cli.sandbox.base import CellResult
from deepeyes_cli.sandbox.config import SandboxConfig

PROBE = """\
import os, socket
facts = {"uid": os.getuid(), "visible processes": len([p for p in os.listdir('/proc') if p.isdigit()])}
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1); facts["network"] = "reachable"
except OSError as e:
    facts["network"] = f"blocked ({e.strerror or e})"
facts["environment"] = sorted(k for k in os.environ if not k.startswith(("LC_", "LANG")))
print(facts)
"""
# What holds inside a container, read from the kernel's side (cgroup v1 or v2 files, /proc).
CONTAINER_PROBE = """\
import os
def first(*paths):
    for p in paths:
        try:
            return open(p).read().strip()
        except OSError:
            pass
    return None
status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines() if ':' in line)
mem = first('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes')
pids = first('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max')
cpu = first('/sys/fs/cgroup/cpu.max')
if cpu is None:
    q, per = first('/sys/fs/cgroup/cpu/cpu.cfs_quota_us'), first('/sys/fs/cgroup/cpu/cpu.cfs_period_us')
    cpu = f'{q} {per}' if q else None
try:
    open('/probe', 'w'); root = 'WRITABLE'
except OSError as e:
    root = f'read-only ({e.strerror})'
import socket
try:
    socket.create_connection(('1.1.1.1', 53), timeout=1); net = 'REACHABLE'
except OSError as e:
    net = f'blocked ({e.strerror or e})'
print(repr({'uid': os.getuid(), 'memory': mem, 'pids': pids, 'cpu': cpu, 'caps': status['CapEff'].strip(),
            'no_new_privs': status['NoNewPrivs'].strip(), 'root': root, 'network': net}))
"""


def container_rows(cfg: SandboxConfig, facts: dict[str, Any]) -> list[tuple[str, str]]:
    """``sandbox check`` rows from CONTAINER_PROBE's answer: each limit, and whether it holds."""
    def held(ok: bool, what: str) -> str:
        return f"{'holds' if ok else 'DOES NOT HOLD'}: {what}"

    mem, pids, cpu = facts.get("memory"), facts.get("pids"), facts.get("cpu")
    mem_ok = mem is not None and mem.isdigit() and int(mem) == cfg.memory_mb << 20
    pids_ok = pids is not None and pids.isdigit() and int(pids) == cfg.max_processes
    quota = cpu.split() if cpu else []
    cpu_ok = len(quota) == 2 and quota[0].isdigit() and abs(int(quota[0]) / int(quota[1]) - cfg.cpus) < 0.01
    return [("memory limit", held(mem_ok, f"{mem} bytes (asked {cfg.memory_mb} MiB)")),
            ("process limit", held(pids_ok, f"pids.max {pids} (asked {cfg.max_processes})")),
            ("cpu limit", held(cpu_ok, f"quota {cpu} (asked {cfg.cpus:g} CPU)")),
            ("capabilities", held(int(str(facts.get("caps")), 16) == 0, f"CapEff {facts.get('caps')}")),
            ("no-new-privileges", held(facts.get("no_new_privs") == "1", f"NoNewPrivs {facts.get('no_new_privs')}")),
            ("root filesystem", held(str(facts.get("root")).startswith("read-only"), str(facts.get("root")))),
            ("network", held(str(facts.get("network")).startswith("blocked"), str(facts.get("network")))),
            ("user", held(facts.get("uid") != 0, f"uid {facts.get('uid')}"))]


def _load_images(paths: Sequence[Path]) -> list[Any]:
    from PIL import Image

    images = []
    for path in paths:
        try:
            with Image.open(path) as img:
                img.load()
                images.append(img.copy())
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read image {path}: {e}", hint="pass a PNG, JPEG or other PIL-readable file") from e
    return images


def run_once(cfg: SandboxConfig, code: str, image_paths: Sequence[Path] = (), timeout: float | None = None) -> CellResult:
    """Open a session (local kernels, or ``cfg.url``), run one cell, close everything."""
    from deepeyes_cli.sandbox.factory import make_executor

    images = _load_images(image_paths)

    async def go() -> CellResult:
        async with make_executor(cfg.model_copy(update={"pool_size": 0})) as executor:  # type: ignore[attr-defined]
            session = await executor.open_session(images)  # type: ignore[arg-type]
            try:
                return await session.run(code, timeout)
            finally:
                await session.close()

    return asyncio.run(go())


def render_result(result: CellResult, out: Path | None, as_json: bool) -> str:
    paths: list[str] = []
    if out is not None and result.images:
        out.mkdir(parents=True, exist_ok=True)
        for i, png in enumerate(result.images, start=1):
            path = out / f"image_{i}.png"
            path.write_bytes(png)
            paths.append(str(path))
    if as_json:
        fields = {k: v for k, v in result.__dict__.items() if k != "images"}
        fields["images"] = paths or [base64.b64encode(png).decode("ascii") for png in result.images]
        return json.dumps(fields, ensure_ascii=False) + "\n"
    lines = [f"status: {result.status} ({result.execution_time:.3f} s)"]
    for name in ("stdout", "stderr"):
        text = getattr(result, name)
        if text:
            lines += [f"{name}:", text.rstrip("\n")]
    if result.result is not None:
        lines.append(f"result: {result.result}")
    if result.error:
        lines += ["error:", result.error]
    if result.images:
        lines.append(f"images: {len(result.images)}" + (f" ({', '.join(paths)})" if paths else
                                                        " (pass --out DIR to save them)"))
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def check_isolation(cfg: SandboxConfig) -> list[tuple[str, str]]:
    """What this machine gives a session, then a real kernel's view from inside."""
    import os

    from deepeyes_cli.sandbox.limits import CgroupFactory, enforcement

    rows: list[tuple[str, str]] = [("isolation", cfg.isolation)]
    for tool in ("bwrap", "setpriv", "prlimit"):
        rows.append((tool, shutil.which(tool) or "missing"))
    cgroups = CgroupFactory.detect()
    rows.append(("cgroups", f"{cgroups.version}: {', '.join(cgroups.controllers)}" if cgroups else
                            "none we may create: rlimits only"))
    if cfg.isolation != "docker":
        own_uid = cfg.isolation == "bwrap" and os.geteuid() == 0
        rows.append(("user", "a uid of its own per kernel" if own_uid else "this process's uid (user namespace)"
                             if cfg.isolation == "bwrap" else "this process's uid"))
        rows += [(f"{name} limit", how) for name, how in enforcement(cgroups, own_uid).items()]
        from deepeyes_cli.sandbox.pool import _under_session_tmp

        forks = cfg.isolation == "bwrap" and (cfg.kernel_start == "fork" or (
            cfg.kernel_start == "auto" and own_uid and not _under_session_tmp(cfg.python)))
        rows.append(("kernel start", "forked from a pre-imported template (kernel_start: fork)" if forks else
                                     f"exec, one Python per kernel (kernel_start: {cfg.kernel_start})"))
    if cgroups is not None:
        cgroups.close()
    rows.append(("limits", f"{cfg.memory_mb} MiB, {cfg.cpus:g} CPU, {cfg.max_processes} processes, "
                           f"{cfg.open_files} files, files ≤ {cfg.file_size_mb} MiB, {cfg.cpu_time_s} CPU-s"))
    if cfg.url:
        rows.append(("note", "checking the kernel's view needs local kernels; skipped"))
        return rows
    if cfg.isolation == "docker":
        return rows + _docker_rows(cfg)
    try:
        result = run_once(cfg, PROBE)
    except SandboxError as e:
        rows.append(("kernel", f"FAILED: {e.message}" + (f" ({e.hint})" if e.hint else "")))
        return rows
    rows.append(("kernel", result.stdout.strip() or (result.error or result.status)))
    return rows


def _docker_rows(cfg: SandboxConfig) -> list[tuple[str, str]]:
    """Which engine answers, the image, then a real kernel container's view of its limits."""
    import ast
    import os

    from deepeyes_cli.sandbox.image import docker_client, engine_name

    try:
        client = docker_client()
    except SandboxError as e:
        return [("engine", f"FAILED: {e.message}" + (f" ({e.hint})" if e.hint else ""))]
    rows = [("engine", f"{engine_name(client)} at {os.environ.get('DOCKER_HOST') or 'the default socket'}")]
    try:
        image = client.images.get(cfg.docker_image)
        rows.append(("image", f"{cfg.docker_image} ({image.id}, {int(image.attrs.get('Size') or 0) / 1e6:.0f} MB)"))
    except Exception:
        rows.append(("image", f"FAILED: {cfg.docker_image} is not built (deepeyes sandbox build-image)"))
        return rows
    finally:
        client.close()
    try:
        result = run_once(cfg, CONTAINER_PROBE)
        facts = ast.literal_eval(result.stdout.strip())
    except SandboxError as e:
        return [*rows, ("kernel", f"FAILED: {e.message}" + (f" ({e.hint})" if e.hint else ""))]
    except (ValueError, SyntaxError):
        return [*rows, ("kernel", f"FAILED: {result.error or result.stdout.strip() or result.status}")]
    return rows + container_rows(cfg, facts)
