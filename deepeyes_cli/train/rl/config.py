"""Sub-sections of `rl:` owned by the RL package: stability options, collapse alarms,
rollout backend and validation. Everything here is off (or the original's behaviour)
unless a recipe sets it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepeyes_cli.recipe.base import Section


class StabilityConfig(Section):
    """Options against unstable RL and tool-call collapse, each from the paper named."""

    drop_zero_variance_groups: bool = Field(
        False, description="DAPO (arXiv 2503.14476) dynamic sampling: groups whose rewards are all equal carry no "
                           "signal; drop them from the loss.")
    mask_truncated: bool = Field(
        False, description="DAPO overlong filtering: trajectories cut by a token/turn/context limit get no loss.")
    mask_infra_errors: bool = Field(
        False, description="Sandbox, search, judge or image-pad failures are left out of the loss and of the "
                           "group statistics (the original scored them 0, which punishes tool use).")
    void_turn_filter: bool = Field(
        False, description="SimpleTIR (arXiv 2509.02479): drop trajectories with a turn that neither calls a tool "
                           "nor answers.")
    tool_bonus: float = Field(
        0.0, ge=0, description="DeepEyes (arXiv 2505.14362) conditional tool bonus: added to the reward only when "
                               "the answer is correct and a tool was called. 0 disables.")
    tis_cap: float | None = Field(
        None, gt=0, description="Truncated importance sampling (Yao et al. 2025, TRL vllm_importance_sampling): "
                                "weight each token by min(p_trainer/p_rollout, cap). None disables.")


class AlarmConfig(Section):
    """Collapse alarms (RAGEN, arXiv 2504.20073: group reward std collapses before the echo trap)."""

    enabled: bool = True
    ema: float = Field(0.5, gt=0, le=1, description="Weight of the newest step in the EMA trends.")
    warmup_steps: int = Field(2, ge=0, description="Steps before alarms may fire.")
    min_tool_call_rate: float = Field(0.05, ge=0, description="Tool calls per trajectory, per tool and in all.")
    tool_call_drop: float = Field(0.5, gt=0, le=1, description="Alarm when the tool-call EMA falls below this "
                                                                "fraction of its peak.")
    max_answer_without_tool_rate: float = Field(0.95, ge=0, le=1)
    max_format_error_rate: float = Field(0.5, ge=0, le=1)
    min_reward_std: float = Field(0.01, ge=0, description="Mean within-group reward std.")
    min_response_length: float = Field(4.0, ge=0, description="Mean generated tokens per trajectory.")
    max_response_length_fraction: float = Field(0.9, gt=0, le=1, description="Of rl.max_response_length.")
    min_entropy: float = Field(0.05, ge=0)
    max_clip_fraction: float = Field(0.2, ge=0, le=1)
    max_grad_norm: float = Field(100.0, gt=0, description="Before clipping.")
    max_logprob_gap: float = Field(0.5, ge=0, description="Mean |rollout − trainer| logprob per token.")
    stop_on: list[str] = Field(default_factory=list,
                               description="Alarm names that stop the run (after a checkpoint); ['*']: any.")


class ValidationConfig(Section):
    datasets: list[str] = Field(default_factory=list, description="Held-out RL parquet/JSONL; empty: none.")
    max_samples: int | None = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0, description="Greedy, as the original's evaluation.")


class RolloutConfig(Section):
    backend: Literal["auto", "transformers", "vllm", "scripted"] = Field(
        "auto", description="auto: colocated vLLM on GPU, the transformers backend on CPU.")
    script: str | None = Field(None, description="backend scripted: a JSON list of turns, or builtin:count (an "
                                                 "imperfect policy for the synthetic task; tests, demos).")
    dump: bool = Field(True, description="Write each step's rollouts to rollouts/step_N.jsonl (deepeyes view).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps (default: total_epochs).")
    weight_sync: Literal["auto", "push", "reload"] = Field(
        "auto", description="vllm backend, how the trainer's weights reach the engine after each update. push: "
                            "in-process, a decoder layer at a time (ZeRO-3 gathers one layer), the frozen vision "
                            "tower skipped; reload: the whole model through a safetensors file and vLLM's "
                            "reload_weights (slower; a fallback). auto: push (README: RL, weight sync).")
    sleep_level: Literal[0, 1, 2] = Field(
        1, description="vllm backend on CUDA: vLLM sleeps while the trainer updates (1: weights to CPU RAM, KV "
                       "cache freed; 2: both discarded, the next sync pushes every weight, vision tower included). "
                       "0: never. vLLM's CPU build has no sleep mode: ignored there.")
