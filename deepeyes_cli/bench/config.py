"""`bench:` section (owned by the bench package): the original's evaluation settings by
default (temperature 0, at most 11 model calls, the code tool; search where the benchmark
needs it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from deepeyes_cli.recipe.base import Section


class BenchConfig(Section):
    data_dir: str | None = Field(None, description="Folder holding <benchmark>/ folders; default $DEEPEYES_BENCH_DATA.")
    max_turns: int = Field(11, ge=1, description="Model calls per item (original: agent_try 10 -> 11 calls).")
    temperature: float = Field(0.0, ge=0, description="The original evaluated greedily.")
    max_tokens_per_turn: int | None = Field(
        None, ge=1, description="New tokens per call (original: 20480); unset: agent.max_tokens_per_turn.")
    concurrency: int = Field(16, ge=1, description="Items in flight (the original ran 16 API processes).")
    tools: Literal["on", "off", "both"] = Field(
        "on", description="on: code (+ search per benchmark); off: no tools; both: run each benchmark twice "
                          "(the tools-off ablation in the same command).")
    search: Literal["auto", "live", "replay", "off"] = Field(
        "auto", description="auto: search tools for search benchmarks only, live cache; replay: answers from the "
                            "search cache only (repeatable, free); off: never offer search.")
    circular: bool = Field(False, description="Multiple choice: ask every rotation of the options; a question counts "
                                              "only if all are right (reported beside the usual headline).")
    limit: int | None = Field(None, ge=1, description="First N items of each benchmark.")
    split: str | None = Field(None, description="Split of a save_to_disk DatasetDict.")
    bootstrap_samples: int = Field(2000, ge=100, description="Resamples for `bench compare` confidence intervals.")
    viewer: bool = Field(True, description="Write trajectories.html (the `deepeyes view` page the report links to).")

    @field_validator("tools", "search", mode="before")
    @classmethod
    def _yaml_booleans(cls, v: object) -> object:
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v  # YAML reads on/off as booleans
