"""The ``vllm`` backend: an in-process vLLM engine on GPU (imported lazily; needs the
``gpu`` extra).

Each conversation goes in as *collapsed* token ids (one ``<|image_pad|>`` per image, which
vLLM expands to the image's grid itself) plus its PIL images; generated ids come back as
generated. Stop strings truncate vLLM's text but not its ids, so the ids may run past the
stop string: they are kept as they are (RL trains on them), never re-tokenized from text.
Requests from concurrent trajectories are batched continuously by the engine.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from deepeyes_cli.agent.protocol import tags
from deepeyes_cli.errors import BackendError
from deepeyes_cli.policy.base import Completion, Conversation, FinishReason, SamplingParams
from deepeyes_cli.policy.tokens import TokenIds, encode_prompt


def engine_args(model_path: str, recipe: Any) -> dict[str, Any]:
    """vLLM engine arguments from the recipe (``model:`` and ``policy.vllm``)."""
    opts, model = recipe.policy.vllm, recipe.model
    args: dict[str, Any] = dict(
        model=model_path, revision=model.revision, tensor_parallel_size=opts.tensor_parallel_size,
        gpu_memory_utilization=opts.gpu_memory_utilization, max_model_len=opts.max_model_len,
        enable_prefix_caching=opts.enable_prefix_caching, enforce_eager=opts.enforce_eager,
        limit_mm_per_prompt={"image": opts.max_images_per_prompt}, seed=recipe.run.seed,
        # the same image budget as our processor (load_processor), so grids agree
        mm_processor_kwargs={"size": {"shortest_edge": model.min_pixels, "longest_edge": model.max_pixels}},
    )
    if model.dtype != "auto":
        args["dtype"] = model.dtype
    if opts.max_num_batched_tokens:
        args["max_num_batched_tokens"] = opts.max_num_batched_tokens
    return args


class VLLMPolicy:
    name = "vllm"

    def __init__(self, engine: Any, tokenizer: Any, model_name: str | None = None) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.ids = TokenIds(tokenizer)
        self.model_name = model_name

    @classmethod
    def from_recipe(cls, recipe: Any) -> VLLMPolicy:
        from deepeyes_cli.models.loading import load_processor, resolve_model_path

        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as e:
            raise BackendError("the vllm backend needs vLLM, which is not installed",
                               hint="install the gpu extra (`pip install -e '.[gpu]'`) on a CUDA machine, "
                                    "or use policy.backend=transformers") from e
        cfg = recipe.model
        path = resolve_model_path(cfg.path, cache_dir=recipe.run.cache_dir, revision=cfg.revision,
                                  local_files_only=cfg.local_files_only)
        processor = load_processor(path, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels,
                                   revision=cfg.revision, local_files_only=cfg.local_files_only)
        engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args(path, recipe)))
        return cls(engine, processor.tokenizer, model_name=cfg.path)

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _sampling_params(self, params: SamplingParams) -> Any:
        from vllm import SamplingParams as VllmSamplingParams
        from vllm.sampling_params import RequestOutputKind

        return VllmSamplingParams(
            n=1, max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
            seed=params.seed, stop=list(params.stop), include_stop_str_in_output=params.include_stop_str_in_output,
            skip_special_tokens=False, bad_words=list(tags.BAD_WORDS), logprobs=0,
            output_kind=RequestOutputKind.FINAL_ONLY)

    async def _one(self, conversation: Conversation, sampling: Any) -> Completion:
        ids, images = encode_prompt(conversation, self.tokenizer, self.ids)
        prompt: dict[str, Any] = {"prompt_token_ids": ids}
        if images:
            prompt["multi_modal_data"] = {"image": images}
        final = None
        try:
            async for out in self.engine.generate(prompt, sampling, request_id=uuid.uuid4().hex):
                final = out
        except asyncio.CancelledError:
            raise
        except Exception as e:  # engine errors end this trajectory, not the run
            return Completion("", "error", error=f"vLLM: {type(e).__name__}: {e}", prompt_tokens=len(ids))
        if final is None or not final.outputs:
            return Completion("", "error", error="vLLM returned no output", prompt_tokens=len(ids))
        o = final.outputs[0]
        token_ids = list(o.token_ids)
        text = o.text
        if text.endswith(tags.IM_END):
            text = text[: -len(tags.IM_END)]
        stop = o.stop_reason if isinstance(o.stop_reason, str) else None
        finish: FinishReason = "length" if o.finish_reason == "length" else "stop" if o.finish_reason == "stop" else "error"
        logprobs = None
        if o.logprobs:
            logprobs = [float(step[t].logprob) for t, step in zip(token_ids, o.logprobs, strict=False) if t in step]
        return Completion(text, finish, stop, token_ids, logprobs, prompt_tokens=len(final.prompt_token_ids or ids),
                          error=None if finish != "error" else f"vLLM finish_reason={o.finish_reason}")

    async def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        sampling = self._sampling_params(params)
        return list(await asyncio.gather(*(self._one(c, sampling) for c in conversations)))

    async def aclose(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown is not None:
            shutdown()
