"""`reward:` section (owned by the rewards package).

The defaults reproduce the original reward: ``score = 0.8·acc·(1 − p) + 0.2·format`` with
``p = 0.1`` when a `search` trajectory called a search tool, answers of 300 characters or
more rejected for `perception` and `search`, and the format rules of the original. The
original graded every answer with an LLM judge; we try exact rules first and ask the judge
only when no rule is confident (``matching: judge`` restores judge-only grading).
"""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from pydantic import Field, field_validator

from deepeyes_cli.recipe.base import Section

Matching = Literal["rules+judge", "rules", "judge"]
JudgePrompt = Literal["answer", "math"]


class SourceRule(Section):
    """How trajectories of one ``data_source`` (or a glob of them) are scored."""

    accuracy_weight: float | None = Field(None, ge=0, description="Overrides reward.accuracy_weight.")
    format_weight: float | None = Field(None, ge=0, description="Overrides reward.format_weight.")
    tool_call_tags: bool = Field(False, description="Unbalanced <tool_call> tags are a format error.")
    search_penalty: bool = Field(False, description="Scale accuracy by 1 − reward.search_penalty after a search.")
    answer_length_limit: bool = Field(True, description="Apply reward.answer_char_limit (anti judge-hacking).")
    judge_prompt: JudgePrompt = Field("answer", description="`answer` (general) or `math` (equivalence).")
    matching: Matching | None = Field(None, description="Overrides reward.matching.")
    alternatives: bool = Field(True, description='A ground truth "A or B" accepts either (RealX-Bench); off for '
                                                 'math, where "x = 2 or x = 3" is one answer.')


# The original's dispatch (RL/verl/utils/reward_score/__init__.py). Entries given in a recipe
# are merged field by field over these, so `reward.sources.search.search_penalty=false`
# changes one field and keeps the rest of the table.
DEFAULT_SOURCES: dict[str, dict[str, Any]] = {
    "perception": {},
    "reason": {"answer_length_limit": False, "judge_prompt": "math", "alternatives": False},
    "search": {"tool_call_tags": True, "search_penalty": True},
    "vstar-test": {"accuracy_weight": 1.0, "format_weight": 0.0, "answer_length_limit": False},
    "*": {},  # anything else (benchmarks, custom data): scored like perception
}


class JudgeConfig(Section):
    """An OpenAI-compatible chat endpoint (vLLM serving Qwen2.5-72B-Instruct, or an API model)."""

    base_url: str | None = Field(None, description="e.g. http://judge-host:18901/v1; unset: rules only.")
    model: str | None = Field(None, description="Model id; unset: the first id the endpoint's /models lists.")
    api_key: str | None = Field(None, description="Use ${ENV_VAR}; vLLM accepts any value.")
    concurrency: int = Field(32, ge=1, description="Requests in flight (the original used 32 threads).")
    max_retries: int = Field(5, ge=0, description="Retries on time-outs, 429 and 5xx, with exponential backoff.")
    backoff_s: float = Field(1.0, ge=0, description="First backoff; doubles each retry (with jitter).")
    backoff_max_s: float = Field(30.0, ge=0)
    parse_retries: int = Field(2, ge=0, description="Extra asks when the reply has no parseable verdict.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request time-out.")
    temperature: float = Field(0.0, ge=0, description="0 keeps verdicts repeatable (the original used 0.3).")
    max_tokens: int = Field(1024, ge=16)
    prompt_version: str = Field("v1", description="Part of the cache key (with a digest of the prompt text): bump "
                                                  "it to ask again what was judged before.")
    input_price_per_mtok: float = Field(0.0, ge=0, description="USD per million prompt tokens, for the summary.")
    output_price_per_mtok: float = Field(0.0, ge=0, description="USD per million completion tokens.")

    @field_validator("base_url", "api_key", "model")
    @classmethod
    def _empty_is_unset(cls, v: str | None) -> str | None:
        return v or None  # `${VAR:-}` with VAR unset gives ""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} is not an http(s) URL, e.g. http://judge-host:18901/v1")
        return v


class RewardConfig(Section):
    accuracy_weight: float = Field(0.8, ge=0)
    format_weight: float = Field(0.2, ge=0)
    search_penalty: float = Field(0.1, ge=0, le=1, description="p in 0.8·acc·(1 − p); see sources.*.search_penalty.")
    answer_char_limit: int | None = Field(
        300, ge=1, description="Answers this long or longer: format error and accuracy 0, judge not asked.")
    strict_format: bool = Field(False, description="Also charge the extra rules (order, malformed calls, "
                                                   "text after the answer) that the original did not check.")
    matching: Matching = Field("rules+judge", description="`rules+judge`, `rules` (never call a judge), "
                                                          "`judge` (judge every answer, as the original did).")
    numeric_rel_tol: float = Field(
        0.0, ge=0, description="Extra relative tolerance for decimals, beyond agreeing at the reference's "
                               "precision (0.05: ChartQA's relaxed accuracy). Integers always match exactly.")
    sources: dict[str, SourceRule] = Field(
        default_factory=lambda: {k: SourceRule(**v) for k, v in DEFAULT_SOURCES.items()},
        description="Per-data_source rules; keys are names or globs (`browsecomp-*`), `*` is the fallback.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    cache_path: str | None = Field(None, description="Judge cache (SQLite); default <cache dir>/judge.sqlite.")

    @field_validator("sources", mode="before")
    @classmethod
    def _merge_sources(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {k: dict(v) for k, v in DEFAULT_SOURCES.items()}
        for name, rule in value.items():
            if isinstance(rule, SourceRule):
                rule = rule.model_dump(exclude_unset=True)
            if isinstance(rule, dict):
                merged[name] = {**merged.get(name, {}), **rule}
            else:
                merged[name] = rule  # let validation report it
        return merged

    def rule_for(self, data_source: str) -> tuple[str, SourceRule]:
        """The rule for a data_source: exact name first, then globs in order, then `*`."""
        if data_source in self.sources:
            return data_source, self.sources[data_source]
        for pattern, rule in self.sources.items():
            if pattern != "*" and fnmatch.fnmatchcase(data_source, pattern):
                return pattern, rule
        return "*", self.sources.get("*", SourceRule())
