"""The ``openai`` backend: any OpenAI-compatible chat endpoint (a vLLM server, GPT-4o,
Gemini or Qwen API models used to synthesize trajectories), through the official SDK.

Images travel as data URLs. The SDK retries 429, 5xx and connection errors with
exponential backoff (honouring ``retry-after``); what still fails becomes an ``error``
completion, which ends that trajectory cleanly. With vLLM's extensions on, the ``<think>``
prefill is sent as a final assistant message with ``continue_final_message`` and the stop
string is kept in the output; hosted APIs cannot prefill, so the turn starts from scratch
(``prefix_applied=False``) and a dropped stop string is restored from the open tag. The
extensions also carry the original rollout's decoding options (bad words, no spaces
between special tokens).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from deepeyes_cli.policy.base import Completion, Conversation, FinishReason, SamplingParams
from deepeyes_cli.policy.stops import restore_dropped_stop
from deepeyes_cli.protocol import tags
from deepeyes_cli.protocol.render import is_image, sanitize

if TYPE_CHECKING:
    from PIL.Image import Image

# Hosted APIs that reject vLLM's extra request fields.
_HOSTED = ("api.openai.com", "generativelanguage.googleapis.com", "aliyuncs.com", "anthropic.com",
           "openrouter.ai", "azure.com")


def wants_vllm_extensions(base_url: str) -> bool:
    host = urlparse(base_url).hostname or ""
    return not any(host == h or host.endswith("." + h) or host.endswith(h) for h in _HOSTED)


class OpenAIPolicy:
    name = "openai"

    def __init__(self, base_url: str, api_key: str | None = None, *, model_name: str | None = None,
                 timeout_s: float = 600.0, max_retries: int = 5, vllm_extensions: bool | None = None,
                 image_format: str = "png") -> None:
        from openai import AsyncOpenAI

        self.base_url = base_url
        self.model_name = model_name
        self.vllm_extensions = wants_vllm_extensions(base_url) if vllm_extensions is None else vllm_extensions
        self.image_format = image_format
        self.timeout_s = timeout_s
        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout_s,
                                  max_retries=max_retries)
        self._urls: dict[int, tuple[weakref.ref[Any], str]] = {}
        self._model_lock = asyncio.Lock()

    # ----------------------------------------------------------------- request building

    def image_url(self, image: Image) -> str:
        """A data URL, encoded once per image object."""
        key = id(image)
        hit = self._urls.get(key)
        if hit is not None and hit[0]() is image:
            return hit[1]
        buf = io.BytesIO()
        fmt = "JPEG" if self.image_format == "jpeg" else "PNG"
        image.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        url = f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"
        self._urls[key] = (weakref.ref(image, functools.partial(self._forget, key)), url)
        return url

    def _forget(self, key: int, _ref: object = None) -> None:
        self._urls.pop(key, None)

    def messages(self, conversation: Conversation) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for m in conversation.messages:
            if m.role == "assistant" or not any(is_image(p) for p in m.content):
                out.append({"role": m.role, "content": "".join(sanitize(p) for p in m.content if isinstance(p, str))})
                continue
            parts: list[dict[str, Any]] = []
            for p in m.content:
                if isinstance(p, str):
                    if p:
                        parts.append({"type": "text", "text": sanitize(p)})
                else:
                    parts.append({"type": "image_url", "image_url": {"url": self.image_url(p)}})
            out.append({"role": m.role, "content": parts})
        if conversation.assistant_prefix and self.vllm_extensions:
            out.append({"role": "assistant", "content": conversation.assistant_prefix})
        return out

    async def model(self) -> str:
        async with self._model_lock:
            if self.model_name is None:
                listed = await self.client.models.list()
                if not listed.data:
                    raise RuntimeError(f"{self.base_url} lists no models")
                self.model_name = listed.data[0].id
            return self.model_name

    # ----------------------------------------------------------------- generation

    async def _one(self, conversation: Conversation, params: SamplingParams) -> Completion:
        import openai

        prefill = bool(conversation.assistant_prefix) and self.vllm_extensions
        extra: dict[str, Any] = {}
        if self.vllm_extensions:
            extra = {"include_stop_str_in_output": params.include_stop_str_in_output, "skip_special_tokens": False,
                     "spaces_between_special_tokens": False, "bad_words": list(tags.BAD_WORDS)}
            if prefill:
                extra.update(continue_final_message=True, add_generation_prompt=False)
        try:
            messages = await asyncio.to_thread(self.messages, conversation)
            resp = await self.client.chat.completions.create(
                model=await self.model(), messages=messages,  # type: ignore[arg-type]
                max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                stop=list(params.stop) or None, seed=params.seed, extra_body=extra or None)
        except openai.APITimeoutError:
            return Completion("", "error", error=f"{self.base_url} timed out after {self.timeout_s:g} s")
        except openai.APIConnectionError as e:  # refused, DNS, TLS … after the retries
            cause = e.__cause__ or e.__context__
            why = f" ({type(cause).__name__}: {cause})" if cause else ""
            return Completion("", "error", error=f"cannot connect to {self.base_url}{why}")
        except openai.APIStatusError as e:
            return Completion("", "error", error=f"{self.base_url} answered HTTP {e.status_code}: {e.message}")
        except (openai.APIError, RuntimeError) as e:
            return Completion("", "error", error=f"{self.base_url}: {e}")
        if not resp.choices:
            return Completion("", "error", error=f"{self.base_url} returned no choices")
        choice = resp.choices[0]
        text = choice.message.content or ""
        stop_reason = getattr(choice, "stop_reason", None)  # vLLM's extension: which stop fired
        stop = None
        if choice.finish_reason == "stop":
            if isinstance(stop_reason, str) and stop_reason in params.stop:
                stop = stop_reason
                if params.include_stop_str_in_output and not text.endswith(stop):
                    text += stop
            elif params.include_stop_str_in_output:
                text, stop = restore_dropped_stop(text, params.stop)
        finish: FinishReason = "length" if choice.finish_reason == "length" else "stop"
        usage = resp.usage
        meta = {"completion_tokens": usage.completion_tokens} if usage else {}
        return Completion(text, finish, stop, prompt_tokens=usage.prompt_tokens if usage else None,
                          metadata=meta, prefix_applied=prefill or not conversation.assistant_prefix)

    async def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        return list(await asyncio.gather(*(self._one(c, params) for c in conversations)))

    async def aclose(self) -> None:
        await self.client.close()
