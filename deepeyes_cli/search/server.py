"""``deepeyes search serve``: the backends, cache and budget of one node as an HTTP service.

SQLite is not safe on a network filesystem, so a multi-node run points every node's
search tool at one server on the head node (``search.url``). The server is a
``SearchService``: the same cache, single-flight and budgets hold for all its clients.
Requests carry the client's run id, so per-run budgets stay per run.

    POST /v1/search/text   {"query": str, "top_k": int?, "run_id": str?}
    POST /v1/search/image  {"image": base64 PNG/JPEG, "top_k": int?, "sample_index": str?, "run_id": str?}
    GET  /v1/summary       counters of this server and the cache statistics
    GET  /healthz

Answers are ``SearchOutcome.to_json()``; failures ``{"error": ..., "hint": ...}`` with 503
(search unavailable), 400 (bad request) or 401 (missing or wrong bearer token).
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.
import base64
import binascii
import hmac
from typing import Any

from deepeyes_cli.errors import DeepeyesError, InputError
from deepeyes_cli.search.service import SearchService


def create_app(service: SearchService, token: str | None = None) -> Any:
    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, Field

    TopK = Field(None, ge=1, le=100)

    class TextBody(BaseModel):
        query: str
        top_k: int | None = TopK
        run_id: str | None = None

    class ImageBody(BaseModel):
        image: str
        top_k: int | None = TopK
        sample_index: str | None = None
        run_id: str | None = None

    class Denied(Exception):
        pass

    def authorize(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise Denied()

    app = FastAPI(title="deepeyes search", docs_url=None, redoc_url=None)

    @app.exception_handler(Denied)
    async def denied(request: Request, exc: Denied) -> JSONResponse:
        return JSONResponse({"error": "missing or wrong bearer token",
                             "hint": "set search.token to the server's --token"}, status_code=401)

    @app.exception_handler(DeepeyesError)
    async def failed(request: Request, exc: DeepeyesError) -> JSONResponse:
        status = 400 if isinstance(exc, InputError) else 503
        return JSONResponse({"error": exc.message, "hint": exc.hint}, status_code=status)

    @app.get("/healthz")
    def healthz() -> Any:
        return {"ok": True, "backend": service.config.backend, "mode": service.config.mode}

    @app.get("/v1/summary", dependencies=[Depends(authorize)])
    def summary() -> Any:
        return {"service": service.summary(), "cache": service.cache.stats()}

    # Plain `def` routes run in FastAPI's thread pool: concurrent identical requests meet in
    # the service's single-flight like threads of one process.
    @app.post("/v1/search/text", dependencies=[Depends(authorize)])
    def search_text(body: TextBody) -> Any:
        return service.search_text(body.query, body.top_k, run_id=body.run_id).to_json()

    @app.post("/v1/search/image", dependencies=[Depends(authorize)])
    def search_image(body: ImageBody) -> Any:
        from PIL.Image import DecompressionBombError

        from deepeyes_cli.search.images import open_image

        try:
            image = open_image(base64.b64decode(body.image, validate=True))
        except (binascii.Error, ValueError, OSError, DecompressionBombError) as e:
            raise InputError(f"the image is not a base64 PNG or JPEG ({type(e).__name__})") from e
        return service.search_image(image, body.top_k, body.sample_index, run_id=body.run_id).to_json()

    return app
