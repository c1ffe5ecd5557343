"""Build the recipe's policy backend. Heavy imports happen only for the backend chosen."""

from __future__ import annotations

import os
from typing import Any

from deepeyes_cli.errors import BackendError
from deepeyes_cli.policy.base import Policy

BACKENDS = ("transformers", "vllm", "openai", "scripted")


def make_policy(recipe: Any, backend: str | None = None) -> Policy:
    """The policy ``policy.backend`` (or ``backend``) names, configured from the recipe."""
    cfg = recipe.policy
    name = backend or cfg.backend
    if name == "transformers":
        from deepeyes_cli.models.loading import load_model_and_processor
        from deepeyes_cli.policy.hf import TransformersPolicy

        model, processor = load_model_and_processor(recipe.model, cache_dir=recipe.run.cache_dir)
        return TransformersPolicy(model, processor, max_batch_size=cfg.max_batch_size,
                                  batch_wait_s=cfg.batch_wait_ms / 1000, model_name=recipe.model.path)
    if name == "vllm":
        from deepeyes_cli.policy.vllm_engine import VLLMPolicy

        return VLLMPolicy.from_recipe(recipe)
    if name == "openai":
        from deepeyes_cli.policy.openai_api import OpenAIPolicy

        if not cfg.url:
            raise BackendError("the openai backend needs a server URL",
                               hint="pass --url http://HOST:PORT/v1 or set policy.url")
        return OpenAIPolicy(cfg.url, cfg.api_key or os.environ.get("OPENAI_API_KEY"), model_name=cfg.model_name,
                            timeout_s=cfg.request_timeout_s, max_retries=cfg.max_retries,
                            vllm_extensions=cfg.vllm_extensions, image_format=cfg.image_format)
    if name == "scripted":
        from deepeyes_cli.policy.scripted import ScriptedPolicy

        if not cfg.script:
            raise BackendError("the scripted backend needs a script of assistant turns",
                               hint="set policy.script=turns.json (a JSON list of strings)")
        return ScriptedPolicy.from_file(cfg.script)
    raise BackendError(f"unknown policy backend '{name}'", hint=f"choose one of: {', '.join(BACKENDS)}")
