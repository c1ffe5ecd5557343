"""`curate:` section (owned by the curate package): the data pipeline's stages and rules.

Defaults follow the paper: 8 samples per question at temperature 1 from the base model,
questions answered correctly at most 2 times out of 8 are kept; tools-on vs tools-off
decides whether tools help; strong models write tool-using trajectories, kept when the
judge marks them correct; questions solved with tools go to RL, harder ones with a kept
trajectory to cold-start SFT; the RL mix was perception 51.9 %, reason 41.6 %, search 6.5 %.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from deepeyes_cli.recipe.base import Section


class ColumnMap(Section):
    """Column names of a source's layout; unset: detected from the usual names."""

    question: str | None = Field(None, description="e.g. `problem`, `query`.")
    answer: str | None = Field(None, description="e.g. `solution`, `label`.")
    image: str | None = Field(None, description="An image path, bytes, HF Image struct or a list of them.")
    id: str | None = None
    data_source: str | None = None
    choices: str | None = None


class IngestConfig(Section):
    columns: ColumnMap = Field(default_factory=ColumnMap)
    default_data_source: str = Field("perception", description="For rows without one.")
    strict: bool = Field(False, description="Stop at the first bad row instead of listing it.")
    require_answer: bool = Field(True, description="A row without a ground truth is a bad row.")
    require_image: bool = Field(False, description="A row without an image is a bad row.")
    max_image_pixels: int = Field(16384 * 28 * 28, ge=1024, description="Larger images are downscaled once.")


class SyntheticConfig(Section):
    """`builtin:synthetic` source: generated images where tools help (a small number in a corner,
    coloured shapes to count, two numbers to multiply, a landmark to look up)."""

    n: int = Field(50, ge=1)
    seed: int = 0
    size: int = Field(336, ge=64, description="Image side in pixels.")
    kinds: list[Literal["corner_number", "count_shapes", "product", "landmark_year"]] = Field(
        ["corner_number", "count_shapes", "product", "landmark_year"])


class DifficultyConfig(Section):
    k: int = Field(8, ge=1, description="Answers sampled per question from the base model.")
    temperature: float = Field(1.0, ge=0)
    max_correct: int = Field(2, ge=0, description="Keep questions answered correctly at most this often out of k.")
    tools: list[str] | None = Field(None, description="Tools offered; unset: agent.tools.")
    concurrency: int | None = Field(None, ge=1, description="Trajectories in flight; unset: agent.concurrency.")
    max_turns: int | None = Field(None, ge=1, description="Unset: agent.max_turns.")
    max_tokens_per_turn: int | None = Field(None, ge=1, description="Unset: agent.max_tokens_per_turn.")


class ToolBenefitConfig(Section):
    k: int = Field(4, ge=1, description="Attempts with tools and without, each.")
    temperature: float = Field(1.0, ge=0)
    min_delta: float = Field(0.125, description="Tools help when accuracy(tools) − accuracy(no tools) ≥ this.")
    min_accuracy_with_tools: float = Field(0.0, ge=0, le=1, description="… and accuracy(tools) ≥ this.")
    concurrency: int | None = Field(None, ge=1)
    max_turns: int | None = Field(None, ge=1, description="Unset: agent.max_turns.")
    max_tokens_per_turn: int | None = Field(None, ge=1, description="Unset: agent.max_tokens_per_turn.")


class TeacherModel(Section):
    """A strong model behind an OpenAI-compatible endpoint (or the built-in scripted teacher)."""

    name: str | None = Field(None, description="Label in reports; default: model.")
    backend: Literal["openai", "scripted"] = "openai"
    base_url: str | None = Field(None, description="e.g. https://api.openai.com/v1.")
    model: str | None = Field(None, description="Model id; unset: the first one the endpoint lists.")
    api_key: str | None = Field(None, description="Use ${ENV_VAR}.")
    weight: float = Field(1.0, gt=0, description="Share of the questions this model gets.")
    script: str | None = Field(None, description="scripted: `builtin:oracle` (solves `builtin:synthetic` questions "
                                                 "with the code tool) or a JSON list of turns.")
    input_price_per_mtok: float = Field(0.0, ge=0, description="USD per million prompt tokens.")
    output_price_per_mtok: float = Field(0.0, ge=0, description="USD per million completion tokens.")
    concurrency: int = Field(16, ge=1, description="Requests in flight to this endpoint.")

    @property
    def label(self) -> str:
        return self.name or self.model or (self.script or "scripted")


class Budget(Section):
    max_usd: float | None = Field(None, ge=0, description="Stop starting trajectories once this much is spent.")
    max_tokens: int | None = Field(None, ge=0, description="… or this many tokens (prompt + completion).")
    max_calls: int | None = Field(None, ge=0, description="… or this many model calls.")


class SynthesizeConfig(Section):
    attempts: int = Field(2, ge=1, description="Trajectories asked per question.")
    temperature: float = Field(0.7, ge=0)
    models: list[TeacherModel] = Field(default_factory=list)
    budget: Budget = Field(default_factory=Budget)
    only_hard: bool = Field(True, description="Only questions the difficulty stage kept.")
    require_tool_call: bool = Field(True, description="Keep only trajectories that called a tool.")
    tools: list[str] | None = Field(None, description="Tools offered; unset: agent.tools.")
    max_turns: int | None = Field(None, ge=1, description="Unset: agent.max_turns.")
    max_tokens_per_turn: int | None = Field(None, ge=1, description="Unset: agent.max_tokens_per_turn.")


class SplitConfig(Section):
    seed: int = 0
    rl_min_tool_accuracy: float = Field(
        0.01, ge=0, le=1, description="RL takes hard questions the base model solved with tools at least this often.")
    unsolved_to_rl: float = Field(
        0.0, ge=0, le=1, description="Share of the unsolved hard questions sent to RL instead (a base model that "
                                     "solves nothing, like the tiny one, still gets RL data).")
    rl_mix: dict[str, float] = Field(default_factory=dict, description="Target share per data_source in RL, e.g. "
                                     "{perception: 0.519, reason: 0.416, search: 0.065}; empty: keep all.")
    sft_mix: dict[str, float] = Field(default_factory=dict, description="Target share per data_source in SFT.")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="Share of RL questions held out as validation.")

    @field_validator("rl_mix", "sft_mix")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        if any(x < 0 for x in v.values()) or (v and sum(v.values()) <= 0):
            raise ValueError("shares must be ≥ 0 and not all 0")
        return v


class ExportConfig(Section):
    formats: list[Literal["jsonl", "sharegpt", "verl"]] = Field(["jsonl", "sharegpt", "verl"])
    dataset_name: str = Field("deepeyes_sft", description="Key in LLaMA-Factory's dataset_info.json.")
    env_name: str = Field("deepeyes_v2", description="verl parquet env_name (the original's tool registry key).")


class CurateConfig(Section):
    sources: list[str] = Field(default_factory=list, description="What `curate run` ingests (paths or builtin:synthetic).")
    output: str | None = Field(None, description="Data directory of `curate run`; default runs/<name>-data.")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    difficulty: DifficultyConfig = Field(default_factory=DifficultyConfig)
    tool_benefit: ToolBenefitConfig = Field(default_factory=ToolBenefitConfig)
    synthesize: SynthesizeConfig = Field(default_factory=SynthesizeConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
