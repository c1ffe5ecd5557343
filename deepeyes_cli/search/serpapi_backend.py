"""SerpAPI backend: Google text search and Google Lens image search with the official client.

Facts about ``serpapi`` 1.2 this module works around (read in its source):

* no base-URL argument — requests go to ``HTTPClient.BASE_DOMAIN`` + path. We set that
  attribute on our own client *instances* (one per thread), never on the class, so other
  clients in the process keep theirs;
* no retries — we retry 429 (throughput), 5xx, connection errors, time-outs and non-JSON
  replies with exponential backoff and jitter (honouring ``Retry-After``). A 429 saying the
  account "has run out of searches" is final: retrying cannot help;
* a 200 reply that is not JSON comes back as ``str`` — treated as a malformed reply;
* the key travels in the query string, so the text of the client's exceptions (``requests``'
  ``HTTPError``, ``ConnectionError``, time-outs) contains the request URL *with the key*.
  Those exceptions never leave this module, not even as ``__cause__``/``__context__`` of
  ours (a traceback under ``--debug`` or in a log would print them): we keep the status
  code and SerpAPI's ``error`` field (scrubbed) and raise our own error outside the
  ``except`` block. ``urllib3`` logs every request line (URL and key) at DEBUG: a filter
  on its logger masks ``api_key=…`` in case a program turns that logging on.

SerpAPI's documented replies (serpapi.com/api-status-and-error-codes, /search-errors,
/image-api): errors are ``{"error": "..."}`` with 400, 401, 403, 404, 410, 429, 500 or 503
(a failed search: 503 with ``search_metadata.status == "Error"``). A 200 reply whose
``error`` says Google returned nothing is a valid, empty answer (SerpAPI counts it as a
successful search) and is cached like any other.
"""

from __future__ import annotations

import io
import logging
import os
import random
import re
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
_KEY_IN_URL = re.compile(r"(api_key=)[^&\s\"']+")


class _MaskKeyInRequestLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "api_key=" in message:
            record.msg, record.args = _KEY_IN_URL.sub(r"\1***", message), None
        return True


_URLLIB3_FILTER = _MaskKeyInRequestLines()


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

            logging.getLogger("urllib3.connectionpool").addFilter(_URLLIB3_FILTER)  # idempotent
            client = serpapi.Client(api_key=key, timeout=self.sc.timeout_s)
            client.BASE_DOMAIN = self.sc.base_url.rstrip("/")  # instance attribute: the class keeps its default
            self._local.client = client
        return client

    def _with_retries(self, what: str, key: str, call: Callable[[], T]) -> T:
        attempt = 0
        while True:
            failure: _Retryable | SearchError
            try:
                return call()
            except (_Retryable, SearchError) as e:  # ours: their text holds no key
                failure = e
            except Exception as e:  # the client's: the text holds the request URL, key included
                failure = _classify(e, key, self.sc.base_url, self.sc.timeout_s)
            # Raised from here, outside the ``except`` blocks, our errors carry no context.
            if isinstance(failure, SearchError):
                raise failure
            if attempt >= self.sc.retries:
                raise SearchError(f"{what}: {failure.reason}" + (f" (after {attempt + 1} attempts)" if attempt else ""),
                                  hint="SerpAPI or the network is failing; retry later")
            delay = min(self.sc.max_backoff_s, self.sc.backoff_s * 2 ** attempt * random.uniform(0.5, 1.5))
            if failure.retry_after is not None:
                delay = max(delay, min(failure.retry_after, self.sc.max_backoff_s))
            log.info("%s: %s; retry %d/%d in %.2f s", what, failure.reason, attempt + 1, self.sc.retries, delay)
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
                raise _Retryable(f"SerpAPI search failed: {scrub(str(data.get('error') or 'unknown error'), key)}")
            return data

        return scrub(self._with_retries("search", key, call), key)

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
        # ``type=exact_matches`` answers under its own key; every other type under visual_matches.
        matches = [m for m in raw.get("visual_matches") or raw.get("exact_matches") or [] if isinstance(m, dict)]
        hits = [Hit(title=str(m.get("title") or ""), url=str(m.get("link") or ""), snippet=m.get("source") or None,
                    date=m.get("date") or None, thumbnail_url=m.get("thumbnail") or m.get("image") or None)
                for m in matches]
        blobs = self.fetch_thumbnails(hits)
        return BackendResult(raw=raw, hits=hits, blobs=blobs, cost=self.config.budget.cost_per_call)

    def _upload(self, jpeg: bytes) -> dict[str, str]:
        key = api_key()

        def call() -> dict[str, str]:
            buf = io.BytesIO(jpeg)
            buf.name = "image.jpg"  # requests names the multipart file after this
            try:
                reply = self._client(key).upload_image(buf)
            except ValueError:  # requests' JSONDecodeError (a reply that is not JSON); no key in it
                raise _Retryable("malformed upload reply (not JSON)") from None
            image_id = reply.get("image_id") if isinstance(reply, dict) else None
            if not image_id:
                why = reply.get("error") if isinstance(reply, dict) else None
                raise SearchError("SerpAPI image upload failed: " + (scrub(str(why), key) if why else "no image_id"))
            return {"image_id": str(image_id)}

        return self._with_retries("image upload", key, call)

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


def _classify(e: Exception, key: str, base_url: str, timeout_s: float) -> _Retryable | SearchError:
    """Turn an exception of the client (or of ``requests`` under it) into ours, keeping nothing of its text."""
    import requests

    status = getattr(e, "status_code", None)
    if status is None and isinstance(e, requests.HTTPError) and e.response is not None:
        status = e.response.status_code
    if isinstance(e, requests.Timeout):
        return _Retryable(f"timed out after {timeout_s:g} s")
    if isinstance(e, requests.ConnectionError) or status == -1:
        return _Retryable(f"cannot connect to {base_url}")
    if status is None:  # another ``requests`` failure (broken chunked reply, bad redirect …)
        return _Retryable(f"request failed ({type(e).__name__})")
    message = getattr(e, "error", None)
    detail = f"SerpAPI answered {status}" + (f": {scrub(str(message), key)}" if message else "")
    if status == 429 and message and "run out of searches" in str(message):
        return SearchError(detail, hint="the SerpAPI account has no searches left this month "
                                        "(serpapi.com/dashboard); replay from the cache meanwhile")
    if status == 429 or status >= 500:
        return _Retryable(detail, _retry_after(e))
    return SearchError(detail, hint="check SERPAPI_API_KEY and the account's quota" if status in (401, 403) else None)


def _retry_after(e: Exception) -> float | None:
    response = getattr(e, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
