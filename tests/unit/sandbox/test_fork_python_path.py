"""``kernel_start: auto`` forks kernels only where the forked session can still see the
kernel's Python: a session mounts a fresh /tmp, so a venv under /tmp starts with exec."""

from __future__ import annotations

import pytest

from deepeyes_cli.sandbox.pool import _under_session_tmp


@pytest.mark.parametrize(("python", "hidden"), [
    ("/tmp/pytest-1/image-venv/bin/python", True),
    ("/tmp/python3", True),
    ("/work/repo/.venv/bin/python", False),
    ("/usr/bin/python3", False),
    ("/tmpfoo/bin/python", False),   # only the /tmp directory itself is replaced
    ("/opt/tmp/venv/bin/python", False),
])
def test_a_kernel_python_under_tmp_is_not_forked(python: str, hidden: bool) -> None:
    assert _under_session_tmp(python) is hidden
