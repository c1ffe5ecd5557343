"""The reward of one trajectory, as an explainable breakdown.

    score = w_acc · acc · (1 − p) + w_fmt · format

``format`` is 1 when no format rule is violated; ``acc`` comes from the answer-matching
rules when one is confident, else from the LLM judge; ``p`` is ``reward.search_penalty``
for sources with ``search_penalty`` whose trajectory wrote a ``<tool_call>``. A missing
answer, or one at or over the length limit, scores acc = 0 without asking the judge (the
original asked its judge about a missing answer too, with "None" as the prediction). When
the judge cannot answer, ``accuracy`` and ``score`` are None and ``unjudged`` says why:
never a silent 0. The same holds for a rollout the backend broke (``end_reason="error"``)
and a sample without a ground truth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deepeyes_cli.agent.trajectory import Trajectory
from deepeyes_cli.rewards.config import RewardConfig, SourceRule
from deepeyes_cli.rewards.format import FormatReport, Violation, check_format
from deepeyes_cli.rewards.judge import Judge, JudgeRequest, JudgeResult
from deepeyes_cli.rewards.match import Verdict, match_answer

BREAKDOWN_VERSION = 1
Decider = Literal["rule", "judge", "unjudged"]


class RewardBreakdown(BaseModel):
    """What `Trajectory.reward` holds once scored (``model_dump()`` of this)."""

    model_config = ConfigDict(extra="allow")

    version: int = BREAKDOWN_VERSION
    score: float | None  # None when unjudged
    accuracy: float | None  # 1.0 / 0.0, None when unjudged
    format: float  # 1.0 when no format rule is violated
    penalties: dict[str, float] = Field(default_factory=dict)  # e.g. {"search": 0.1}: acc scaled by 1 − p
    decided_by: Decider
    rule: str | None = None  # the matching rule that decided (or why none could)
    judge_model: str | None = None
    judge_cached: bool = False
    prompt_version: str | None = None
    unjudged: bool = False
    unjudged_reason: str | None = None
    violations: list[Violation] = Field(default_factory=list)  # cost the format term
    warnings: list[Violation] = Field(default_factory=list)  # extra rules, free unless strict_format
    prediction: str | None = None  # the answer that was graded
    data_source: str
    source_rule: str  # the reward.sources key that applied
    weights: dict[str, float] = Field(default_factory=dict)


@dataclass
class Prepared:
    """A trajectory after format rules and answer-matching rules, before any judge call."""

    data_source: str
    source_key: str
    rule: SourceRule
    fmt: FormatReport
    verdict: Verdict | None  # a rule's verdict, or None
    request: JudgeRequest | None  # what to ask the judge when no rule decided
    unscorable: str | None = None  # why neither rules nor judge can score it


class RewardScorer:
    def __init__(self, config: RewardConfig, judge: Judge | None = None) -> None:
        self.config = config
        self.judge = judge

    @classmethod
    def from_config(cls, config: RewardConfig, cache_path: str | Path | None = None) -> RewardScorer:
        """A scorer with the recipe's judge and its persistent cache."""
        from deepeyes_cli.rewards.cache import JudgeCache

        return cls(config, Judge(config.judge, JudgeCache(cache_path or default_cache_path(config))))

    def prepare(self, traj: Trajectory) -> Prepared:
        cfg, sample = self.config, traj.sample
        key, rule = cfg.rule_for(sample.data_source)
        turns = [m.text for m in traj.messages if m.role == "assistant"]
        fmt = check_format(turns, tool_call_tags=rule.tool_call_tags, strict=cfg.strict_format,
                           answer_char_limit=cfg.answer_char_limit if rule.answer_length_limit else None)
        matching = rule.matching or cfg.matching
        prep = Prepared(sample.data_source, key, rule, fmt, None, None)
        if traj.end_reason == "error":  # infrastructure failed, not the model: no reward either way
            prep.unscorable = f"the rollout failed: {traj.metadata.get('error', 'backend error')}"
        elif fmt.answer is None:
            prep.verdict = Verdict(False, "no_answer")
        elif any(v.rule == "answer_too_long" for v in fmt.violations):
            prep.verdict = Verdict(False, "answer_too_long")
        elif sample.answer is None:
            prep.unscorable = "the sample has no ground-truth answer"
        else:
            if matching != "judge":
                prep.verdict = match_answer(fmt.answer, sample.answer, question=sample.question,
                                            choices=sample.choices, rel_tol=cfg.numeric_rel_tol,
                                            alternatives=rule.alternatives)
            if prep.verdict is None or prep.verdict.correct is None:
                if matching == "rules":
                    prep.unscorable = "no matching rule was confident and reward.matching is `rules`"
                else:
                    prep.request = JudgeRequest(sample.question, sample.answer, fmt.answer, rule.judge_prompt)
        return prep

    def finish(self, prep: Prepared, result: JudgeResult | None = None) -> RewardBreakdown:
        cfg, rule, fmt = self.config, prep.rule, prep.fmt
        w_acc = cfg.accuracy_weight if rule.accuracy_weight is None else rule.accuracy_weight
        w_fmt = cfg.format_weight if rule.format_weight is None else rule.format_weight
        fmt_score = 1.0 if fmt.ok else 0.0
        p = cfg.search_penalty if rule.search_penalty and fmt.tool_calls > 0 else 0.0
        verdict_rule = prep.verdict.rule if prep.verdict else None
        accuracy: float | None = None
        decided: Decider = "unjudged"
        unjudged_reason = prep.unscorable
        if prep.verdict is not None and prep.verdict.correct is not None:
            accuracy, decided = float(prep.verdict.correct), "rule"
        elif result is not None and result.correct is not None:
            accuracy, decided = float(result.correct), "judge"
        else:
            unjudged_reason = unjudged_reason or (result.error if result else "no judge available")
        # Rounded so records read 0.92, not 0.9200000000000002.
        score = None if accuracy is None else round(w_acc * accuracy * (1 - p) + w_fmt * fmt_score, 9)
        return RewardBreakdown(
            score=score, accuracy=accuracy, format=fmt_score, penalties={"search": p} if p else {},
            decided_by=decided, rule=verdict_rule, judge_model=result.model if result else None,
            judge_cached=bool(result and result.cached),
            prompt_version=self.judge.prompt_version(rule.judge_prompt) if result and self.judge else None,
            unjudged=accuracy is None, unjudged_reason=unjudged_reason, violations=fmt.violations,
            warnings=fmt.warnings, prediction=fmt.answer, data_source=prep.data_source, source_rule=prep.source_key,
            weights={"accuracy": w_acc, "format": w_fmt}, version=BREAKDOWN_VERSION)

    def score_by_rules(self, traj: Trajectory) -> RewardBreakdown:
        """Rules only: a sample the judge would have to decide comes back unjudged."""
        prep = self.prepare(traj)
        return self.finish(prep, JudgeResult(None, None, error="judge not used") if prep.request else None)

    async def score_many(self, trajs: Sequence[Trajectory],
                         on_scored: Callable[[int, RewardBreakdown], None] | None = None) -> list[RewardBreakdown]:
        """Breakdowns in order; rule-decided ones are reported at once, judged ones as they arrive."""
        out: list[RewardBreakdown | None] = [None] * len(trajs)

        def done(i: int, b: RewardBreakdown) -> None:
            out[i] = b
            if on_scored is not None:
                on_scored(i, b)

        prepared = [self.prepare(t) for t in trajs]
        asks = [i for i, p in enumerate(prepared) if p.request is not None]
        for i, p in enumerate(prepared):
            if p.request is None:
                done(i, self.finish(p))
        if asks:
            if self.judge is None:
                for i in asks:
                    done(i, self.finish(prepared[i], JudgeResult(None, None, error="no judge available")))
            else:
                requests = [prepared[i].request for i in asks]
                await self.judge.judge_many(requests,  # type: ignore[arg-type]
                                            on_result=lambda j, res: done(asks[j], self.finish(prepared[asks[j]], res)))
        return [b for b in out if b is not None]

    def score(self, trajs: Sequence[Trajectory]) -> list[RewardBreakdown]:
        """Synchronous `score_many` (for code without an event loop, e.g. a reward worker)."""
        return asyncio.run(self.score_many(trajs))


def default_cache_path(config: RewardConfig, cache_dir: str | Path | None = None) -> Path:
    if config.cache_path:
        return Path(config.cache_path).expanduser()
    if cache_dir is None:
        from deepeyes_cli.models.loading import default_cache_dir

        cache_dir = default_cache_dir()
    return Path(cache_dir).expanduser() / "judge.sqlite"
