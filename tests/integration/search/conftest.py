"""A fake SerpAPI on loopback and search configs pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deepeyes_cli.search.config import SearchConfig
from deepeyes_cli.testing.fake_serpapi import FakeSerpAPI

SERPAPI_KEY = "sk-fake-0123456789abcdef"


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def serpapi_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SERPAPI_API_KEY", SERPAPI_KEY)
    return SERPAPI_KEY


@pytest.fixture
def fake(serpapi_key: str) -> Iterator[FakeSerpAPI]:
    with FakeSerpAPI(api_key=serpapi_key) as server:
        yield server


@pytest.fixture
def config_for(tmp_path: Path) -> Callable[..., SearchConfig]:
    """``config_for(fake, mode="replay", budget={...})``: a SerpAPI config on the fake, with fast retries."""

    def make(fake: FakeSerpAPI | None = None, **fields: Any) -> SearchConfig:
        base: dict[str, Any] = {
            "backend": "serpapi",
            "cache": {"path": str(tmp_path / "cache.sqlite")},
            "serpapi": {"base_url": fake.url if fake else "http://127.0.0.1:9", "backoff_s": 0.01,
                        "max_backoff_s": 0.05, "timeout_s": 5},
            "budget": {"run_id": "test-run"},
        }
        return SearchConfig.model_validate(_merge(base, fields))

    return make
