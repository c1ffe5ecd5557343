"""Collapse alarms: EMA trends of the signals that go first when agentic RL collapses.

Each step feeds its metrics; each tracked signal keeps an EMA (so one noisy step does not
fire, but a collapse shows within a few steps) and its peak. An alarm fires when its EMA
crosses a threshold, or (tool calls) when the EMA falls below a fraction of its peak. The
state is a plain dict, saved with every checkpoint, so a resumed run fires exactly as the
uninterrupted one would. Which signal comes from where:

- tool calls collapsing to zero: DeepEyes issues #78/#55, DeepEyesV2 §RL;
- within-group reward std, entropy, clip fraction, grad norm: RAGEN (arXiv 2504.20073);
- the rollout/trainer logprob gap: TIS (vLLM and the trainer disagree).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deepeyes_cli.train.rl.config import AlarmConfig


@dataclass
class Alarm:
    name: str
    metric: str
    value: float  # the EMA
    threshold: float
    message: str

    def as_text(self) -> str:
        return f"{self.name}: {self.message} ({self.metric} EMA {self.value:.4g}, threshold {self.threshold:.4g})"


def _rules(cfg: AlarmConfig, max_response_length: int) -> list[tuple[str, str, str, float, str]]:
    """(name, metric, direction, threshold, message) of the fixed-threshold alarms."""
    return [
        ("format_errors", "rollout/format_error_rate", "high", cfg.max_format_error_rate,
         "many trajectories break the format"),
        ("answer_without_tool", "rollout/answer_without_tool_rate", "high", cfg.max_answer_without_tool_rate,
         "the policy answers without calling tools"),
        ("reward_std", "grpo/reward_std", "low", cfg.min_reward_std,
         "groups stopped disagreeing: no learning signal (RAGEN echo trap)"),
        ("short_responses", "rollout/response_tokens", "low", cfg.min_response_length, "responses are collapsing"),
        ("long_responses", "rollout/response_tokens", "high", cfg.max_response_length_fraction * max_response_length,
         "responses are running into the length limit"),
        ("entropy", "actor/entropy", "low", cfg.min_entropy, "the policy became near-deterministic"),
        ("clip_fraction", "actor/clip_fraction", "high", cfg.max_clip_fraction, "updates are too large"),
        ("grad_norm", "actor/grad_norm", "high", cfg.max_grad_norm, "gradients are blowing up"),
        ("logprob_gap", "rollout/logprob_gap", "high", cfg.max_logprob_gap,
         "the rollout engine and the trainer disagree (stale weights or numerics)"),
    ]


class Alarms:
    def __init__(self, cfg: AlarmConfig, max_response_length: int) -> None:
        self.cfg = cfg
        self.max_response_length = max_response_length
        self.ema: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.steps = 0
        self.fired: dict[str, int] = {}  # alarm name -> how many steps it fired

    def update(self, metrics: Mapping[str, float]) -> list[Alarm]:
        """Fold in one step's metrics; return the alarms firing after it."""
        a = self.cfg.ema
        for k, v in metrics.items():
            if not self._tracked(k) or v != v:  # NaN: not measured this step
                continue
            self.ema[k] = v if k not in self.ema else a * v + (1 - a) * self.ema[k]
            self.peak[k] = max(self.peak.get(k, self.ema[k]), self.ema[k])
        self.steps += 1
        if not self.cfg.enabled or self.steps <= self.cfg.warmup_steps:
            return []
        out: list[Alarm] = []
        for name, metric, direction, threshold, message in _rules(self.cfg, self.max_response_length):
            e = self.ema.get(metric)
            if e is not None and (e > threshold if direction == "high" else e < threshold):
                out.append(Alarm(name, metric, e, threshold, message))
        for metric in sorted(k for k in self.ema if k.startswith("rollout/tool_calls")):
            v, peak = self.ema[metric], self.peak[metric]
            tool = metric.removeprefix("rollout/tool_calls").lstrip("_") or "any"
            if peak >= self.cfg.min_tool_call_rate and v < self.cfg.min_tool_call_rate:
                out.append(Alarm(f"tool_collapse_{tool}", metric, v, self.cfg.min_tool_call_rate,
                                 f"{tool} tool calls collapsed"))
            elif peak > 0 and v < self.cfg.tool_call_drop * peak:
                out.append(Alarm(f"tool_drop_{tool}", metric, v, self.cfg.tool_call_drop * peak,
                                 f"{tool} tool calls fell below {self.cfg.tool_call_drop:.0%} of their peak"))
        for al in out:
            self.fired[al.name] = self.fired.get(al.name, 0) + 1
        return out

    def should_stop(self, alarms: list[Alarm]) -> Alarm | None:
        stop = self.cfg.stop_on
        for al in alarms:
            if "*" in stop or al.name in stop or any(al.name.startswith(s + "_") for s in stop):
                return al
        return None

    @staticmethod
    def _tracked(key: str) -> bool:
        return key.startswith(("rollout/", "grpo/", "actor/"))

    def trends(self) -> dict[str, float]:
        return {f"ema/{k}": v for k, v in sorted(self.ema.items())}

    def state_dict(self) -> dict[str, Any]:
        return {"ema": dict(self.ema), "peak": dict(self.peak), "steps": self.steps, "fired": dict(self.fired)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.ema = dict(state.get("ema", {}))
        self.peak = dict(state.get("peak", {}))
        self.steps = int(state.get("steps", 0))
        self.fired = dict(state.get("fired", {}))
