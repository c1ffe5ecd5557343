"""`model:` section: which Qwen2.5-VL checkpoint to load and how."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepeyes_cli.recipe.base import Section

# Qwen2.5-VL's image budget: 28x28 pixels per visual token after 2x2 merging.
PIXELS_PER_TOKEN = 28 * 28


class ModelConfig(Section):
    path: str = Field(
        "Qwen/Qwen2.5-VL-7B-Instruct",
        description="Local directory, hub id, or `builtin:tiny` (random weights, built offline).",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    device: str = Field("auto", description="`auto`, `cpu`, `cuda`, `cuda:1` …")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] | None = None
    min_pixels: int = Field(4 * PIXELS_PER_TOKEN, ge=PIXELS_PER_TOKEN)
    max_pixels: int = Field(16384 * PIXELS_PER_TOKEN, ge=PIXELS_PER_TOKEN)
    local_files_only: bool = Field(False, description="Never contact the hub (air-gapped clusters).")
