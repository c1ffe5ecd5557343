"""The `docker` suite: kernels in containers on a real engine (podman+runc here, through
make test-docker; Docker Engine with your own DOCKER_HOST). Skips with the reason where no
engine answers; fails instead with DEEPEYES_REQUIRE_DOCKER=1."""

from __future__ import annotations

import pytest

from deepeyes_cli.testing.docker import DOCKER_IMAGE, docker_required, docker_unavailable


@pytest.fixture
def docker_image() -> str:
    why = docker_unavailable(DOCKER_IMAGE)
    if why is not None:
        if docker_required():
            pytest.fail(f"DEEPEYES_REQUIRE_DOCKER=1, but {why}")
        pytest.skip(why)
    return DOCKER_IMAGE


@pytest.fixture
def docker_engine() -> None:
    why = docker_unavailable(None)
    if why is not None:
        if docker_required():
            pytest.fail(f"DEEPEYES_REQUIRE_DOCKER=1, but {why}")
        pytest.skip(why)
