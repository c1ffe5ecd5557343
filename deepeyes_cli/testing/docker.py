"""For tests of ``isolation: docker``: is there an engine and the sandbox image, and if not, why."""

from __future__ import annotations

import os

# The image docker-marked tests run (make test-docker builds it under this tag).
DOCKER_IMAGE = os.environ.get("DEEPEYES_TEST_DOCKER_IMAGE", "deepeyes-sandbox:latest")


def docker_unavailable(image: str | None = DOCKER_IMAGE) -> str | None:
    """Why kernels cannot run in containers here (no engine, no image), or None."""
    from deepeyes_cli.errors import SandboxError
    from deepeyes_cli.sandbox.image import docker_client

    try:
        client = docker_client()
    except SandboxError as e:
        return f"{e.message} (make test-docker starts podman where it can)"
    try:
        if image is not None:
            client.images.get(image)
    except Exception:
        return f"the sandbox image {image} is not built (make test-docker builds it)"
    finally:
        client.close()
    return None


def docker_required() -> bool:
    """DEEPEYES_REQUIRE_DOCKER=1 (make test-docker, once the engine runs): fail, never skip."""
    return os.environ.get("DEEPEYES_REQUIRE_DOCKER") == "1"
