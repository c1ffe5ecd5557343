"""`search:` section (owned by the search package)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepeyes_cli.recipe.base import Section


class SearchConfig(Section):
    backend: Literal["serpapi", "local", "none"] = "serpapi"
    mode: Literal["live", "replay", "refresh"] = "live"
    top_k: int = Field(5, ge=1, le=20)
    url: str | None = Field(None, description="Shared `deepeyes search serve` endpoint; local when unset.")
