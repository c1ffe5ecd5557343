"""Scoring a finished trajectory: the benchmark's own rule first, then ``rewards/`` (answer
matching rules, then the cached LLM judge, asked in one batch per benchmark)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deepeyes_cli.agent.records import tool_calls
from deepeyes_cli.agent.trajectory import Trajectory
from deepeyes_cli.bench.items import BenchItem
from deepeyes_cli.bench.registry import BenchSpec
from deepeyes_cli.bench.results import ItemResult
from deepeyes_cli.bench.scoring import attempted, official
from deepeyes_cli.rewards.config import RewardConfig
from deepeyes_cli.rewards.reward import RewardBreakdown, RewardScorer

_META_KEYS = ("cycle", "l2", "skills", "flags", "rotation", "rotations", "question_type", "problem_index")


def bench_reward_config(base: RewardConfig, spec: BenchSpec) -> RewardConfig:
    """The recipe's reward section, with a rule for this benchmark unless the recipe has one:
    no answer-length limit (math answers run long), the benchmark's judge prompt."""
    data = base.model_dump()
    sources = data.get("sources", {})
    if spec.name not in sources:
        sources[spec.name] = {"answer_length_limit": False, "judge_prompt": spec.judge_prompt,
                              "alternatives": spec.judge_prompt != "math"}
    data["sources"] = sources
    return RewardConfig.model_validate(data)


def prediction_of(traj: Trajectory) -> str | None:
    """The first <answer> of the last turn; without one, the last response (as the original)."""
    if traj.final_answer is not None:
        return traj.final_answer
    texts = [m.text for m in traj.messages if m.role == "assistant"]
    return texts[-1] if texts else None


class BenchScorer:
    def __init__(self, spec: BenchSpec, reward: RewardScorer) -> None:
        self.spec = spec
        self.reward = reward

    @classmethod
    def build(cls, spec: BenchSpec, reward_cfg: RewardConfig, cache_path: Any = None) -> BenchScorer:
        return cls(spec, RewardScorer.from_config(bench_reward_config(reward_cfg, spec), cache_path))

    def _result(self, item: BenchItem, traj: Trajectory, **kw: Any) -> ItemResult:
        return ItemResult(id=item.id, base_id=item.base_id, category=item.category, answer=item.answer,
                          end_reason=traj.end_reason, turns=len(traj.turns), tool_calls=tool_calls(traj),
                          answered=traj.final_answer is not None,
                          trajectory_id=traj.id, meta={k: item.meta[k] for k in _META_KEYS if k in item.meta}, **kw)

    def first_pass(self, item: BenchItem, traj: Trajectory) -> ItemResult:
        """Decided at once where a rule can; ``unjudged`` when the judge must say (see :meth:`judge`)."""
        pred = prediction_of(traj)
        if traj.end_reason == "error":
            return self._result(item, traj, prediction=pred, score=None, decided_by="error",
                                error=str(traj.metadata.get("error", "backend error")))
        if self.spec.scorer == "simplevqa" and not attempted(pred):
            return self._result(item, traj, prediction=pred, score=0.0, decided_by="official",
                                rule="not_attempted", attempted=False)
        if pred is not None:
            verdict = official(self.spec.scorer, item, pred)
            if verdict is not None:
                return self._result(item, traj, prediction=pred, score=verdict.score, decided_by="official",
                                    rule=verdict.rule)
        b = self.reward.score_by_rules(traj)
        return self._from_breakdown(item, traj, pred, b)

    def _from_breakdown(self, item: BenchItem, traj: Trajectory, pred: str | None, b: RewardBreakdown) -> ItemResult:
        traj.reward = b.model_dump()
        if b.accuracy is None:
            return self._result(item, traj, prediction=pred, score=None, decided_by="unjudged", rule=b.rule,
                                error=b.unjudged_reason)
        return self._result(item, traj, prediction=pred, score=b.accuracy, decided_by=b.decided_by, rule=b.rule)

    async def judge(self, pairs: Sequence[tuple[BenchItem, Trajectory]]) -> list[ItemResult]:
        """Ask the (cached) judge about the items no rule decided, in one batch."""
        breakdowns = await self.reward.score_many([t for _, t in pairs])
        return [self._from_breakdown(item, traj, prediction_of(traj), b)
                for (item, traj), b in zip(pairs, breakdowns, strict=True)]
