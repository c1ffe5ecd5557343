"""The openai backend against a real OpenAI-compatible HTTP server on loopback: request
format (data URLs, prefill, stop strings), retries, time-outs, and the loop over it."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import pytest
from agent_test_helpers import EchoSearch
from PIL import Image

from deepeyes_cli.agent.config import AgentConfig
from deepeyes_cli.agent.loop import AgentRuntime, run_trajectory
from deepeyes_cli.agent.records import Task
from deepeyes_cli.agent.trajectory import Sample
from deepeyes_cli.policy.base import ChatMessage, Conversation, SamplingParams
from deepeyes_cli.policy.openai_api import OpenAIPolicy, wants_vllm_extensions
from deepeyes_cli.testing.fake_openai import FakeOpenAI, Reply

STOPS = ["</code>", "</tool_call>"]


def _conv(prefix: str = "") -> Conversation:
    img = Image.new("RGB", (30, 20), (0, 128, 255))
    return Conversation([ChatMessage("system", ["SYS"]), ChatMessage("user", [img, "\nWhat?"]),
                         ChatMessage("assistant", ['<tool_call>{"name": "search"}</tool_call>']),
                         ChatMessage("user", ["<tool_response>\n1. ", img, "\n[t]\n</tool_response>"])],
                        assistant_prefix=prefix)


def _generate(policy: OpenAIPolicy, conv: Conversation, **params: Any) -> Any:
    async def go() -> Any:
        try:
            return (await policy.generate([conv], SamplingParams(stop=STOPS, **params)))[0]
        finally:
            await policy.aclose()

    return asyncio.run(go())


def test_request_format_with_vllm_extensions() -> None:
    with FakeOpenAI(lambda req: "a</think><code>\n```python\nprint(1)\n```\n</code> trailing") as fake:
        out = _generate(OpenAIPolicy(fake.base_url, vllm_extensions=True), _conv("<think>"), max_tokens=77)
    assert out.finish_reason == "stop" and out.stop_reason == "</code>" and out.prefix_applied
    assert out.text == "a</think><code>\n```python\nprint(1)\n```\n</code>"  # restored stop string
    req = fake.requests[0]
    assert req["model"] == "fake-model" and req["max_tokens"] == 77 and req["stop"] == STOPS
    assert req["continue_final_message"] is True and req["add_generation_prompt"] is False
    assert req["include_stop_str_in_output"] is True and req["skip_special_tokens"] is False
    assert req["spaces_between_special_tokens"] is False and "<size>" in req["bad_words"]
    msgs = req["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert msgs[-1] == {"role": "assistant", "content": "<think>"}
    user = msgs[1]["content"]
    assert user[0]["type"] == "image_url" and user[1] == {"type": "text", "text": "\nWhat?"}
    url = user[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (30, 20)
    assert [p["type"] for p in msgs[3]["content"]] == ["text", "image_url", "text"]
    assert msgs[3]["content"][1]["image_url"]["url"] == url  # encoded once, reused


def test_hosted_apis_get_plain_requests() -> None:
    assert not wants_vllm_extensions("https://api.openai.com/v1")
    assert wants_vllm_extensions("http://127.0.0.1:8000/v1")
    with FakeOpenAI(lambda req: "<think>x</think><answer>4</answer>") as fake:
        out = _generate(OpenAIPolicy(fake.base_url, vllm_extensions=False, image_format="jpeg"), _conv("<think>"))
    req = fake.requests[0]
    assert "continue_final_message" not in req and req["messages"][-1]["role"] == "user"
    assert not out.prefix_applied and out.stop_reason is None and out.text.endswith("<answer>4</answer>")
    assert req["messages"][1]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_retries_on_429_and_5xx_then_succeeds() -> None:
    with FakeOpenAI(lambda req: "<answer>ok</answer>", fail_first=[429, 500]) as fake:
        out = _generate(OpenAIPolicy(fake.base_url, max_retries=3), _conv())
    assert out.finish_reason == "stop" and out.text == "<answer>ok</answer>" and len(fake.requests) == 3


def test_persistent_failure_and_timeout_become_error_completions() -> None:
    with FakeOpenAI(lambda req: "x", fail_first=[503, 503]) as fake:
        out = _generate(OpenAIPolicy(fake.base_url, max_retries=1), _conv())
    assert out.finish_reason == "error" and "HTTP 503" in (out.error or "")
    with FakeOpenAI(lambda req: Reply("late", delay_s=1.0)) as fake:
        out = _generate(OpenAIPolicy(fake.base_url, max_retries=0, timeout_s=0.2), _conv())
    assert out.finish_reason == "error" and "timed out" in (out.error or "")
    with FakeOpenAI(lambda req: Reply("x" * 50, finish_reason="length")) as fake:
        out = _generate(OpenAIPolicy(fake.base_url), _conv())
    assert out.finish_reason == "length"


def test_loop_over_openai_runs_tools_and_answers() -> None:
    def responder(req: dict[str, Any]) -> str:
        turns = sum(1 for m in req["messages"] if m["role"] == "assistant" and m["content"] != "<think>")
        if turns == 0:
            return '<think>search</think>\n<tool_call>\n{"name": "search", "arguments": {"query": "sign"}}\n</tool_call>'
        return "found it</think>\n<answer>STOP</answer>"

    search = EchoSearch(images=1)
    with FakeOpenAI(responder) as fake:
        policy = OpenAIPolicy(fake.base_url)
        rt = AgentRuntime(policy, {"search": search}, AgentConfig(), "SYS", "INSTR")
        task = Task(Sample(id="s", question="What does it say?"), [Image.new("RGB", (50, 40))])

        async def go() -> Any:
            try:
                return await run_trajectory(task, rt)
            finally:
                await policy.aclose()

        traj = asyncio.run(go())
    assert traj.end_reason == "answered" and traj.final_answer == "STOP" and traj.backend == "openai"
    assert traj.messages[2].text.endswith("</tool_call>") and traj.messages[4].text.startswith("<think>found it")
    second = fake.requests[1]["messages"]
    assert second[2]["content"].endswith("</tool_call>") and second[-1] == {"role": "assistant", "content": "<think>"}
    assert [p["type"] for p in second[3]["content"]] == ["text", "image_url", "text"]
    assert traj.turns[0].prompt_tokens and traj.turns[0].completion_tokens
    assert json.loads(traj.model_dump_json())["model"] == "fake-model"


@pytest.mark.parametrize("missing", ["url", "script"])
def test_factory_errors(missing: str) -> None:
    from deepeyes_cli.errors import BackendError
    from deepeyes_cli.policy.factory import make_policy
    from deepeyes_cli.recipe.loader import load_recipe

    backend = "openai" if missing == "url" else "scripted"
    with pytest.raises(BackendError, match="needs a"):
        make_policy(load_recipe("tiny", [f"policy.backend={backend}"]).recipe)


@pytest.mark.skipif(__import__("importlib").util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_backend_without_vllm_says_what_to_install() -> None:
    from deepeyes_cli.errors import BackendError
    from deepeyes_cli.policy.factory import make_policy
    from deepeyes_cli.policy.vllm_engine import engine_args, engine_environment
    from deepeyes_cli.recipe.loader import load_recipe

    recipe = load_recipe("7b", ["policy.backend=vllm"]).recipe
    args = engine_args("/ckpt", recipe)
    assert args["limit_mm_per_prompt"] == {"image": 50} and args["gpu_memory_utilization"] == 0.6
    assert args["mm_processor_kwargs"] == {"size": {"shortest_edge": 3136, "longest_edge": 12845056}}
    assert args["distributed_executor_backend"] == "uni"  # one worker: inside the EngineCore process
    tp2 = load_recipe("7b", ["policy.backend=vllm", "policy.vllm.tensor_parallel_size=2"]).recipe
    assert "distributed_executor_backend" not in engine_args("/ckpt", tp2)
    env = engine_environment(load_recipe("tiny", []).recipe)
    assert env == {"VLLM_LOGGING_STREAM": "ext://sys.stderr", "VLLM_CPU_KVCACHE_SPACE": "1"}  # stdout is data
    with pytest.raises(BackendError, match="needs vLLM") as e:
        make_policy(load_recipe("tiny", ["policy.backend=vllm"]).recipe)
    assert e.value.hint and "gpu extra" in e.value.hint
