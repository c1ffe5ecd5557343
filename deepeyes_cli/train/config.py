"""`sft:` and `rl:` sections. Defaults are the original DeepEyesV2-7B hyperparameters.

SFT: LLaMA-Factory full fine-tune, ZeRO-3, lr 1e-5 cosine with 10 % warm-up, 3 epochs,
batch 1 x grad-accum 4 per device, cutoff 20480 tokens, images <= 512x512 px, vision tower
and projector frozen. RL: GRPO, 16 rollouts per prompt, 256 prompts per step, mini-batch 32,
lr 1e-6 constant, clip 0.2/0.2 with dual-clip 3.0, token-mean loss, no KL, prompt 8192 +
response 16384 tokens, 9 generation rounds. Rollouts use the `policy:` backend and the
`agent:` limits, so RL samples through the same loop as `ask` and `bench`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepeyes_cli.recipe.base import Section
from deepeyes_cli.train.rl.config import AlarmConfig, RolloutConfig, StabilityConfig, ValidationConfig


class SFTConfig(Section):
    datasets: list[str] = Field(default_factory=list, description="JSON/JSONL/parquet files or directories.")
    learning_rate: float = Field(1e-5, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    epochs: float = Field(3.0, gt=0)
    per_device_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(4, ge=1)
    cutoff_len: int = Field(20480, ge=128, description="Max tokens per sample; longer samples are dropped.")
    image_max_pixels: int = Field(262144, ge=784)
    freeze_vision_tower: bool = True
    freeze_projector: bool = True
    max_samples: int | None = Field(100000, ge=1)
    save_steps: int = Field(500, ge=1)
    logging_steps: int = Field(10, ge=1)
    max_grad_norm: float = Field(1.0, gt=0)
    # --- data pipeline
    overlong: Literal["drop", "fail"] = Field("drop", description="Samples longer than cutoff_len.")
    bad_samples: Literal["fail", "drop"] = Field(
        "fail", description="Samples whose image tokens and images disagree, or whose images are unreadable.")
    group_by_length: bool = Field(
        False, description="Sort each shuffled window of micro-batches by length (less padding). Off by default, as "
        "in HF Trainer: the loss is a token-mean per accumulation window, so windows of short samples weigh each "
        "token more, and a behaviour seen mostly in short samples is over-learned (measured: a 51 % tool-call "
        "share in the data became 27 % in the model).")
    packing: bool = Field(False, description="Pack samples into rows of up to cutoff_len tokens.")
    dataloader_workers: int = Field(2, ge=0)
    # --- run control
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept (the newest).")
    export: bool = Field(True, description="Write a Hugging Face checkpoint to <run>/export at the end.")
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=lambda: ["tensorboard"])  # type: ignore[arg-type]
    wandb_project: str = "deepeyes"
    wandb_mode: Literal["online", "offline", "disabled"] | None = Field(
        None, description="None: WANDB_MODE from the environment.")


class RLConfig(Section):
    datasets: list[str] = Field(default_factory=list, description="RL parquet/JSONL files.")
    algorithm: Literal["grpo"] = "grpo"
    rollouts_per_prompt: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    train_batch_size: int = Field(256, ge=1, description="Prompts per RL step.")
    ppo_mini_batch_size: int = Field(32, ge=1, description="Prompts per optimizer update.")
    micro_batch_size_per_gpu: int = Field(1, ge=1)
    ppo_epochs: int = Field(1, ge=1)
    learning_rate: float = Field(1e-6, gt=0)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    clip_ratio_low: float = Field(0.2, ge=0)
    clip_ratio_high: float = Field(0.2, ge=0)
    dual_clip_c: float = Field(3.0, ge=1)
    loss_agg_mode: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"] = "token-mean"
    entropy_coeff: float = 0.0
    kl_coef: float = Field(0.0, ge=0, description="0 disables the reference policy entirely.")
    max_prompt_length: int = Field(8192, ge=1)
    max_response_length: int = Field(16384, ge=1, description="All turns, tool observations included.")
    total_epochs: int = Field(32, ge=1)
    save_freq: int = Field(4, ge=1)
    test_freq: int = Field(4, ge=1)
    # Rollouts run the agent loop with the `policy:` backend (vLLM engine settings in
    # `policy.vllm`) and the `agent:` limits: one loop for ask, bench and RL.
    init_from: str | None = Field(None, description="SFT checkpoint dir or hub id; default: model.path.")
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept besides `latest`.")
    freeze_vision_tower: bool = True
    gradient_checkpointing: bool | None = Field(None, description="Default: launch.gradient_checkpointing.")
    logprob_chunk_tokens: int = Field(2048, ge=16, description="lm_head runs on at most this many tokens at once.")
    micro_batch_max_tokens: int | None = Field(None, ge=16, description="Token-packed micro-batches instead of "
                                                                        "micro_batch_size_per_gpu.")
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        ["tensorboard"], description="Besides metrics.jsonl (W&B: WANDB_MODE=offline works without an account).")
    stability: StabilityConfig = Field(default_factory=StabilityConfig)
    alarms: AlarmConfig = Field(default_factory=AlarmConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
