"""The scripted-policy `deepeyes serve` shared by the API tests (see serve_helpers)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import pytest
from serve_helpers import Served, scripted_overrides, start_server


@pytest.fixture(scope="module")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One scripted-policy server with a key, small limits, one slot and a queue of one."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (make sandbox-deps installs it)")
    tmp = tmp_path_factory.mktemp("serve")
    server = start_server(tmp, *scripted_overrides(
        tmp, "serve.max_concurrency=1", "serve.max_queue=1", "serve.max_images=2",
        "serve.max_image_pixels=1000000", "serve.max_request_mb=4", "serve.max_tokens=64",
        "serve.save_trajectories=true", f"serve.trajectories_file={tmp / 'served.jsonl'}"),
        key="sk-serve-" + uuid.uuid4().hex)
    server.saved = tmp / "served.jsonl"  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
