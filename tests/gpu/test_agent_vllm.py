"""The vllm backend on a GPU: collapsed image pads (vLLM expands them itself, so image
tokens are never doubled), generated ids kept as generated, and the same greedy tokens as
the transformers backend on the tiny model. Skipped without CUDA and vLLM."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest
from PIL import Image


def _why_not() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "needs vLLM (the gpu extra)"
    import torch

    if not torch.cuda.is_available():
        return "needs a CUDA GPU"
    return None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")]


@pytest.fixture(scope="module")
def backends(tiny_model_dir: Path):
    from deepeyes_cli.models.loading import load_model, load_processor
    from deepeyes_cli.policy.hf import TransformersPolicy
    from deepeyes_cli.policy.vllm_engine import VLLMPolicy
    from deepeyes_cli.recipe.loader import load_recipe

    recipe = load_recipe("tiny", ["model.device=cuda", "policy.backend=vllm", "policy.vllm.max_model_len=4096",
                                  "policy.vllm.gpu_memory_utilization=0.3", "policy.vllm.enforce_eager=true",
                                  "model.dtype=float32"]).recipe
    vllm_policy = VLLMPolicy.from_recipe(recipe)
    hf = TransformersPolicy(load_model(str(tiny_model_dir), dtype="float32", device="cuda"),
                            load_processor(str(tiny_model_dir), min_pixels=recipe.model.min_pixels,
                                           max_pixels=recipe.model.max_pixels))
    yield vllm_policy, hf
    asyncio.run(vllm_policy.aclose())


def _conversation(generated: list[int] | None):
    from deepeyes_cli.policy.base import ChatMessage, Conversation

    a, b = Image.new("RGB", (280, 140), (1, 2, 3)), Image.new("RGB", (140, 280), (200, 2, 1))
    msgs = [ChatMessage("system", ["S"]), ChatMessage("user", [a, "\nWhat is it?"])]
    if generated is not None:
        msgs += [ChatMessage("assistant", ["<code>…</code>"], token_ids=generated),
                 ChatMessage("user", ["Code execution result: …\n\nImages:\n", b])]
    return Conversation(msgs, "<think>" if generated is not None else "")


def test_vllm_matches_transformers_greedy_on_multi_image_multi_turn(backends) -> None:
    from deepeyes_cli.policy.base import SamplingParams

    vllm_policy, hf = backends
    params = SamplingParams(max_tokens=16, temperature=0.0, stop=["</code>", "</tool_call>"])
    first = asyncio.run(vllm_policy.generate([_conversation(None)], params))[0]
    assert first.finish_reason in ("stop", "length") and first.token_ids
    conv = _conversation(list(first.token_ids))
    v = asyncio.run(vllm_policy.generate([conv], params))[0]
    h = asyncio.run(hf.generate([conv], params))[0]
    assert v.token_ids == h.token_ids
    assert v.prompt_tokens == h.prompt_tokens  # pads expanded once: no doubled image tokens


def test_stop_strings_keep_ids_as_generated(backends) -> None:
    from deepeyes_cli.policy.base import SamplingParams

    vllm_policy, _ = backends
    out = asyncio.run(vllm_policy.generate([_conversation(None)], SamplingParams(max_tokens=64, stop=["e"])))[0]
    if out.stop_reason == "e":
        assert out.text.endswith("e")
        assert vllm_policy.tokenizer.decode(out.token_ids).startswith(out.text)
