"""`agent:` section (owned by the agent package): the protocol's limits and options.

Defaults follow the original RL rollout (9 rounds, 8192 tokens per turn, 8192 + 16384
tokens in all, 10 images per round, 50 per prompt); evaluation used 11 rounds and
temperature 0.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepeyes_cli.recipe.base import Section

# Qwen2.5-VL's default image budget (qwen-vl-utils): 16384 visual tokens of 28x28 pixels.
DEFAULT_IMAGE_MAX_PIXELS = 16384 * 28 * 28


class AgentConfig(Section):
    max_turns: int = Field(9, ge=1, description="Generation rounds (original: 9 in RL, 11 in eval).")
    system_prompt: str | None = Field(None, description="Overrides the built-in system prompt.")
    prompt_file: str | None = Field(None, description="File holding the system prompt.")
    user_instruction: str | None = Field(
        None, description="Overrides the instruction appended to the question in the first user turn.")
    tools: list[str] = Field(["code", "search", "image_search"],
                             description="Tools offered to the model (evaluation of the original: code only).")
    max_tokens_per_turn: int = Field(8192, ge=1, description="New tokens per model call.")
    max_context_tokens: int = Field(
        24576, ge=64, description="Whole trajectory, prompt and observations included (original: 8192 + 16384).")
    max_images_per_turn: int = Field(10, ge=1, description="Images one tool result may show; extra ones are dropped.")
    max_images: int = Field(50, ge=1, description="Images in a trajectory, inputs included; more ends it.")
    image_max_pixels: int = Field(DEFAULT_IMAGE_MAX_PIXELS, ge=1024,
                                  description="Input and tool images larger than this are downscaled on arrival.")
    stop: list[str] = Field(["</code>", "</tool_call>"], description="Stop strings (kept in the output).")
    temperature: float = Field(0.0, ge=0, description="0 is greedy and deterministic (the original's evaluation).")
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(None, description="Sampling seed, where the backend supports one.")
    concurrency: int = Field(64, ge=1, description="Trajectories in flight at once.")
    tool_timeout_s: float = Field(300.0, gt=0, description="Wall-clock limit of one tool call.")
    generation_timeout_s: float = Field(900.0, gt=0, description="Wall-clock limit of one model call.")
    fix_indentation: bool = Field(
        False, description="Re-indent code like the original's fixer before running it. Side effect: statements "
                           "after a block end up inside it. Off by default: code runs as written.")
    show_last_expression: bool = Field(
        True, description="Append the value of a cell's last expression to stdout, as a notebook shows it.")
    on_no_action: Literal["end", "remind"] = Field(
        "end", description="A turn with neither a tool call nor an answer ends the trajectory (original) "
                           "or gets a reminder and the loop goes on.")
