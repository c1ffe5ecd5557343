"""The sandbox image. Without a Docker engine we check what we can: its pinned requirements
install into a fresh venv and a kernel from that venv does the model's work. Building the
image and running kernels in containers need an engine (marked `docker`; make test-docker
starts podman here)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.pool import KernelPool

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "sandbox_image" / "requirements.txt"
TOOLBOX_CELL = ("import cv2, scipy.ndimage, numpy as np\n"
                "a = np.asarray(image_1)\n"
                "print(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).shape, scipy.ndimage.sobel(a[..., 0]).shape)\n"
                "plt.imshow(a); plt.show()")


def _run_toolbox_cell(cfg: SandboxConfig) -> tuple[str, str, int]:
    async def go() -> tuple[str, str, int]:
        async with KernelPool(cfg) as pool:
            session = await pool.open_session([Image.new("RGB", (32, 24), "white")])
            r = await session.run(TOOLBOX_CELL, 60)
            return r.status, r.stdout + (r.error or ""), len(r.images)

    return asyncio.run(go())


@pytest.mark.slow
def test_pinned_requirements_install_and_run_a_kernel(tmp_path: Path) -> None:
    venv = tmp_path / "image-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    # --no-compile: byte-compiling scipy & co. would double the time; pip's cache serves the wheels.
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                              "-q", "--no-compile", "--only-binary=:all:", "-r", str(REQUIREMENTS)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    isolation = "bwrap" if shutil.which("bwrap") else "none"
    cfg = SandboxConfig(isolation=isolation, python=str(venv / "bin" / "python"), pool_size=0)
    status, out, images = _run_toolbox_cell(cfg)
    assert status == "ok" and out == "(24, 32) (24, 32)\n" and images == 1, out
    # The CLI from the image's build context runs on the image's requirements alone (no torch …).
    from deepeyes_cli.sandbox.image import write_build_context

    context = write_build_context(tmp_path / "context")
    run = subprocess.run([str(venv / "bin" / "python"), "-m", "deepeyes_cli", "sandbox", "run", "--json",
                          "import cv2, scipy; print(cv2.__version__ > '4')", f"sandbox.isolation={isolation}",
                          "sandbox.pool_size=0", f"run.runs_dir={tmp_path / 'runs'}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(context)})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["stdout"] == "True\n"


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(3600)  # a first build installs the toolbox (minutes); a cached one takes seconds
def test_build_image_streams_the_build_and_reports_id_and_size(docker_engine: None, cli, tmp_path: Path) -> None:
    """`deepeyes sandbox build-image` against DOCKER_HOST, on the base make test-docker imports
    (DEEPEYES_SANDBOX_BASE; else the Dockerfile's python:3.11-slim, which needs a registry)."""
    import os
    import re

    from deepeyes_cli.sandbox.image import docker_client
    from deepeyes_cli.testing.docker import DOCKER_IMAGE

    base = os.environ.get("DEEPEYES_SANDBOX_BASE")
    client = docker_client()
    try:
        if base is None:
            try:
                client.images.get("python:3.11-slim")
            except Exception:
                pytest.skip("no base image here: set DEEPEYES_SANDBOX_BASE (scripts/docker-engine.sh base) "
                            "or pull python:3.11-slim")
        r = cli("sandbox", "build-image", "--tag", DOCKER_IMAGE, cwd=tmp_path, timeout=3000)
        assert r.returncode == 0, r.stderr[-3000:]
        m = re.search(r"built (\S+) \((sha256:)?([0-9a-f]{12,}), (\d+) MB, \d+ s\)", r.stdout)
        assert m is not None, r.stdout
        image = client.images.get(DOCKER_IMAGE)
        assert image.id.removeprefix("sha256:").startswith(m.group(3))
        assert abs(int(m.group(4)) - image.attrs["Size"] / 1e6) <= 1 and int(m.group(4)) > 50
        assert "STEP" in r.stderr or "Step" in r.stderr  # the engine's build output was streamed
        # a bad base is a clear error, not a traceback
        bad = cli("sandbox", "build-image", "--tag", "deepeyes-sandbox:never", "--base", "localhost/no-such-base:0",
                  "--quiet", cwd=tmp_path, timeout=600)
        assert bad.returncode == 1 and "error: the image build failed" in bad.stderr and "hint:" in bad.stderr
    finally:
        client.close()


@pytest.mark.docker
def test_kernels_run_the_toolbox_in_containers(docker_image: str) -> None:
    cfg = SandboxConfig(isolation="docker", docker_image=docker_image, pool_size=0, memory_mb=512)
    status, out, images = _run_toolbox_cell(cfg)
    assert status == "ok" and out == "(24, 32) (24, 32)\n" and images == 1, out
