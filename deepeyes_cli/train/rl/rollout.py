"""Rollout backends: policies the agent loop samples from during RL, and how each gets
the trainer's new weights.

- ``transformers`` (CPU, the tiny model; ``HFGenerate`` in the design): the
  transformers backend over the trainer's own module. It shares the weights, so a sync
  is free; generation runs in eval mode, under ``inference_mode``.
- ``vllm`` (GPU, and vLLM's CPU build; ``VLLMColocated``): a vLLM engine in this rank's
  process; after each update the weights are pushed in-process or reloaded
  (``weight_sync``) and the prefix cache reset.
- ``scripted`` (tests): scripted turns, tokenized once, so the trainer has ids to train
  on exactly as a token-level backend would give them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import RecipeError
from deepeyes_cli.policy.base import Completion, Conversation, Policy, SamplingParams
from deepeyes_cli.policy.scripted import Script, ScriptedPolicy
from deepeyes_cli.policy.tokens import TokenIds


class ScriptedTokens:
    """A scripted policy that returns token ids (and no logprobs) like a token backend,
    and the expanded prompt length a token backend reports (the pad check reads it)."""

    name = "scripted"

    def __init__(self, turns: Script, processor: Any) -> None:
        self.inner = ScriptedPolicy(turns)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.ids = TokenIds(self.tokenizer)
        self.model_name = "scripted"

    def _prompt_tokens(self, conversation: Conversation) -> int:
        from deepeyes_cli.policy.tokens import encode_prompt

        ids, images = encode_prompt(conversation, self.tokenizer, self.ids)
        if not images:
            return len(ids)
        grids = self.processor.image_processor(images=images, return_tensors="pt")["image_grid_thw"]
        return len(ids) - len(images) + int((grids.prod(-1) // self.processor.merge_size ** 2).sum())

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    async def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        outs = await self.inner.generate(conversations, params)
        for conv, c in zip(conversations, outs, strict=True):
            c.prompt_tokens = self._prompt_tokens(conv)
            ids = self.tokenizer(c.text, add_special_tokens=False)["input_ids"]
            if c.stop_reason is None and c.text:
                ids = [*ids, self.ids.im_end]  # ended by EOS
            c.token_ids, c.logprobs = list(ids), None
            c.metadata["completion_tokens"] = len(ids)
        return outs

    async def aclose(self) -> None:
        return None


class RolloutEngine:
    """A rollout policy and the way to refresh it from the trainer.

    The vllm backend's engine is colocated (``policy/vllm_colocated.py``): on CUDA it sleeps
    after the rollouts (``rl.rollout.sleep_level``) and, after the update, wakes its weights,
    takes the sync (``rl.rollout.weight_sync``), then wakes its KV cache (``rl_design.md`` §1.3)."""

    def __init__(self, policy: Policy, kind: str, scratch: Path | None = None, *, weight_sync: str = "push",
                 push_kernel: str = "load_weights", sleep_level: int = 0, include_vision: bool = False) -> None:
        self.policy, self.kind, self.scratch = policy, kind, scratch
        self.weight_sync, self.push_kernel, self.sleep_level = weight_sync, push_kernel, sleep_level
        self.include_vision = include_vision or sleep_level == 2  # level 2 discards the tower's weights too
        self.asleep = False

    def before_rollout(self, model: Any) -> None:
        if self.kind == "transformers":
            model.eval()
        elif self.asleep:  # rollouts again without an update in between (validation): wake, re-push
            self.sync(model)

    def after_rollout(self, model: Any) -> None:
        if self.kind == "transformers":
            model.train()
        elif self.kind == "vllm" and self.sleep_level:
            self.policy.call_engine("sleep", level=self.sleep_level)  # type: ignore[attr-defined]
            self.asleep = True

    def sync(self, model: Any) -> float:
        """Push the trainer's weights; seconds spent (0 for a shared module)."""
        import time

        if self.kind != "vllm":
            return 0.0
        from deepeyes_cli.train.rl import weight_sync

        t0 = time.perf_counter()
        pol: Any = self.policy
        if self.asleep:
            pol.call_engine("wake_up", tags=["weights"])
        if self.weight_sync == "push":
            weight_sync.push_in_process(pol, model, self.include_vision, self.push_kernel)
        else:
            assert self.scratch is not None
            weight_sync.push_via_reload(pol, model, self.scratch)
        if self.asleep:
            pol.call_engine("wake_up", tags=["kv_cache"])
            pol.call_engine("reset_prefix_cache")
            self.asleep = False
        return time.perf_counter() - t0


def choose_backend(recipe: Any, device: str) -> str:
    name = recipe.rl.rollout.backend
    if name == "auto":
        return "vllm" if device.startswith("cuda") else "transformers"
    return str(name)


def make_rollout_engine(recipe: Any, model: Any, processor: Any, device: str,
                        script: Script | None = None) -> RolloutEngine:
    from deepeyes_cli.policy.hf import TransformersPolicy

    kind = choose_backend(recipe, device)
    if kind == "transformers":
        pol = TransformersPolicy(model, processor, max_batch_size=recipe.policy.max_batch_size,
                                 batch_wait_s=recipe.policy.batch_wait_ms / 1000, model_name=recipe.model.path)
        return RolloutEngine(pol, kind)
    if kind == "scripted":
        spec = recipe.rl.rollout.script or recipe.policy.script
        if script is None and spec == "builtin:count":
            from deepeyes_cli.testing.rl_task import scripted_turn

            script = scripted_turn(p_tool=0.5, p_copy=0.7)  # draws from `random`, restored on resume
        elif script is None:
            if not spec:
                raise RecipeError("rl.rollout.backend=scripted needs rl.rollout.script (a JSON list of turns)",
                                  hint="or rl.rollout.script=builtin:count")
            script = ScriptedPolicy.from_file(spec).turns
        return RolloutEngine(ScriptedTokens(script, processor), kind)
    if kind == "vllm":
        import os
        import tempfile

        import torch.distributed as tdist

        from deepeyes_cli.policy.vllm_colocated import VLLMColocated
        from deepeyes_cli.train.rl.weight_sync import push_kernel, sync_mode

        ro, cuda = recipe.rl.rollout, device.startswith("cuda")
        world = tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1
        rank = tdist.get_rank() if world > 1 else 0
        sleep_level = ro.sleep_level if cuda else 0  # vLLM's CPU build refuses sleep mode
        vpol = VLLMColocated.from_recipe(recipe.model_copy(update={"model": recipe.model.model_copy(
            update={"path": recipe.rl.init_from or recipe.model.path})}), rank=rank, world_size=world,
            sleep_mode=sleep_level > 0)
        scratch = Path(tempfile.gettempdir()) / f"deepeyes-rl-sync-{os.getpid()}"
        return RolloutEngine(vpol, kind, scratch=scratch, weight_sync=sync_mode(ro.weight_sync),
                             push_kernel=push_kernel(device), sleep_level=sleep_level,
                             include_vision=not recipe.rl.freeze_vision_tower)
    raise RecipeError(f"unknown rl.rollout.backend {kind}", hint="auto, transformers, vllm or scripted")
