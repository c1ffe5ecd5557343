"""The wire format: OpenAI's chat-completions request, as far as an agent can honour it, and
the response, chunk and error objects the official clients parse.

Extensions, sent as extra body fields (``extra_body=`` in the openai client):
``max_turns`` (model turns, capped by the server), ``include_reasoning`` (the turns as
``reasoning_content``; default on when streaming) and ``return_images`` (keep images inline
in the ``deepeyes.trajectory`` field).
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepeyes_cli.errors import InputError
from deepeyes_cli.suggest import closest


class ApiError(Exception):
    """An error answered in OpenAI's format: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                429: "rate_limit_error"}.get(self.status, "server_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str = "invalid_request") -> ApiError:
    return ApiError(400, message, code=code, param=param)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageURL(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(_Strict):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None


class InMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    model: str | None = None
    messages: list[InMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=1)
    user: str | None = None
    metadata: dict[str, str] | None = None
    # deepeyes extensions
    max_turns: int | None = Field(None, ge=1)
    include_reasoning: bool | None = None
    return_images: bool = False


_KNOWN = sorted(ChatRequest.model_fields)
_NOT_HERE = {"tools": "the agent's tools run server-side; the model cannot call client tools",
             "tool_choice": "the agent's tools run server-side", "functions": "the agent's tools run server-side",
             "stop": "stop strings belong to the agent protocol", "logprobs": "log-probabilities are not returned",
             "response_format": "the answer is free text"}


def parse_request(raw: bytes) -> ChatRequest:
    """The body as a :class:`ChatRequest`, or a 400 that names the problem."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad_request(f"the body is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    unknown = [k for k in data if k not in ChatRequest.model_fields]
    if unknown:
        k = unknown[0]
        if k in _NOT_HERE:
            raise bad_request(f"'{k}' is not supported: {_NOT_HERE[k]}", param=k, code="unsupported_parameter")
        near = closest(k, _KNOWN)
        raise bad_request(f"unknown field '{k}'" + (f" (did you mean '{near}'?)" if near else "")
                          + f"; fields: {', '.join(_KNOWN)}", param=k, code="unknown_parameter")
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        where = ".".join(str(x) for x in err["loc"])
        raise bad_request(f"{where}: {err['msg']}", param=where) from e


def validate_model(req: ChatRequest, served: str) -> None:
    if req.model not in (None, "", served):
        raise ApiError(404, f"model '{req.model}' is not served here; GET /v1/models lists '{served}'",
                       code="model_not_found", param="model")


def input_error(e: InputError) -> ApiError:
    return bad_request(e.message + (f" ({e.hint})" if e.hint else ""))


def _envelope(kind: str, rid: str, model: str, created: int) -> dict[str, Any]:
    return {"id": rid, "object": kind, "created": created, "model": model}


def completion_body(rid: str, model: str, created: int, content: str, finish: str, usage: dict[str, Any],
                    reasoning: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return {**_envelope("chat.completion", rid, model, created),
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage, "deepeyes": extra}


def chunk(rid: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None,
          **extra: Any) -> bytes:
    body = {**_envelope("chat.completion.chunk", rid, model, created),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
    return sse(body)


def usage_chunk(rid: str, model: str, created: int, usage: dict[str, Any]) -> bytes:
    return sse({**_envelope("chat.completion.chunk", rid, model, created), "choices": [], "usage": usage})


def sse(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def now() -> int:
    return int(time.time())
