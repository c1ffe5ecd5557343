"""`agent:` section (owned by the agent package)."""

from __future__ import annotations

from pydantic import Field

from deepeyes_cli.recipe.base import Section


class AgentConfig(Section):
    max_turns: int = Field(9, ge=1, description="Generation rounds (original: 9 in RL, 11 in eval).")
    system_prompt: str | None = Field(None, description="Overrides the built-in system prompt.")
    prompt_file: str | None = Field(None, description="File holding the system prompt.")
