"""The HTTP executor: sessions on a shared `deepeyes sandbox serve` (or on the original
MultiModal-Jupyter-Sandbox, which has no ``/sessions``: images then travel as init code)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import SandboxError
from deepeyes_cli.sandbox.base import CellResult
from deepeyes_cli.sandbox.wire import result_from_wire

if TYPE_CHECKING:
    import httpx
    from PIL.Image import Image

HTTP_MARGIN_S = 30.0  # beyond the cell's own timeout: interrupt grace, restart, transfer
_INIT_CODE = ("import base64 as _b64, io as _io\nfrom PIL import Image as _Image\n"
              "{assignments}\ndel _b64, _io, _Image\n")


def _png_b64(img: Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def base_url(url: str) -> tuple[str, str | None]:
    """The server root and the token in the URL, if any: accepts the root, the original's full
    ``…/jupyter_sandbox`` address, and either with ``?token=…`` (as its client is pointed)."""
    from urllib.parse import parse_qs, urlsplit, urlunsplit

    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    path = path[: -len("/jupyter_sandbox")] if path.endswith("/jupyter_sandbox") else path
    token = parse_qs(parts.query).get("token", [None])[0]
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")), token


class HttpSession:
    def __init__(self, executor: HttpExecutor, session_id: str) -> None:
        self.executor = executor
        self.id = session_id
        self.closed = False

    async def run(self, code: str, timeout: float | None = None) -> CellResult:
        if self.closed:
            raise SandboxError(f"session {self.id} is closed", hint="open a new session")
        cell_timeout = timeout if timeout and timeout > 0 else self.executor.timeout_s
        body = await self.executor.post("/jupyter_sandbox", {"session_id": self.id, "code": code,
                                                             "timeout": cell_timeout},
                                        timeout=cell_timeout + HTTP_MARGIN_S)
        return result_from_wire(body)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.executor.sessions.pop(self.id, None)
        try:
            if self.executor.v1_only:
                await self.executor.post("/clear_session", {"session_id": self.id})
            else:
                await self.executor.request("DELETE", f"/sessions/{self.id}", ok=(200, 404))
        except SandboxError:
            pass  # the server reaps idle sessions anyway


class HttpExecutor:
    """:class:`~deepeyes_cli.sandbox.base.SandboxExecutor` talking to a sandbox server."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 60.0, retries: int = 3) -> None:
        self.url, url_token = base_url(url)
        self.token = token or url_token
        self.timeout_s = timeout_s
        self.retries = retries
        self.v1_only = False
        self.sessions: dict[str, HttpSession] = {}  # opened here and not closed yet: ended on aclose()
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=self.timeout_s + HTTP_MARGIN_S,
                                             limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
        return self._client

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                      timeout: float | None = None, ok: tuple[int, ...] = (200,)) -> dict[str, Any]:
        import httpx

        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                resp = await self.client.request(method, path, json=body,
                                                 timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
            except httpx.TransportError as e:
                if attempt < self.retries and isinstance(e, httpx.ConnectError):
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                raise SandboxError(f"the sandbox server at {self.url} did not answer: {type(e).__name__}: {e}",
                                   hint="is `deepeyes sandbox serve` running there, and sandbox.url right?") from e
            if resp.status_code == 503 and attempt < self.retries:  # busy: back off and retry
                await asyncio.sleep(float(resp.headers.get("retry-after", delay)))
                delay *= 2
                continue
            if resp.status_code == 401:
                raise SandboxError("the sandbox server refused our token",
                                   hint="set sandbox.token (e.g. ${SANDBOX_TOKEN}) to the server's --token")
            if resp.status_code not in ok:
                raise _http_error(self.url, path, resp)
            try:
                return dict(resp.json()) if resp.content else {}
            except ValueError as e:  # JSON that is no object, or no JSON (a proxy's page)
                raise SandboxError(f"the sandbox server at {self.url} answered {path} with something that is not "
                                   f"a JSON object: {resp.text[:200]!r}",
                                   hint="is sandbox.url the address of a sandbox server?") from e
        raise SandboxError(f"the sandbox server at {self.url} stayed busy", hint="retry later or add servers")

    async def post(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        return await self.request("POST", path, body, timeout=timeout)

    async def open_session(self, images: Sequence[Image] = (), session_id: str | None = None) -> HttpSession:
        sid = session_id or uuid.uuid4().hex
        encoded = [_png_b64(img) for img in images]
        if not self.v1_only:
            try:
                await self.post("/sessions", {"session_id": sid, "images": encoded},
                                timeout=self.timeout_s + HTTP_MARGIN_S)
                return self._track(HttpSession(self, sid))
            except _NoSuchEndpoint:
                self.v1_only = True
        session = self._track(HttpSession(self, sid))
        if encoded:  # the original server: decode the images in an init cell, as DeepEyesV2 did
            lines = "\n".join(f"image_{i} = _Image.open(_io.BytesIO(_b64.b64decode({data!r})))"
                              for i, data in enumerate(encoded, start=1))
            result = await session.run(_INIT_CODE.format(assignments=lines), self.timeout_s)
            if result.status != "ok":
                await session.close()
                raise SandboxError(f"the session's images could not be loaded: {result.error or result.stderr}")
        return session

    def _track(self, session: HttpSession) -> HttpSession:
        self.sessions[session.id] = session
        return session

    async def aclose(self) -> None:
        """End the sessions still open (their kernels are the server's to free), then disconnect."""
        if self.sessions and self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*(s.close() for s in list(self.sessions.values())),
                                                      return_exceptions=True), HTTP_MARGIN_S)
        self.sessions.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> HttpExecutor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _NoSuchEndpoint(SandboxError):
    pass


def _http_error(url: str, path: str, resp: httpx.Response) -> SandboxError:
    try:
        body = resp.json()
        message = body.get("output") or body.get("detail") or resp.text
    except ValueError:
        message = resp.text
    if resp.status_code in (404, 405) and path == "/sessions":
        return _NoSuchEndpoint(f"{url} has no /sessions endpoint")
    return SandboxError(f"the sandbox server answered {resp.status_code} to {path}: {str(message)[:300]}")
