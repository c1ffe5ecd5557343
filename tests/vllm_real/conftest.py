"""The `vllm` suite: the real vLLM engine (its CPU build is enough) on the tiny model.

Without vLLM the tests skip with the reason; with DEEPEYES_REQUIRE_VLLM=1 (``make test-vllm``
sets it) they fail instead, so a venv that lost vLLM can not pass by skipping everything.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

# vLLM on a CPU: loopback only, offline (the tiny recipe sizes its KV cache: 1 GiB).
CPU_ENV = {"VLLM_HOST_IP": "127.0.0.1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}


def vllm_unavailable() -> str | None:
    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:  # (a bare directory named vllm on sys.path is no vLLM)
        return "vLLM is not installed here (make test-vllm builds a venv with its CPU build)"
    return None


@pytest.fixture(scope="session")
def vllm_ready() -> None:
    why = vllm_unavailable()
    if why is not None:
        if os.environ.get("DEEPEYES_REQUIRE_VLLM") == "1":
            pytest.fail(f"DEEPEYES_REQUIRE_VLLM=1, but {why}")
        pytest.skip(why)
    for key, value in CPU_ENV.items():
        os.environ.setdefault(key, value)
