"""A vLLM engine inside this process, for RL (``rl_design.md`` §1.2, ``VLLMColocated``).

The ``vllm`` policy backend (``vllm_engine.py``) drives ``AsyncLLM``, whose EngineCore is
always another process: nothing this process holds reaches its weights. RL wants the
opposite, the engine beside the trainer so that weights go in without leaving memory. So
this backend builds the synchronous ``LLM`` with ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (its
EngineCore and worker run here) and executor ``uni`` (one process) or
``external_launcher`` (a rank of a torchrun/deepspeed/srun job, each rank its own TP-1
engine), and keeps continuous batching with a pump: a thread that adds the requests the
agent loop's trajectories submit, calls ``llm_engine.step()`` while any is unfinished and
resolves each request's future when it finishes, so tools run while other trajectories
generate.

Prompts, sampling and outputs are the ``vllm`` backend's own (collapsed ids, one pad per
image, ids kept as generated): only the engine differs. :meth:`call` runs an engine
method (``sleep``, ``wake_up``, ``collective_rpc`` …) between pump steps, in the caller's
thread, so ZeRO-3 collectives inside a weight push stay on the training thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from deepeyes_cli.errors import BackendError
from deepeyes_cli.policy.base import Completion, Conversation, SamplingParams
from deepeyes_cli.policy.tokens import TokenIds, encode_prompt
from deepeyes_cli.policy.vllm_engine import (
    completion_from_output,
    engine_args,
    engine_environment,
    engine_model,
    sampling_kwargs,
)


def colocated_args(model_path: str, recipe: Any, *, rank: int, world_size: int, sleep_mode: bool) -> dict[str, Any]:
    """``LLM`` arguments for a rank's engine: the ``vllm`` backend's, in this process."""
    args = engine_args(model_path, recipe)
    args["distributed_executor_backend"] = "external_launcher" if world_size > 1 else "uni"
    args["seed"] = recipe.run.seed + rank  # ranks sample differently (TRL: seed=rank//tp)
    args["enable_sleep_mode"] = sleep_mode
    return args


class _Pump:
    """The thread that steps the engine while requests are unfinished."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.lock = threading.Lock()  # one user of the engine at a time: the pump or call()
        self._cond = threading.Condition()
        self._incoming: list[tuple[str, dict[str, Any], Any, asyncio.AbstractEventLoop, asyncio.Future[Any]]] = []
        self._aborts: list[str] = []
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="vllm-colocated-pump", daemon=True)
        self._thread.start()

    def submit(self, rid: str, prompt: dict[str, Any], sampling: Any, loop: asyncio.AbstractEventLoop,
               fut: asyncio.Future[Any]) -> None:
        with self._cond:
            if self._closed:
                raise BackendError("the vLLM engine is shut down")
            self._incoming.append((rid, prompt, sampling, loop, fut))
            self._cond.notify()

    def abort(self, rid: str) -> None:
        with self._cond:
            self._aborts.append(rid)
            self._cond.notify()

    @staticmethod
    def _settle(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], value: Any = None,
                error: BaseException | None = None) -> None:
        def done() -> None:
            if not fut.done():
                fut.set_exception(error) if error is not None else fut.set_result(value)
        if not loop.is_closed():
            loop.call_soon_threadsafe(done)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._closed or self._incoming or self._aborts or self._waiting):
                    self._cond.wait()
                if self._closed:
                    break
                new, self._incoming = self._incoming, []
                aborts, self._aborts = self._aborts, []
            outs: list[Any] = []
            with self.lock:
                for rid, prompt, sampling, loop, fut in new:
                    try:
                        self.engine.add_request(rid, prompt, sampling)
                    except Exception as e:  # a bad request ends its trajectory, not the others
                        self._settle(loop, fut, error=e)
                        continue
                    self._waiting[rid] = (loop, fut)
                live = [r for r in aborts if self._waiting.pop(r, None) is not None]
                if live:
                    self.engine.abort_request(live)
                try:
                    if self.engine.has_unfinished_requests():
                        outs = self.engine.step()
                except Exception as e:  # the engine failed: every waiting request learns why
                    for loop, fut in self._waiting.values():
                        self._settle(loop, fut, error=e)
                    self._waiting.clear()
            for out in outs:
                if out.finished and out.request_id in self._waiting:
                    loop, fut = self._waiting.pop(out.request_id)
                    self._settle(loop, fut, out)
        for loop, fut in self._waiting.values():
            self._settle(loop, fut, error=BackendError("the vLLM engine is shut down"))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)


class VLLMColocated:
    """The ``Policy`` the RL rollouts sample from on the vllm backend; ``llm`` is a
    ``vllm.LLM`` built in this process."""

    name = "vllm"

    def __init__(self, llm: Any, tokenizer: Any, model_name: str | None = None) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.ids = TokenIds(tokenizer)
        self.model_name = model_name
        self._pump = _Pump(llm.llm_engine)
        self._closed = False

    @classmethod
    def from_recipe(cls, recipe: Any, *, rank: int = 0, world_size: int = 1, sleep_mode: bool = False
                    ) -> VLLMColocated:
        for key, value in engine_environment(recipe).items():
            os.environ.setdefault(key, value)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine must live here, whatever was set
        try:
            from vllm import LLM
        except ImportError as e:
            raise BackendError("rl.rollout.backend=vllm needs vLLM, which is not installed",
                               hint="install the gpu extra (`pip install -e '.[gpu]'`) on a CUDA machine, or vLLM's "
                                    "CPU build (`make vllm-venv`), or use rl.rollout.backend=transformers") from e
        path, processor = engine_model(recipe)
        args = colocated_args(path, recipe, rank=rank, world_size=world_size, sleep_mode=sleep_mode)
        with _kept_rng():  # in-process, vLLM seeds the global RNGs: the trainer's must not move (exact resume)
            llm = LLM(**args)
        return cls(llm, processor.tokenizer, model_name=recipe.model.path)

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    async def _one(self, conversation: Conversation, sampling: Any) -> Completion:
        ids, images = encode_prompt(conversation, self.tokenizer, self.ids)
        prompt: dict[str, Any] = {"prompt_token_ids": ids}  # a vLLM TokensPrompt
        if images:
            prompt["multi_modal_data"] = {"image": images}
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        rid = uuid.uuid4().hex
        self._pump.submit(rid, prompt, sampling, loop, fut)
        try:
            final = await fut
        except asyncio.CancelledError:
            self._pump.abort(rid)
            raise
        except Exception as e:  # engine errors end this trajectory, not the run
            return Completion("", "error", error=f"vLLM: {type(e).__name__}: {e}", prompt_tokens=len(ids))
        return completion_from_output(final, len(ids))

    async def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        if self._closed:
            raise BackendError("the vLLM engine is shut down")
        from vllm import SamplingParams as VllmSamplingParams
        from vllm.sampling_params import RequestOutputKind

        sampling = VllmSamplingParams(**sampling_kwargs(params), output_kind=RequestOutputKind.FINAL_ONLY)
        return list(await asyncio.gather(*(self._one(c, sampling) for c in conversations)))

    def call(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(llm)`` between two engine steps, in this thread."""
        with self._pump.lock:
            return fn(self.llm)

    def call_engine(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """An ``LLM`` method (``sleep``, ``wake_up``, ``reset_prefix_cache``, ``collective_rpc`` …)."""
        return self.call(lambda llm: getattr(llm, method)(*args, **kwargs))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._pump.close)
        llm, self.llm = self.llm, None
        shutdown = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if shutdown is not None and hasattr(shutdown, "shutdown"):
            shutdown.shutdown()


class _kept_rng:
    """Restore python's, numpy's and torch's global RNG states on exit."""

    def __enter__(self) -> None:
        import random

        import numpy as np
        import torch

        self._state = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                       torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)

    def __exit__(self, *exc: object) -> None:
        import random

        import numpy as np
        import torch

        py, npy, cpu, cuda = self._state
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
