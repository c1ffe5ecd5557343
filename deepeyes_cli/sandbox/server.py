"""`deepeyes sandbox serve`: the pool behind HTTP, compatible with the original sandbox's client.

Endpoints: ``POST /jupyter_sandbox`` (run a cell; an unknown ``session_id`` opens a session),
``POST /sessions`` (open one with images), ``DELETE /sessions/{id}`` and ``POST
/clear_session`` (end one), ``GET /health`` (no auth), ``GET /metrics`` (Prometheus). With a
token, every endpoint but ``/health`` needs ``Authorization: Bearer <token>`` (or ``?token=<token>``
in the URL, for a client that cannot add a header, like the original's).

One process serves every session: the kernels are its child processes and it only relays
messages, so one asyncio process keeps each session with its kernel without any affinity
scheme. ``--workers`` is therefore 1 (see the CLI); scale out with more servers and a
``sandbox.url`` per training node, or a larger ``max_sessions``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ValidationError

from deepeyes_cli import __version__
from deepeyes_cli.errors import SandboxError
from deepeyes_cli.httpd import bearer_ok, is_loopback, listen
from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.wire import EMPTY_CODE, OpenRequest, RunRequest, SessionRequest, result_to_wire

if TYPE_CHECKING:
    from deepeyes_cli.sandbox.pool import KernelPool
    from deepeyes_cli.sandbox.session import LocalSession


def exposure_warning(host: str, token: str | None) -> str | None:
    """A warning when the server listens beyond loopback with no token."""
    if token or is_loopback(host):
        return None
    return (f"the sandbox listens on {host} without a token: anyone who can reach this port can run code "
            "here; pass --token (or sandbox.token)")


class _Sessions:
    """Session ids to sessions, opening each only once even when requests race."""

    def __init__(self, pool: KernelPool) -> None:
        self.pool = pool
        self.opening: dict[str, asyncio.Future[LocalSession]] = {}

    async def get(self, sid: str, images: list[Any] | None = None) -> tuple[LocalSession, list[str]]:
        """The open session ``sid``, or a new one (with ``images``) when there is none. Opening
        with images an id that is already open is an error."""
        pending = self.opening.get(sid)
        session = self.pool.sessions.get(sid)
        if (pending is not None or session is not None) and images is not None:
            raise SandboxError(f"session {sid!r} is already open", hint="use a new session id per trajectory")
        if pending is not None:
            return await asyncio.shield(pending), []
        if session is not None:  # open (one whose kernel failed to restart tries again in run())
            return session, []
        notes = []
        why = self.pool.expired.pop(sid, None)
        if why:
            notes.append(f"this session had ended ({why}); a new one was opened: earlier variables are gone")
        future: asyncio.Future[LocalSession] = asyncio.get_running_loop().create_future()
        self.opening[sid] = future
        try:
            session = await self.pool.open_session(images or [], sid)
            future.set_result(session)
        except BaseException as e:
            future.set_exception(e)
            future.exception()
            raise
        finally:
            self.opening.pop(sid, None)
        return session, notes


Body = TypeVar("Body", bound=BaseModel)


async def json_body(request: Request, model: type[Body]) -> Body:
    """The request's JSON body as ``model``, whatever Content-Type the client sent (``curl -d``
    says form data; the original's clients send JSON without asking). A bad body is FastAPI's 422."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False)) from e


def _decode_images(encoded: list[str]) -> list[Any]:
    from PIL import Image

    images = []
    for i, data in enumerate(encoded, start=1):
        try:
            raw = base64.b64decode(data.split(",", 1)[1] if data.startswith("data:") else data)
            img = Image.open(io.BytesIO(raw))
            img.load()
        except Exception as e:
            raise SandboxError(f"image {i} is not a readable base64 image: {e}") from e
        images.append(img)
    return images


def create_app(cfg: SandboxConfig, token: str | None = None, pool: KernelPool | None = None,
               on_ready: Any = None, on_start_failure: Any = None) -> FastAPI:
    """The app; its lifespan starts the pool (``on_ready()`` then) and closes it. A pool that
    cannot start goes to ``on_start_failure(error)`` when given, else fails the startup."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from deepeyes_cli.sandbox.metrics import SandboxMetrics
    from deepeyes_cli.sandbox.pool import KernelPool

    pool = pool or KernelPool(cfg)
    sessions = _Sessions(pool)
    registry = CollectorRegistry()
    metrics = SandboxMetrics(registry, pool)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await pool.start()
        except SandboxError as e:
            await pool.aclose()
            if on_start_failure is None:
                raise
            on_start_failure(e)
            yield
            return
        if on_ready is not None:
            on_ready()
        yield
        await pool.aclose()

    async def authorize(request: Request) -> None:  # async: FastAPI runs a plain def in a worker thread
        if not token:
            return
        # ?token=… is for clients that cannot send a header, such as the original DeepEyesV2 env: its
        # sandbox URL is configurable, its headers are not.
        if not bearer_ok(request.headers.get("authorization", ""), token, request.query_params.get("token", "")):
            raise HTTPException(401, "a valid bearer token is required (Authorization: Bearer …, or ?token=…)",
                                headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="deepeyes sandbox", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.pool = pool
    guarded = [Depends(authorize)]

    @app.exception_handler(SandboxError)
    async def sandbox_error(request: Request, exc: SandboxError) -> JSONResponse:
        busy = "busy" in exc.message or "ready in time" in exc.message
        return JSONResponse({"status": "error", "output": f"Error: {exc.message}", "execution_time": 0.0,
                             "hint": exc.hint}, status_code=503 if busy else 400,
                            headers={"Retry-After": "5"} if busy else None)

    @app.post("/jupyter_sandbox", dependencies=guarded)
    async def run_cell(request: Request) -> Any:
        req = await json_body(request, RunRequest)
        if not req.code.strip():
            return EMPTY_CODE
        start = time.perf_counter()
        session, notes = await sessions.get(req.session_id)
        result = await session.run(req.code, req.timeout)
        result.notes[:0] = notes
        metrics.observe(result, time.perf_counter() - start)
        return JSONResponse(result_to_wire(result))  # already JSON-ready: skip FastAPI's encoder

    @app.post("/sessions", dependencies=guarded)
    async def open_session(request: Request) -> Any:
        import uuid

        req = await json_body(request, OpenRequest)
        sid = req.session_id or uuid.uuid4().hex
        session, _ = await sessions.get(sid, _decode_images(req.images))
        return {"status": "success", "session_id": session.id}

    async def end(sid: str, missing_ok: bool = False) -> Any:
        session = pool.sessions.get(sid)
        if session is None:
            if missing_ok:
                return {"status": "success", "session_id": sid}
            raise HTTPException(404, f"no open session {sid!r}")
        await session.close()
        pool.expired.pop(sid, None)
        return {"status": "success", "session_id": sid}

    @app.delete("/sessions/{session_id}", dependencies=guarded)
    async def delete_session(session_id: str) -> Any:
        return await end(session_id)

    @app.post("/clear_session", dependencies=guarded)
    async def clear_session(request: Request) -> Any:
        req = await json_body(request, SessionRequest)
        return await end(req.session_id, missing_ok=True)  # the original answers success either way

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok", "version": __version__, **pool.stats()}

    @app.get("/metrics", dependencies=guarded)
    async def prometheus() -> Any:
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(cfg: SandboxConfig, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
          on_ready: Any = None, log_level: str = "warning") -> None:
    """Run the server until interrupted. The socket is bound first, so ``port=0`` works and
    ``on_ready`` gets the real address once the pool's first kernel is up."""
    import uvicorn

    try:
        sock, url = listen(host, port)
    except OSError as e:
        raise SandboxError(f"cannot listen on {host}:{port}: {e.strerror}",
                           hint="choose another --port (0 picks a free one)") from e
    errors: list[SandboxError] = []

    def failed(error: SandboxError) -> None:
        errors.append(error)
        server.should_exit = True

    app = create_app(cfg, token, on_ready=(lambda: on_ready(url)) if on_ready else None, on_start_failure=failed)
    # loop/http "auto": uvloop and httptools, installed with us, save about a millisecond per cell.
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_keep_alive=75)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if errors:
        raise errors[0]
