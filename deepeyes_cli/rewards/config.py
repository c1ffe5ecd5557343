"""`reward:` section (owned by the rewards package)."""

from __future__ import annotations

from pydantic import Field

from deepeyes_cli.recipe.base import Section


class RewardConfig(Section):
    accuracy_weight: float = Field(0.8, ge=0)
    format_weight: float = Field(0.2, ge=0)
    search_penalty: float = Field(0.1, ge=0, le=1)
