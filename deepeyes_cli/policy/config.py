"""`policy:` section (owned by the policy package): which backend generates, and its options.

The checkpoint itself is ``model:`` (path, dtype, device, image pixels); this section says
how to run it: in-process with transformers, on a vLLM engine, behind any
OpenAI-compatible endpoint, or a scripted replay for tests and demos.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepeyes_cli.recipe.base import Section

Backend = Literal["transformers", "vllm", "openai", "scripted"]


class VLLMOptions(Section):
    """vLLM engine arguments (defaults: the original rollout's)."""

    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.6, gt=0, le=1)
    max_model_len: int = Field(32768, ge=256)
    max_num_batched_tokens: int | None = Field(32768, ge=1)
    enable_prefix_caching: bool = True
    enforce_eager: bool = False
    max_images_per_prompt: int = Field(50, ge=1, description="limit_mm_per_prompt for images.")
    cpu_kvcache_space_gib: float = Field(4.0, gt=0, description="KV cache of vLLM's CPU build "
                                         "(VLLM_CPU_KVCACHE_SPACE, when that is unset; GPUs use "
                                         "gpu_memory_utilization).")


class PolicyConfig(Section):
    backend: Backend = Field("transformers", description="transformers | vllm | openai | scripted.")
    # transformers
    max_batch_size: int = Field(8, ge=1, description="Conversations generated together (transformers).")
    batch_wait_ms: float = Field(5.0, ge=0, description="How long a batch waits for more requests to join.")
    # openai
    url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1.")
    api_key: str | None = Field(None, description="API key (use ${OPENAI_API_KEY}); 'EMPTY' when unset.")
    model_name: str | None = Field(None, description="Served model id; default: the first one the server lists.")
    request_timeout_s: float = Field(600.0, gt=0, description="Per HTTP request.")
    max_retries: int = Field(5, ge=0, description="Retries with backoff on 429, 5xx and connection errors.")
    vllm_extensions: bool | None = Field(
        None, description="Send vLLM's extra request fields (continue_final_message to prefill <think>, "
                          "include_stop_str_in_output, skip_special_tokens, spaces_between_special_tokens, "
                          "bad_words). Default: on, except for "
                          "api.openai.com and other hosted APIs that reject them.")
    image_format: Literal["png", "jpeg"] = Field("png", description="How images travel as data URLs.")
    # vllm
    vllm: VLLMOptions = Field(default_factory=VLLMOptions)
    # scripted
    script: str | None = Field(None, description="JSON file: a list of assistant turns to replay (scripted).")
