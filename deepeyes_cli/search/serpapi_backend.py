"""SerpAPI backend: Google text search and Google Lens image search with the official client.

Facts about ``serpapi`` 1.2 this module works around (read in its source):

* no base-URL argument — requests go to ``HTTPClient.BASE_DOMAIN`` + path. We set that
  attribute on our own client *instances* (one per thread), never on the class, so other
  clients in the process keep theirs;
* no retries — we retry 429, 5xx, connection errors, time-outs and non-JSON replies with
  exponential backoff and jitter (honouring ``Retry-After``);
* a 200 reply that is not JSON comes back as ``str`` — treated as a malformed reply;
* ``HTTPError``'s text includes the request URL, API key included — never shown or logged:
  we report the status code and SerpAPI's ``error`` field only.

A 200 reply whose ``error`` says Google returned nothing is a valid, empty answer (SerpAPI
counts it as a successful search) and is cached like any other.
"""

from __future__ import annotations

import io
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from deepeyes_cli.errors import SearchError
from deepeyes_cli.search.config import SearchConfig
from deepeyes_cli.search.images import encode_to_fit, fetch_bytes, normalize_thumbnail
from deepeyes_cli.search.types import BackendResult, Hit, sha256_bytes

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)
T = TypeVar("T")
API_KEY_ENV = "SERPAPI_API_KEY"


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def api_key() -> str:
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise SearchError(f"{API_KEY_ENV} is not set",
                          hint=f"export {API_KEY_ENV}=… (serpapi.com/manage-api-key), or use search.mode=replay "
                               "or search.backend=local")
    return key


def scrub(data: Any, secret: str) -> Any:
    """Drop ``api_key`` fields and hide the key wherever else it appears (SerpAPI echoes request parameters).

    A bare occurrence is replaced only for keys of real length (SerpAPI's are 64 characters):
    replacing a short test key everywhere would mangle unrelated text."""
    if isinstance(data, dict):
        return {k: scrub(v, secret) for k, v in data.items() if k != "api_key"}
    if isinstance(data, list):
        return [scrub(v, secret) for v in data]
    if isinstance(data, str) and secret and secret in data:
        data = data.replace(f"api_key={secret}", "api_key=***")
        return data.replace(secret, "***") if len(secret) >= 16 else data
    return data


class SerpapiBackend:
    name = "serpapi"
    paid = True

    def __init__(self, config: SearchConfig) -> None:
        self.config = config
        self.sc = config.serpapi
        self._local = threading.local()
        self._host: Any = None
        if config.image_host == "s3":
            from deepeyes_cli.search.hosts import S3ImageHost

            self._host = S3ImageHost(config.s3)
        elif config.image_host == "url_template":
            from deepeyes_cli.search.hosts import UrlTemplateImageHost

            self._host = UrlTemplateImageHost(config.url_template)

    def params(self, kind: str) -> dict[str, Any]:
        if kind == "text":
            return {"engine": self.sc.text_engine, "hl": self.sc.hl, "gl": self.sc.gl, "location": self.sc.location}
        return {"engine": self.sc.image_engine, "hl": self.sc.hl, "country": self.sc.gl, "type": self.sc.lens_type}

    # ------------------------------------------------------------------ client and retries

    def _client(self, key: str) -> Any:
        client = getattr(self._local, "client", None)
        if client is None or client.api_key != key:
            import serpapi

            client = serpapi.Client(api_key=key, timeout=self.sc.timeout_s)
            client.BASE_DOMAIN = self.sc.base_url.rstrip("/")  # instance attribute: the class keeps its default
            self._local.client = client
        return client

    def _with_retries(self, what: str, call: Callable[[], T]) -> T:
        from serpapi.exceptions import HTTPError
        from serpapi.exceptions import TimeoutError as SerpTimeout

        attempt = 0
        while True:
            try:
                try:
                    return call()
                except SerpTimeout as e:
                    raise _Retryable(f"timed out after {self.sc.timeout_s:g} s") from e
                except HTTPError as e:
                    status = getattr(e, "status_code", -1)
                    message = getattr(e, "error", None)
                    if status == -1:
                        raise _Retryable(f"cannot connect to {self.sc.base_url}") from e
                    detail = f"SerpAPI answered {status}" + (f": {message}" if message else "")
                    if status == 429 or status >= 500:
                        raise _Retryable(detail, _retry_after(e)) from e
                    raise SearchError(detail, hint="check SERPAPI_API_KEY and the account's quota"
                                      if status in (401, 403) else None) from e
            except _Retryable as e:
                if attempt >= self.sc.retries:
                    raise SearchError(f"{what}: {e.reason}" + (f" (after {attempt + 1} attempts)" if attempt else ""),
                                      hint="SerpAPI or the network is failing; retry later") from e
                delay = min(self.sc.max_backoff_s, self.sc.backoff_s * 2 ** attempt * random.uniform(0.5, 1.5))
                if e.retry_after is not None:
                    delay = max(delay, min(e.retry_after, self.sc.max_backoff_s))
                log.info("%s: %s; retry %d/%d in %.2f s", what, e.reason, attempt + 1, self.sc.retries, delay)
                time.sleep(delay)
                attempt += 1

    def _search(self, params: dict[str, Any]) -> dict[str, Any]:
        key = api_key()
        query = {k: v for k, v in params.items() if v is not None}

        def call() -> dict[str, Any]:
            result = self._client(key).search(dict(query))
            if isinstance(result, str):
                raise _Retryable("malformed reply (not JSON)")
            data = dict(result.data)
            if (data.get("search_metadata") or {}).get("status") == "Error":
                raise _Retryable(f"SerpAPI search failed: {data.get('error') or 'unknown error'}")
            return data

        return scrub(self._with_retries("search", call), key)

    # ------------------------------------------------------------------ searches

    def text(self, query: str) -> BackendResult:
        raw = self._search({**self.params("text"), "q": query})
        hits = [Hit(title=str(r.get("title") or ""), url=str(r.get("link") or ""), snippet=r.get("snippet") or None,
                    date=r.get("date") or None)
                for r in raw.get("organic_results") or [] if isinstance(r, dict)]
        return BackendResult(raw=raw, hits=hits, cost=self.config.budget.cost_per_call)

    def image(self, image: Image, sha256: str) -> BackendResult:
        jpeg = encode_to_fit(image, self.config.images.upload_max_bytes)
        where = self._host.publish(jpeg, sha256) if self._host else self._upload(jpeg)
        raw = self._search({**self.params("image"), **where})
        matches = [m for m in raw.get("visual_matches") or [] if isinstance(m, dict)]
        hits = [Hit(title=str(m.get("title") or ""), url=str(m.get("link") or ""), snippet=m.get("source") or None,
                    thumbnail_url=m.get("thumbnail") or m.get("image") or None) for m in matches]
        blobs = self.fetch_thumbnails(hits)
        return BackendResult(raw=raw, hits=hits, blobs=blobs, cost=self.config.budget.cost_per_call)

    def _upload(self, jpeg: bytes) -> dict[str, str]:
        key = api_key()

        def call() -> dict[str, str]:
            buf = io.BytesIO(jpeg)
            buf.name = "image.jpg"  # requests names the multipart file after this
            try:
                reply = self._client(key).upload_image(buf)
            except ValueError as e:  # requests' JSONDecodeError
                raise _Retryable("malformed upload reply (not JSON)") from e
            image_id = reply.get("image_id") if isinstance(reply, dict) else None
            if not image_id:
                raise SearchError("SerpAPI image upload returned no image_id")
            return {"image_id": str(image_id)}

        return self._with_retries("image upload", call)

    def fetch_thumbnails(self, hits: list[Hit]) -> dict[str, bytes]:
        """Download, size-cap and store thumbnails until ``images.max_images`` succeeded (failures are skipped)."""
        import httpx

        cfg = self.config.images
        blobs: dict[str, bytes] = {}
        with httpx.Client(timeout=cfg.timeout_s, headers={"User-Agent": "deepeyes-search"}) as client:
            for hit in hits[: 2 * cfg.max_images]:
                if len(blobs) >= cfg.max_images:
                    break
                if not hit.thumbnail_url or not hit.thumbnail_url.startswith(("http://", "https://")):
                    continue
                data = fetch_bytes(client, hit.thumbnail_url, cfg.max_bytes)
                thumb = normalize_thumbnail(data, cfg.max_side) if data else None
                if thumb is not None:
                    hit.thumbnail = sha256_bytes(thumb)
                    blobs[hit.thumbnail] = thumb
        return blobs


def _retry_after(e: Exception) -> float | None:
    response = getattr(e, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
