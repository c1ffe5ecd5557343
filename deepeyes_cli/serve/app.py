"""The FastAPI app: ``POST /v1/chat/completions`` (the whole agent loop per request, streamed
or not), ``GET /v1/models``, ``GET /health`` (no auth), ``GET /metrics`` (Prometheus).

With ``serve.api_key`` set, every endpoint but ``/health`` needs ``Authorization: Bearer
<key>``. Errors are OpenAI's error object, so the official clients raise the matching
exception (``BadRequestError``, ``AuthenticationError``, ``RateLimitError`` …).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from deepeyes_cli import __version__
from deepeyes_cli.errors import DeepeyesError, InputError
from deepeyes_cli.httpd import bearer_ok
from deepeyes_cli.serve import stream as text
from deepeyes_cli.serve import wire
from deepeyes_cli.serve.inputs import load_task
from deepeyes_cli.serve.service import AgentService, usage
from deepeyes_cli.serve.wire import ApiError, bad_request

if TYPE_CHECKING:
    from deepeyes_cli.agent.records import LoopEvent
    from deepeyes_cli.agent.trajectory import Trajectory

log = logging.getLogger(__name__)

_POLL_S = 0.25  # how often a non-streaming request checks that its client is still there


async def _read_body(request: Request, limit: int) -> bytes:
    too_big = f"the request is larger than {limit / 1e6:g} MB (serve.max_request_mb); send smaller images"
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise bad_request(too_big, code="request_too_large")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise bad_request(too_big, code="request_too_large")
    return bytes(body)


def _failure(traj: Trajectory) -> ApiError | None:
    """A trajectory the server, not the model, failed: the backend or a tool broke."""
    if traj.end_reason in ("error", "tool_fatal"):
        what = "the model backend" if traj.end_reason == "error" else "a tool"
        return ApiError(502, f"{what} failed: {traj.metadata.get('error') or 'unknown error'}", code="agent_failed")
    return None


def create_app(service: AgentService) -> FastAPI:
    cfg = service.cfg
    http_client: list[Any] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await service.open()
        except DeepeyesError as e:  # said cleanly by serve(), after uvicorn's own report
            service.start_error = e
            raise
        if cfg.allow_image_urls:
            import httpx

            http_client.append(httpx.AsyncClient(headers={"User-Agent": f"deepeyes/{__version__}"}))
        try:
            yield
        finally:
            for c in http_client:
                await c.aclose()
            await service.aclose()

    async def authorize(request: Request) -> None:
        if cfg.api_key and not bearer_ok(request.headers.get("authorization", ""), cfg.api_key):
            raise ApiError(401, "a valid API key is required: Authorization: Bearer <key>", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="deepeyes serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    guarded = [Depends(authorize)]

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        if request.url.path.endswith("/chat/completions"):
            service.metrics.requests.labels(str(exc.status), "unknown").inc()
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(bad_request(str(exc.errors()[:1])).body(), status_code=400)

    @app.get("/health")
    async def health() -> Any:
        return {"version": __version__, **service.health()}

    @app.get("/metrics", dependencies=guarded)
    async def metrics() -> Any:
        body, media = service.metrics.render()
        return Response(body, media_type=media)

    @app.get("/v1/models", dependencies=guarded)
    async def models() -> Any:
        r = service.recipe
        return {"object": "list", "data": [{
            "id": cfg.model_name, "object": "model", "created": 0, "owned_by": "deepeyes",
            "deepeyes": {"backend": r.policy.backend, "model": r.model.path if r.policy.backend != "openai"
                         else r.policy.url, "tools": sorted(service.runtime.tools) if service.runtime else [],
                         "max_turns": cfg.max_turns or r.agent.max_turns, "version": __version__}}]}

    @app.post("/v1/chat/completions", dependencies=guarded)
    async def chat(request: Request) -> Any:
        t0 = time.perf_counter()
        req = wire.parse_request(await _read_body(request, int(cfg.max_request_mb * 1e6)))
        wire.validate_model(req, cfg.model_name)
        rid = "chatcmpl-" + uuid.uuid4().hex
        try:
            task, warnings = await load_task(req, cfg, service.recipe.agent.image_max_pixels,
                                             http_client[0] if http_client else None, rid)
        except InputError as e:
            raise wire.input_error(e) from e
        agent, capped = service.agent_config(req)
        warnings += capped
        include_reasoning = req.include_reasoning if req.include_reasoning is not None else req.stream
        queue_s = await service.acquire()
        events: asyncio.Queue[LoopEvent] = asyncio.Queue()
        job = service.launch(task, agent, events.put_nowait if req.stream else None)
        created = wire.now()

        def extra(traj: Trajectory) -> dict[str, Any]:
            spent = (time.perf_counter() - t0) - queue_s
            u = usage(traj)
            closing = float(traj.metadata.get("sandbox_close_s") or 0.0)
            overhead = max(0.0, spent - u["generation_seconds"] - u["tool_seconds"] - closing)
            service.metrics.seconds.observe(time.perf_counter() - t0)
            service.metrics.overhead.observe(overhead)
            return {"trajectory_id": traj.id, "end_reason": traj.end_reason, "warnings": warnings,
                    "timing": {"queue_s": round(queue_s, 6), "sandbox_close_s": closing,
                               "overhead_s": round(overhead, 6)},
                    "trajectory": text.record(traj, req.return_images)}

        if req.stream:
            return StreamingResponse(_stream(service, job, events, req, rid, created, include_reasoning, extra),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        traj = await _wait(job, request)
        if traj is None:
            service.metrics.requests.labels("499", "false").inc()
            return Response(status_code=499)
        failed = _failure(traj)
        if failed is not None:
            service.metrics.requests.labels(str(failed.status), "false").inc()
            body = failed.body()
            body["deepeyes"] = extra(traj)
            return JSONResponse(body, status_code=failed.status)
        service.metrics.requests.labels("200", "false").inc()
        body = wire.completion_body(rid, cfg.model_name, created, traj.final_answer or "", text.finish_reason(traj),
                                    usage(traj), text.reasoning(traj) if include_reasoning else None, extra(traj))
        return JSONResponse(body)

    return app


async def _wait(job: asyncio.Task[Trajectory], request: Request) -> Trajectory | None:
    """The trajectory, or None (and the trajectory cancelled) when the client went away."""
    while True:
        done, _ = await asyncio.wait({job}, timeout=_POLL_S)
        if done:
            return job.result()
        if await request.is_disconnected():
            job.cancel()
            return None


async def _stream(service: AgentService, job: asyncio.Task[Trajectory], events: asyncio.Queue[LoopEvent],
                  req: wire.ChatRequest, rid: str, created: int, include_reasoning: bool, extra: Any
                  ) -> AsyncIterator[bytes]:
    """SSE chunks: the role, each turn and tool result as ``reasoning_content`` as it happens,
    the answer as ``content``, the finish chunk (with the ``deepeyes`` field), usage, [DONE].
    Cancelled (the client left), it cancels the trajectory, which closes its sandbox session."""
    model = service.cfg.model_name
    finished = False
    try:
        yield wire.chunk(rid, model, created, {"role": "assistant", "content": ""})
        while True:
            event = await events.get()
            if event.kind == "end":
                break
            shown = text.event_text(event) if include_reasoning else None
            if shown:
                yield wire.chunk(rid, model, created, {"reasoning_content": shown}, deepeyes=text.event_record(event))
        traj = await job
        failed = _failure(traj)
        if failed is not None:
            service.metrics.requests.labels(str(failed.status), "true").inc()
            yield wire.sse({**failed.body(), "deepeyes": extra(traj)})
        else:
            if traj.final_answer:
                yield wire.chunk(rid, model, created, {"content": traj.final_answer})
            yield wire.chunk(rid, model, created, {}, text.finish_reason(traj), deepeyes=extra(traj))
            if req.stream_options is not None and req.stream_options.include_usage:
                yield wire.usage_chunk(rid, model, created, usage(traj))
            service.metrics.requests.labels("200", "true").inc()
        yield wire.DONE
        finished = True
    finally:
        if not finished and not job.done():
            job.cancel()  # no await: the response's cancel scope would cancel it again
            service.metrics.requests.labels("499", "true").inc()
