"""`deepeyes rl`'s training loop, run inside every launched process (or in place).

One step (``rl_design.md`` §1.3): sample this rank's prompts → roll out through the agent
loop → score, flag, pad-check, GRPO advantages and filters → old logprobs → one update
per mini-batch → weight sync → metrics, alarms, rollout dump, checkpoint. Each rank rolls
out its own prompts (a prompt's group stays on its rank: local advantages).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import RecipeError
from deepeyes_cli.train.rl.advantage import INFRA_ERROR, grpo_advantages
from deepeyes_cli.train.rl.alarms import Alarm, Alarms
from deepeyes_cli.train.rl.batch import Encoded, encode_trajectory
from deepeyes_cli.train.rl.driver import Rollout, collect, rollout_metrics
from deepeyes_cli.train.rl.metrics import MetricsWriter
from deepeyes_cli.train.rl.prompts import PromptSampler, load_prompts
from deepeyes_cli.train.rl.update import Updater, accumulation_steps, mini_batches

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    step: int
    metrics: dict[str, float]
    alarms: list[Alarm] = field(default_factory=list)
    stop: Alarm | None = None


def check_batch_sizes(rl: Any, world: int) -> int:
    """Updates per step; refuses sizes that do not divide."""
    if rl.train_batch_size % world:
        raise RecipeError(f"rl.train_batch_size={rl.train_batch_size} is not a multiple of {world} ranks",
                          hint="prompts are split evenly over ranks")
    if rl.train_batch_size % rl.ppo_mini_batch_size:
        raise RecipeError(f"rl.train_batch_size={rl.train_batch_size} is not a multiple of "
                          f"rl.ppo_mini_batch_size={rl.ppo_mini_batch_size}")
    return rl.train_batch_size // rl.ppo_mini_batch_size


class Trainer:
    def __init__(self, recipe: Any, run_dir: Path, *, dist: Any = None, script: Any = None,
                 on_step: Callable[[StepResult], None] | None = None) -> None:
        from deepeyes_cli.models.loading import load_model_and_processor, resolve_model_path
        from deepeyes_cli.train.ckpt import Checkpointer
        from deepeyes_cli.train.engine import DistInfo, EngineConfig, build_engine, engine_kind

        self.recipe, self.rl, self.run_dir, self.on_step = recipe, recipe.rl, Path(run_dir), on_step
        self.dist = dist or DistInfo()
        self.rank, self.world = self.dist.rank, self.dist.world_size
        self.n_updates = check_batch_sizes(self.rl, self.world)
        seed = recipe.run.seed
        _seed_everything(seed + self.rank)
        mcfg = recipe.model.model_copy(update={"path": self.rl.init_from or recipe.model.path})
        self.model_path = resolve_model_path(mcfg.path, cache_dir=recipe.run.cache_dir)
        self.model, self.processor = load_model_and_processor(mcfg, cache_dir=recipe.run.cache_dir)
        if self.rl.freeze_vision_tower:
            for p in self.model.model.visual.parameters():
                p.requires_grad_(False)
        gc = self.rl.gradient_checkpointing
        if gc if gc is not None else recipe.launch.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model.train()
        self.device = str(next(self.model.parameters()).device)
        self.prompts = load_prompts(self.rl.datasets, cache_dir=recipe.run.cache_dir)
        self.sampler = PromptSampler(len(self.prompts), seed)
        la = recipe.launch
        if engine_kind(la.launcher, la.zero_stage) == "deepspeed" and self.rl.micro_batch_max_tokens:
            raise RecipeError("rl.micro_batch_max_tokens (packed micro-batches) does not work with DeepSpeed yet: "
                              "its accumulation window is fixed", hint="unset it, or use launch.zero_stage=0")
        self.engine = build_engine(self.model, EngineConfig(
            kind=engine_kind(la.launcher, la.zero_stage), zero_stage=la.zero_stage, mixed_precision=la.mixed_precision,
            learning_rate=self.rl.learning_rate, weight_decay=self.rl.weight_decay, max_grad_norm=self.rl.max_grad_norm,
            lr_scheduler="constant_with_warmup" if self.rl.warmup_steps else "constant",
            warmup_steps=self.rl.warmup_steps, total_steps=self.total_steps() * self.n_updates,
            micro_batch_size=self.rl.micro_batch_size_per_gpu, offload_optimizer=la.offload_optimizer,
            gradient_accumulation_steps=accumulation_steps(self.rl, self.world),
            offload_param=la.offload_param), self.dist)
        self.updater = Updater(self.engine, self.processor, self.rl, self.device,
                               dtype=next(self.model.parameters()).dtype)
        self.alarms = Alarms(self.rl.alarms, self.rl.max_response_length)
        self.step = 0
        self.script = script
        self.metrics = MetricsWriter(self.run_dir, enabled=self.rank == 0, report_to=self.rl.report_to)
        self.ckpt = Checkpointer(self.run_dir / "checkpoints", self.dist, keep=self.rl.keep_checkpoints)
        if self.ckpt.latest() is not None:
            self.resume()

    # ------------------------------------------------------------------ state

    def client_state(self) -> dict[str, Any]:
        return {"step": self.step, "sampler": self.sampler.state_dict(), "alarms": self.alarms.state_dict()}

    def save(self) -> Path:
        """Engine state, RNG, client state; then an HF export inside the checkpoint."""
        from deepeyes_cli.train.ckpt import export_hf

        path = self.ckpt.save(self.engine, self.step, self.client_state())
        export_hf(self.engine, self.processor, path / "hf", self.dist, source_dir=self.model_path)
        return path

    def resume(self) -> None:
        latest = self.ckpt.latest()
        assert latest is not None
        client = self.ckpt.load(self.engine, latest)
        self.step = int(client["step"])
        self.sampler.load_state_dict(client["sampler"])
        self.alarms.load_state_dict(client["alarms"])
        log.info("resumed from step %d", self.step)

    # ------------------------------------------------------------------ one step

    def _my_prompts(self) -> list[Any]:
        ids = self.sampler.take(self.rl.train_batch_size)  # every rank advances the same cursor
        per = self.rl.train_batch_size // self.world
        return [self.prompts[i] for i in ids[self.rank * per:(self.rank + 1) * per]]

    def start_rollout_engine(self) -> Any:
        """The rollout engine, started on first use (the first step's rollouts start it otherwise)."""
        from deepeyes_cli.train.rl.rollout import make_rollout_engine

        if not hasattr(self, "rollout_engine"):
            self.rollout_engine = make_rollout_engine(self.recipe, self.model, self.processor, self.device, self.script)
            if self.step > 0:  # resumed: the engine loaded rl.init_from, the trainer the checkpoint's weights
                self.rollout_engine.sync(self.model)
        return self.rollout_engine

    async def _rollouts(self, prompts: list[Any], n: int | None = None, temperature: float | None = None
                        ) -> tuple[list[Rollout], dict[str, float]]:
        from deepeyes_cli.agent.ask import build_runtime
        from deepeyes_cli.rewards.reward import RewardScorer, default_cache_path
        from deepeyes_cli.tools.registry import open_toolbox

        rl, recipe = self.rl, self.recipe
        eng = self.start_rollout_engine()
        temp = rl.temperature if temperature is None else temperature
        update: dict[str, Any] = {"temperature": temp, "top_p": rl.top_p if temp else 1.0, "seed": None}
        if "code" in recipe.agent.tools and recipe.sandbox.max_sessions < recipe.agent.concurrency:
            update["concurrency"] = recipe.sandbox.max_sessions  # more would fail as "sandbox busy"
        agent = recipe.agent.model_copy(update=update)
        async with AsyncExitStack() as stack:
            box = await stack.enter_async_context(open_toolbox(recipe))
            rt = build_runtime(recipe.model_copy(update={"agent": agent}), eng.policy, box)
            scorer = RewardScorer.from_config(recipe.reward, default_cache_path(recipe.reward, recipe.run.cache_dir))
            eng.before_rollout(self.model)
            try:
                return await collect(prompts, n or rl.rollouts_per_prompt, rt, scorer)
            finally:
                eng.after_rollout(self.model)

    def _encode(self, rollouts: list[Rollout]) -> list[Encoded]:
        out = []
        for r in rollouts:
            enc = encode_trajectory(r.traj, self.processor)
            if enc.error:
                r.scored.flags.add(INFRA_ERROR)
                r.traj.metadata["rl_error"] = enc.error
            out.append(enc)
        return out

    def train_step(self) -> StepResult:
        t0 = time.perf_counter()
        prompts = self._my_prompts()
        rollouts, timings = asyncio.run(self._rollouts(prompts))
        t1 = time.perf_counter()
        encoded = self._encode(rollouts)
        adv = grpo_advantages([r.scored for r in rollouts], self.rl.stability)
        for r, e in zip(rollouts, encoded, strict=True):
            e.advantage = r.scored.advantage
            r.traj.metadata["rl_advantage"] = r.scored.advantage
            r.traj.metadata["rl_flags"] = sorted(r.scored.flags)
            r.traj.metadata["rl_in_loss"] = r.scored.in_loss and not e.error
        groups: dict[str, list[Encoded]] = {}
        for r, e in zip(rollouts, encoded, strict=True):
            if r.scored.in_loss and not e.error and e.n_targets:
                groups.setdefault(r.scored.group, []).append(e)
        t2 = time.perf_counter()
        per_update = mini_batches(list(groups.values()), self.n_updates)
        stats = self.updater.run(per_update)
        t3 = time.perf_counter()
        sync_s = self.rollout_engine.sync(self.model)
        self.step += 1
        metrics = rollout_metrics(rollouts, self.recipe.agent.tools) | adv.as_metrics() | stats.metrics()
        metrics |= {"time/rollout_s": timings["time/rollout_s"], "time/score_s": timings["time/score_s"],
                    "time/prepare_s": t2 - t1, "time/train_s": t3 - t2, "time/weight_sync_s": sync_s,
                    "time/step_s": time.perf_counter() - t0}
        if self.rl.validation.datasets and self.step % self.rl.test_freq == 0:
            metrics |= self.validate()
        metrics = self._reduce(metrics)
        alarms = self.alarms.update(metrics)
        metrics |= self.alarms.trends()
        if self.rl.rollout.dump:
            self.metrics.dump_rollouts(self.step, [r.traj for r in rollouts], self.rank)
        self.metrics.log(self.step, metrics, alarms)
        stop = self.alarms.should_stop(alarms)
        if self.step % self.rl.save_freq == 0 or stop is not None:
            self.save()
        return StepResult(self.step, metrics, alarms, stop)

    def validate(self) -> dict[str, float]:
        """This rank's share of the held-out prompts, once each, through the same agent
        loop and rewards (greedy by default); dumped as rollouts/val_step_N.jsonl."""
        v = self.rl.validation
        if not hasattr(self, "val_prompts"):
            self.val_prompts = load_prompts(v.datasets, limit=v.max_samples, cache_dir=self.recipe.run.cache_dir)
        mine = self.val_prompts[self.rank::self.world]
        t0 = time.perf_counter()
        rollouts, _ = asyncio.run(self._rollouts(mine, n=1, temperature=v.temperature))
        m = rollout_metrics(rollouts, self.recipe.agent.tools)
        if self.rl.rollout.dump:
            self.metrics.dump_rollouts(self.step, [r.traj for r in rollouts], self.rank, prefix="val_step")
        return {"val/" + k.split("/", 1)[1]: x for k, x in m.items()} | {"time/validation_s": time.perf_counter() - t0}

    def _reduce(self, metrics: dict[str, float]) -> dict[str, float]:
        """Means over ranks (times: the max, the slowest rank sets the pace)."""
        if self.world == 1:
            return metrics
        import torch
        import torch.distributed as dist

        keys = sorted(metrics)
        vals = torch.tensor([metrics[k] for k in keys], dtype=torch.float64)
        finite = torch.isfinite(vals)
        summed = torch.where(finite, vals, torch.zeros_like(vals))
        counts = finite.to(torch.float64)
        mx = torch.where(finite, vals, torch.full_like(vals, -1e300))
        dist.all_reduce(summed)
        dist.all_reduce(counts)
        dist.all_reduce(mx, op=dist.ReduceOp.MAX)
        out = {}
        for i, k in enumerate(keys):
            if k.startswith("time/"):
                out[k] = float(mx[i])
            else:
                out[k] = float(summed[i] / counts[i]) if counts[i] else float("nan")
        return out

    def total_steps(self) -> int:
        """rl.rollout.max_steps, else total_epochs passes over the prompts."""
        if self.rl.rollout.max_steps:
            return self.rl.rollout.max_steps
        return max(1, self.rl.total_epochs * len(self.prompts) // self.rl.train_batch_size)

    def run(self) -> list[StepResult]:
        results = []
        self.engine.train()
        try:
            while self.step < self.total_steps():
                res = self.train_step()
                results.append(res)
                if self.on_step is not None:
                    self.on_step(res)
                if res.stop is not None:
                    break
            if self.step % self.rl.save_freq:
                self.save()
        finally:
            self.metrics.close()
        if self.rank == 0:
            self.metrics.report()
        return results


    def close(self) -> None:
        """Shut a vLLM rollout engine down, after a barrier: the in-process engine's shutdown
        destroys torch.distributed's process groups with its own (a rank still inside a
        collective would hang). Other backends hold nothing."""
        eng = getattr(self, "rollout_engine", None)
        if eng is None or eng.kind != "vllm":
            return
        from deepeyes_cli.train.engine import barrier

        barrier(self.dist)
        asyncio.run(eng.policy.aclose())
        del self.rollout_engine


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
