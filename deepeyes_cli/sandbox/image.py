"""The sandbox's Docker image: its build context (``sandbox_image/`` plus this package) and
``deepeyes sandbox build-image``, which hands the context to the Docker engine."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import SandboxError

PACKAGE = Path(__file__).resolve().parent.parent  # deepeyes_cli/
REPO = PACKAGE.parent
BUILD_CA_FILE = "build-ca.crt"  # in the build context: certificates the build's pip trusts


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
                           hint="start Docker (or set DOCKER_HOST; scripts/docker-engine.sh starts podman); "
                                "bwrap isolation needs no Docker") from e
    return client


def engine_name(client: Any) -> str:
    """What answered at DOCKER_HOST: "Docker Engine 27.1.1", "Podman Engine 4.3.1" …"""
    try:
        info = client.version()
    except Exception:
        return "unknown engine"
    for part in info.get("Components") or []:
        if part.get("Name"):
            return f"{part['Name']} {part.get('Version', '')}".strip()
    return f"Docker API {info.get('ApiVersion', '?')}"


@dataclass
class BuiltImage:
    id: str
    tag: str
    size: int  # bytes
    base: str


def ca_bundle_for_build() -> Path | None:
    """The CA bundle this machine's pip trusts, when it names one (``PIP_CERT``, ``SSL_CERT_FILE``):
    behind a TLS-inspecting proxy the build's pip needs it too."""
    for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    return None


def build_image(tag: str, base: str | None = None, on_line: Callable[[str], None] | None = None,
                ca_bundle: Path | None = None, timeout: float = 3600) -> BuiltImage:
    """Build ``sandbox_image/Dockerfile`` as ``tag`` (on ``base``, else the Dockerfile's default),
    streaming the engine's build output line by line to ``on_line``. ``ca_bundle`` (certificates
    only, never a key) is what the build's pip trusts."""
    client = docker_client()
    context = write_build_context()
    if ca_bundle is not None:
        try:
            shutil.copyfile(ca_bundle, context / BUILD_CA_FILE)
        except OSError as e:
            shutil.rmtree(context, ignore_errors=True)
            raise SandboxError(f"cannot read the CA bundle {ca_bundle}: {e}", hint="pass a readable PEM file") from e
    api = client.api
    api.timeout = timeout  # a build streams for minutes; the client's default is seconds
    image_id: str | None = None
    tail: list[str] = []
    try:
        stream = api.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False, decode=True,
                           buildargs={"BASE_IMAGE": base} if base else None)
        for chunk in stream:
            if "error" in chunk:
                detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                raise SandboxError(f"the image build failed: {str(detail).strip()}",
                                   hint="see the build output above (`docker images` lists the bases "
                                        "the engine has)")
            text = chunk.get("stream") or chunk.get("status") or ""
            for line in str(text).splitlines():
                if line.strip():
                    tail = [*tail[-19:], line]
                    if on_line is not None:
                        on_line(line)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = str(aux["ID"])
    except SandboxError:
        raise
    except Exception as e:
        raise SandboxError(f"the image build failed: {type(e).__name__}: {e}",
                           hint="\n".join(tail[-5:]) or "is the Docker engine still running?") from e
    finally:
        shutil.rmtree(context, ignore_errors=True)
    try:
        image = client.images.get(tag)
    except Exception as e:
        raise SandboxError(f"the build ended but {tag} is not there ({e})",
                           hint="\n".join(tail[-5:]) or "see the build output above") from e
    return BuiltImage(id=str(image.id or image_id), tag=tag, size=int(image.attrs.get("Size") or 0),
                      base=base or "the Dockerfile's default (python:3.11-slim)")
