"""Shared fixtures. Every test runs offline on the CPU; the tiny model is built once per
session into a private cache that subprocesses (CLI tests) share through DEEPEYES_CACHE."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BWRAP_MISSING = "bubblewrap is not installed (make sandbox-deps installs it)"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("needs_bwrap") is not None and shutil.which("bwrap") is None:
        from deepeyes_cli.testing.ci import skip_or_fail

        skip_or_fail(BWRAP_MISSING)


@pytest.fixture(scope="session", autouse=True)
def _offline_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    cache = tmp_path_factory.mktemp("deepeyes-cache")
    saved = {k: os.environ.get(k) for k in ("DEEPEYES_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                            "HF_HUB_DISABLE_TELEMETRY", "DEEPEYES_RECIPE")}
    os.environ["DEEPEYES_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.pop("DEEPEYES_RECIPE", None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The built-in tiny model, built once into the session cache (as `builtin:tiny` does)."""
    from deepeyes_cli.models.loading import resolve_model_path

    return Path(resolve_model_path("builtin:tiny"))


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real `deepeyes` entry point in a subprocess."""
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "deepeyes_cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli
