"""`deepeyes serve` with the vLLM backend (its CPU build is enough: `make test-vllm`): the
tiny model on a real engine behind the API, through the official openai client, plain and
streamed. Its own module so no other engine is loaded while this one starts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "serve"))
from serve_helpers import data_url, question, start_server

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def vllm_server(vllm_ready: None, tmp_path_factory: pytest.TempPathFactory):
    for key, value in {"VLLM_HOST_IP": "127.0.0.1", "TOKENIZERS_PARALLELISM": "false",
                       "VLLM_CPU_KVCACHE_SPACE": "1"}.items():  # GiB; unset, the CPU build takes 13
        os.environ.setdefault(key, value)
    tmp = tmp_path_factory.mktemp("serve-vllm")
    server = start_server(tmp, "policy.backend=vllm", "agent.tools=[]", "policy.vllm.max_model_len=4096",
                          "policy.vllm.enforce_eager=true", "agent.image_max_pixels=50176", "serve.max_tokens=16",
                          timeout=900)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(1200)
def test_vllm_backend_behind_the_api(vllm_server) -> None:
    client = vllm_server.openai(timeout=600)
    out = client.chat.completions.create(model="deepeyes", messages=question(data_url(224, 224)), max_tokens=8,
                                         extra_body={"max_turns": 1})
    turn = out.model_extra["deepeyes"]["trajectory"]["turns"][0]
    assert out.model_extra["deepeyes"]["end_reason"] != "error", out.model_extra["deepeyes"]["trajectory"]["metadata"]
    assert turn["completion_ids"] and len(turn["completion_ids"]) <= 8
    assert out.usage.prompt_tokens > 64  # vLLM expanded the image's pads
    assert vllm_server.health()["backend"] == "vllm"
    chunks = list(client.chat.completions.create(model="deepeyes", messages=question(data_url(224, 224)),
                                                 max_tokens=8, stream=True, extra_body={"max_turns": 1}))
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert any(getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks if c.choices)
