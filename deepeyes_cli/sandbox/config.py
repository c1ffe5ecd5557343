"""`sandbox:` section (owned by the sandbox package)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepeyes_cli.recipe.base import Section


class SandboxConfig(Section):
    isolation: Literal["bwrap", "docker", "none"] = "bwrap"
    url: str | None = Field(None, description="Shared sandbox server; in-process pool when unset.")
    token: str | None = Field(None, description="Bearer token for the sandbox server (use ${ENV_VAR}).")
    timeout_s: float = Field(60.0, gt=0, description="Per-cell time limit.")
