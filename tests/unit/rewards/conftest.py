"""Rewards tests start with an empty ``parse_quantity`` cache: a test then reads numbers with
the code it runs, never through answers an earlier test cached (``make mutation`` forks each
mutant's run from a process whose cache the unmutated code already filled)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deepeyes_cli.rewards.numbers import parse_quantity


@pytest.fixture(autouse=True)
def _fresh_number_cache() -> Iterator[None]:
    parse_quantity.cache_clear()
    yield
