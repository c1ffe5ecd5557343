"""`deepeyes serve` as a process: graceful shutdown drains in-flight requests, a bound
off loopback without a key refuses to start, and the tiny model serves through the
transformers backend."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from serve_helpers import data_url, needs_bwrap, question, scripted_overrides, start_server

pytestmark = pytest.mark.slow


@needs_bwrap
def test_sigterm_drains_in_flight_requests_then_exits(tmp_path: Path) -> None:
    server = start_server(tmp_path, *scripted_overrides(tmp_path, "serve.shutdown_grace_s=30"))
    try:
        result: dict[str, Any] = {}

        def slow() -> None:
            try:
                out = server.openai().chat.completions.create(model="deepeyes", messages=question(data_url(232)))
                result["answer"] = out.choices[0].message.content
            except Exception as e:  # reported by the assert below
                result["error"] = repr(e)

        worker = threading.Thread(target=slow)
        worker.start()
        server.wait_for(lambda h: h["sandbox"]["sessions"] == 1)  # in its 2 s cell
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises((openai.APIConnectionError, openai.InternalServerError)):
            server.openai().chat.completions.create(model="deepeyes", messages=question(data_url(32, 32)))
        worker.join(30)
        assert result == {"answer": "42"}, result
        # uvicorn re-raises the signal once it has shut down, so the exit status says SIGTERM
        assert server.proc.wait(30) in (0, -signal.SIGTERM), "".join(server.log[-30:])
        assert "Traceback" not in "".join(server.log)
    finally:
        server.stop()


def test_off_loopback_without_a_key_refuses_to_start(tmp_path: Path, cli: Any) -> None:
    out = cli("serve", "-r", "tiny", "--host", "0.0.0.0", "--port", "0", "policy.backend=scripted", cwd=tmp_path)
    assert out.returncode == 1
    assert "error: serving on 0.0.0.0 needs an API key" in out.stderr and "hint:" in out.stderr


def test_tiny_model_through_the_transformers_backend(tmp_path: Path, tiny_model_dir: Path) -> None:
    server = start_server(tmp_path, "policy.backend=transformers", "agent.tools=[code]", "sandbox.pool_size=0")
    try:
        client = server.openai()
        out = client.chat.completions.create(model="deepeyes", messages=question(data_url(64, 64)), max_tokens=8,
                                             extra_body={"max_turns": 1})
        turns = out.model_extra["deepeyes"]["trajectory"]["turns"]
        assert len(turns) == 1 and turns[0]["completion_tokens"] <= 8
        assert out.usage.prompt_tokens > 64  # the real tokenizer's count: prompt plus image tokens
        assert out.choices[0].finish_reason in ("stop", "length")
        chunks = list(client.chat.completions.create(model="deepeyes", messages=question(data_url(64, 64)),
                                                     max_tokens=8, stream=True, extra_body={"max_turns": 1}))
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        assert any(getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks if c.choices)
        assert httpx.get(server.url + "/health").json()["backend"] == "transformers"
    finally:
        server.stop()



@needs_bwrap
def test_our_tools_in_front_of_an_openai_compatible_vlm(tmp_path: Path) -> None:
    from deepeyes_cli.testing.fake_openai import FakeOpenAI

    def vlm(request: dict[str, Any]) -> str:
        seen = json.dumps(request["messages"])
        if "Code execution result" in seen:
            return "the cell printed the size</think>\n<answer>32x32</answer>"
        return "<think>measure</think>\n<code>\n```python\nprint(image_1.size)\n```\n</code>"

    with FakeOpenAI(vlm) as upstream:
        server = start_server(tmp_path, "policy.backend=openai", f"policy.url={upstream.base_url}",
                              "agent.tools=[code]", "sandbox.pool_size=1", "sandbox.memory_mb=1024")
        try:
            out = server.openai().chat.completions.create(model="deepeyes", messages=question(data_url(32, 32)))
        finally:
            server.stop()
    assert out.choices[0].message.content == "32x32"
    assert out.usage.model_extra["tool_calls"] == 1
    first, second = upstream.requests
    assert "data:image/png;base64," in json.dumps(first["messages"])  # the image went upstream
    assert "(32, 32)" in json.dumps(second["messages"])  # and so did the sandbox's result
