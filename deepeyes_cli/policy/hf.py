"""The ``transformers`` backend: Qwen2.5-VL in-process, on CPU or GPU.

Concurrent ``generate`` calls (one per trajectory, from the agent loop) are gathered into
batches of up to ``policy.max_batch_size`` conversations with the same sampling
parameters; each batch is left-padded and generated in one worker thread, so the event
loop keeps running tools meanwhile. One thread, because the model keeps per-call state
(``rope_deltas``) between the prefill and the decoding steps. A batch stops early, between
two decoding steps, when every request in it was abandoned (a generation time-out, a
cancelled trajectory) or the policy is closed: a thread stuck in ``generate`` would hold
the worker for the next batch and keep the process alive after Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from deepeyes_cli.policy.base import Completion, Conversation, SamplingParams
from deepeyes_cli.policy.stops import cut_at_stop
from deepeyes_cli.policy.tokens import TokenIds, encode_prompt, expand_image_pads

log = logging.getLogger(__name__)


@dataclass
class _Request:
    conversation: Conversation
    params: SamplingParams
    future: asyncio.Future[Completion]


def build_model_inputs(model: Any, processor: Any, prompts: Sequence[tuple[list[int], list[Any]]],
                       pad_id: int) -> dict[str, Any]:
    """Batch collapsed prompts for the HF model: image features, pads expanded to the grid,
    left padding, and ``mm_token_type_ids`` (M-RoPE positions)."""
    import torch

    ids_token = processor.image_token_id
    images = [img for _, imgs in prompts for img in imgs]
    inputs: dict[str, Any] = {}
    grids: list[list[int]] = []
    if images:
        features = processor.image_processor(images=images, return_tensors="pt")
        inputs["pixel_values"] = features["pixel_values"].to(model.device, model.dtype)
        inputs["image_grid_thw"] = features["image_grid_thw"].to(model.device)
        grids = features["image_grid_thw"].tolist()
    rows, types = [], []
    k = 0
    for ids, imgs in prompts:
        expanded, mm = expand_image_pads(ids, grids[k:k + len(imgs)], processor.merge_size, ids_token)
        k += len(imgs)
        rows.append(expanded)
        types.append(mm)
    width = max(len(r) for r in rows)
    inputs["input_ids"] = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], device=model.device)
    inputs["attention_mask"] = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows],
                                            device=model.device)
    inputs["mm_token_type_ids"] = torch.tensor([[0] * (width - len(t)) + t for t in types], device=model.device)
    return inputs


def _stop_when(should_stop: Callable[[], bool]) -> Any:
    """A transformers stopping criterion that ends every row once ``should_stop()`` is true."""
    import torch
    from transformers import StoppingCriteria

    class Abandoned(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), should_stop(), dtype=torch.bool, device=input_ids.device)

    return Abandoned()


class TransformersPolicy:
    name = "transformers"

    def __init__(self, model: Any, processor: Any, *, max_batch_size: int = 8, batch_wait_s: float = 0.005,
                 model_name: str | None = None) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.ids = TokenIds(self.tokenizer)
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.model_name = model_name
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-generate")
        # the Rust tokenizer is shared by the worker thread and the loop's token counting
        self._tokenizer_lock = threading.Lock()
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = threading.Event()

    def count_text_tokens(self, text: str) -> int:
        with self._tokenizer_lock:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    async def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = loop.create_task(self._serve())
        assert self._queue is not None
        futures = [loop.create_future() for _ in conversations]
        for conv, fut in zip(conversations, futures, strict=True):
            self._queue.put_nowait(_Request(conv, params, fut))
        return list(await asyncio.gather(*futures))

    async def _serve(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            deadline = time.monotonic() + self.batch_wait_s
            while len(batch) < self.max_batch_size:
                left = deadline - time.monotonic()
                try:
                    batch.append(queue.get_nowait() if left <= 0 else await asyncio.wait_for(queue.get(), left))
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
            groups: dict[int, list[_Request]] = {}
            for req in batch:  # only identical sampling parameters share a generate() call
                key = next((k for k, g in groups.items() if g[0].params == req.params), len(groups))
                groups.setdefault(key, []).append(req)
            for group in groups.values():
                live = [r for r in group if not r.future.done()]
                if not live:
                    continue
                def abandoned(live: list[_Request] = live) -> bool:
                    return self._closing.is_set() or all(r.future.done() for r in live)

                try:
                    results = await asyncio.get_running_loop().run_in_executor(
                        self._pool, self._generate_batch, [r.conversation for r in live], live[0].params, abandoned)
                except Exception as e:  # a failed batch fails its requests, not the server
                    log.exception("generation failed")
                    results = [Completion("", "error", error=f"{type(e).__name__}: {e}") for _ in live]
                for req, res in zip(live, results, strict=True):
                    if not req.future.done():
                        req.future.set_result(res)

    def _generate_batch(self, conversations: Sequence[Conversation], params: SamplingParams,
                        should_stop: Callable[[], bool] | None = None) -> list[Completion]:
        import torch

        with self._tokenizer_lock:
            prompts = [encode_prompt(c, self.tokenizer, self.ids) for c in conversations]
        inputs = build_model_inputs(self.model, self.processor, prompts, self.ids.endoftext)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=params.max_tokens, eos_token_id=[self.ids.im_end], pad_token_id=self.ids.endoftext,
            bad_words_ids=self.ids.bad_words, return_dict_in_generate=True, output_scores=True)
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            if params.seed is not None:
                torch.manual_seed(params.seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if should_stop is not None:
            kwargs["stopping_criteria"] = [_stop_when(should_stop)]
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
            scores = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        width = inputs["input_ids"].shape[1]
        lengths = inputs["attention_mask"].sum(-1).tolist()
        return [self._completion(out.sequences[i, width:].tolist(), scores[i].tolist(), int(lengths[i]), params)
                for i in range(len(conversations))]

    def _completion(self, ids: list[int], logprobs: list[float], prompt_tokens: int,
                    params: SamplingParams) -> Completion:
        while ids and ids[-1] == self.ids.endoftext:  # batch padding after a finished row (a bad word)
            ids.pop()
        logprobs = logprobs[: len(ids)]
        if ids and ids[-1] == self.ids.im_end:
            text = self.tokenizer.decode(ids[:-1], skip_special_tokens=False)
            return Completion(text, "stop", None, ids, logprobs, prompt_tokens)
        text, stop = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=False), params.stop)
        if stop is not None:
            if not params.include_stop_str_in_output:
                text = text[: len(text) - len(stop)]
            return Completion(text, "stop", stop, ids, logprobs, prompt_tokens)
        return Completion(text, "length", None, ids, logprobs, prompt_tokens)

    async def aclose(self) -> None:
        self._closing.set()  # a batch in the worker thread stops at its next decoding step
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, RuntimeError):
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)
