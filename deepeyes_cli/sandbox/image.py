"""The sandbox's Docker image: its build context (``sandbox_image/`` plus this package) and
``deepeyes sandbox build-image``, which hands the context to the Docker engine."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import SandboxError

PACKAGE = Path(__file__).resolve().parent.parent  # deepeyes_cli/
REPO = PACKAGE.parent


def image_dir() -> Path:
    """``sandbox_image/`` of a checkout (the Dockerfile and its pinned requirements)."""
    path = REPO / "sandbox_image"
    if not (path / "Dockerfile").is_file():
        raise SandboxError(f"no sandbox_image/Dockerfile next to {PACKAGE}",
                           hint="build the image from a git checkout of deepeyes")
    return path


def write_build_context(dest: Path | None = None) -> Path:
    """A directory holding exactly what the image needs: the Dockerfile, its requirements, and
    the deepeyes_cli package (no tests, no caches, no run directories)."""
    dest = Path(tempfile.mkdtemp(prefix="deepeyes-image-")) if dest is None else dest
    dest.mkdir(parents=True, exist_ok=True)
    for f in image_dir().iterdir():
        if f.is_file():
            shutil.copy2(f, dest / f.name)
    shutil.copytree(PACKAGE, dest / "deepeyes_cli", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def docker_client() -> Any:
    """A client of a Docker engine that answers, or a SandboxError saying there is none."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as e:
        raise SandboxError(f"no Docker engine answers ({type(e).__name__}: {e})",
                           hint="start Docker (or set DOCKER_HOST); bwrap isolation needs no Docker") from e
    return client


def build_image(tag: str) -> str:
    client = docker_client()
    context = write_build_context()
    try:
        image, _ = client.images.build(path=str(context), tag=tag, rm=True, pull=False)
    except Exception as e:
        raise SandboxError(f"the image build failed: {e}", hint="see the Docker build output above") from e
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return str(image.id)
