"""Skips that must not hide regressions: in CI (``CI`` set, as CI services do) a test whose
prerequisite is missing fails with the reason instead of skipping, since CI's set-up
(``make test``: sandbox-deps, browser-deps) installs every prerequisite it can."""

from __future__ import annotations

import os
from typing import NoReturn


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str, fail_in_ci: bool = True) -> NoReturn:
    """``pytest.skip(reason)`` on a developer's machine; ``pytest.fail`` in CI."""
    import pytest

    if fail_in_ci and in_ci():
        pytest.fail(f"{reason}; CI is set, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)
