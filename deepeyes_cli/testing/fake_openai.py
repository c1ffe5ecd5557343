"""A fake OpenAI-compatible server (``/v1/models``, ``/v1/chat/completions``) on 127.0.0.1.

It speaks the documented wire format (JSON and server-sent-event streaming, ``stop``,
``usage``, error bodies), so clients under test use their real HTTP code. What it answers
is decided by a ``responder`` function; failures are injected by status code.

    def judge(request):                     # the parsed JSON request body
        return "<think>ok</think> \\boxed{Yes}"

    with FakeOpenAI(judge, fail_first=[429, 500]) as fake:
        client = OpenAI(base_url=fake.base_url, api_key="x")
        ...
        assert len(fake.requests) == 3
"""

# No `from __future__ import annotations`: FastAPI must see real annotations on the
# route functions below, which are defined inside a method.
import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deepeyes_cli.testing.servers import FakeService


@dataclass
class Reply:
    """A responder may return a plain string, or a Reply for finer control."""

    content: str
    finish_reason: str = "stop"
    delay_s: float = 0.0  # sleep before answering (time-out tests)
    status: int = 200  # a non-200 status sends an OpenAI-style error body instead


Responder = Callable[[dict[str, Any]], "str | Reply"]


def _apply_stop(text: str, stop: Sequence[str] | str | None) -> tuple[str, str, str | None]:
    """Cut ``text`` at the earliest stop string, as OpenAI does (the stop string is excluded)."""
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    cut, which = len(text), None
    for s in stops:
        i = text.find(s)
        if s and 0 <= i < cut:
            cut, which = i, s
    return text[:cut], ("stop" if which is not None else ""), which


class FakeOpenAI(FakeService[int]):
    def __init__(self, responder: Responder, model: str = "fake-model", fail_first: Sequence[int] = (),
                 api_key: str | None = None) -> None:
        self.responder = responder
        self.model = model
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []  # every chat request body received, failures included
        super().__init__(self._app(), fail_first)  # fault = the HTTP status of the next request

    @property
    def base_url(self) -> str:
        return f"{self._server.url}/v1"

    def _app(self) -> Any:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, StreamingResponse

        app = FastAPI()

        def error(status: int, message: str) -> JSONResponse:
            kind = {401: "authentication_error", 429: "rate_limit_error"}.get(status, "server_error")
            return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status,
                                headers={"retry-after": "0"} if status == 429 else None)

        def unauthorized(request: Request) -> JSONResponse | None:
            if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
                return error(401, "invalid api key")
            return None

        @app.get("/v1/models")
        async def models(request: Request) -> Any:
            return unauthorized(request) or {"object": "list", "data": [
                {"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Any:
            body = await request.json()
            with self._lock:
                self.requests.append(body)
            denied = unauthorized(request)
            if denied is not None:
                return denied
            status = self._next_fault()
            if status is not None:
                return error(status, f"injected failure {status}")
            reply = await asyncio.to_thread(self.responder, body)
            if isinstance(reply, str):
                reply = Reply(reply)
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.status != 200:
                return error(reply.status, reply.content or "error")
            text, stopped, _ = _apply_stop(reply.content, body.get("stop"))
            finish = "stop" if stopped else reply.finish_reason
            cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
            prompt_tokens = len(json.dumps(body.get("messages", []))) // 4
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": max(1, len(text) // 4),
                     "total_tokens": prompt_tokens + max(1, len(text) // 4)}
            if body.get("stream"):
                def events() -> Any:
                    base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": body.get("model", self.model)}
                    for i in range(0, len(text), 8) or [0]:
                        delta = {"content": text[i:i + 8]} if text else {"content": ""}
                        if i == 0:
                            delta["role"] = "assistant"
                        yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': delta, 'finish_reason': None}]})}\n\n"
                    yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': finish}], 'usage': usage})}\n\n"
                    yield "data: [DONE]\n\n"

                return StreamingResponse(events(), media_type="text/event-stream")
            return {
                "id": cid, "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", self.model),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": finish}],
                "usage": usage,
            }

        return app
