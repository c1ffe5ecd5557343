"""The vLLM backend's private event loop (CPU): requests from any caller loop reach an
engine bound to its own loop, cancellation crosses over, and recipe limits the engine
cannot honour are refused up front."""

from __future__ import annotations

import asyncio
import threading

import pytest

from deepeyes_cli.policy.base import SamplingParams
from deepeyes_cli.policy.vllm_engine import EngineLoop, check_limits, sampling_kwargs


def test_callers_on_successive_event_loops_reach_a_loop_bound_engine() -> None:
    engine_loop = EngineLoop()
    state: dict[str, object] = {}

    async def serve(queue: asyncio.Queue) -> None:
        while True:
            x, fut = await queue.get()
            fut.set_result(x + 1)

    async def loop_bound_request(x: int) -> int:
        # like vLLM's AsyncLLM: the first request starts a handler task on its loop, later ones use it
        if "queue" not in state:
            state["queue"] = asyncio.Queue()
            state["handler"] = asyncio.get_running_loop().create_task(serve(state["queue"]))  # type: ignore[arg-type]
        fut = asyncio.get_running_loop().create_future()
        await state["queue"].put((x, fut))  # type: ignore[attr-defined]
        return await fut

    async def twice(x: int) -> list[int]:
        return list(await asyncio.gather(engine_loop.run(loop_bound_request(x)), engine_loop.run(loop_bound_request(x))))

    try:
        assert asyncio.run(asyncio.wait_for(twice(1), 10)) == [2, 2]
        assert asyncio.run(asyncio.wait_for(twice(5), 10)) == [6, 6]  # a new caller loop, the same engine
    finally:
        engine_loop.close()
    assert engine_loop.loop.is_closed()  # the handler task was cancelled, the thread ended


def test_cancelling_the_caller_cancels_the_request_on_the_engine_loop() -> None:
    engine_loop = EngineLoop()
    seen: list[str] = []
    started = threading.Event()

    async def long_request() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append("cancelled")  # where vLLM aborts the request
            raise

    async def caller() -> None:
        task = asyncio.create_task(engine_loop.run(long_request()))
        assert await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(caller())
        engine_loop.run_sync(asyncio.sleep(0))  # let the engine loop process the cancellation
        assert seen == ["cancelled"]
    finally:
        engine_loop.close()


def test_recipe_limits_beyond_the_engine_are_refused_up_front() -> None:
    from deepeyes_cli.errors import RecipeError
    from deepeyes_cli.recipe.loader import load_recipe

    check_limits(load_recipe("7b", ["policy.backend=vllm"]).recipe)
    with pytest.raises(RecipeError, match="max_images_per_prompt") as e:
        check_limits(load_recipe("7b", ["agent.max_images=80"]).recipe)
    assert e.value.hint
    with pytest.raises(RecipeError, match="max_model_len"):
        check_limits(load_recipe("7b", ["agent.max_context_tokens=40000"]).recipe)


def test_sampling_matches_the_original_rollout() -> None:
    kw = sampling_kwargs(SamplingParams(max_tokens=64, stop=["</code>", "</tool_call>"]))
    assert kw["stop"] == ["</code>", "</tool_call>"] and kw["include_stop_str_in_output"] is True
    assert kw["skip_special_tokens"] is False and kw["spaces_between_special_tokens"] is False and kw["n"] == 1
    assert {"<|endoftext|>", "<size>", "<|im_start|>"} <= set(kw["bad_words"])
