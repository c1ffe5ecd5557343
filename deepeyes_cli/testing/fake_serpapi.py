"""A fake SerpAPI on 127.0.0.1 speaking SerpAPI's documented JSON, for tests and the demo.

What it answers, shaped after serpapi.com's docs (Google Search API, Google Lens API,
Image API, "Status and Error Codes", "Search Errors"):

* ``GET /search`` (or ``/search.json``) ``?engine=google&q=…`` → ``search_metadata``
  (``status: Success``), ``search_parameters``, ``search_information`` and
  ``organic_results`` (position, title, link, displayed_link, snippet, date on some); a
  query with no results is a 200 with ``organic_results_state: "Fully empty"`` and the
  ``error`` "Google hasn't returned any results for this query.";
* ``?engine=google_lens&url=…|image_id=…[&type=…]`` → ``visual_matches`` (position, title,
  link, source, source_icon, thumbnail, thumbnail_width/height, image, image_width/height),
  or ``exact_matches`` for ``type=exact_matches``; thumbnails point back at this server
  (``/thumbnails/{n}.jpg``, real JPEGs);
* ``POST /image`` (multipart ``image`` + ``api_key``; JPEG, PNG or WebP, ≤ 500 KB) →
  ``{"message": "Image uploaded successfully.", "image_id": …}``, else ``{"error": …}``;
* errors are ``{"error": …}`` with the documented status: 400 (missing parameter), 401
  (invalid key), 429, 500, and 503 with ``search_metadata.status: "Error"``.

Like the real service it does not echo ``api_key`` in ``search_parameters``;
``echo_api_key=True`` makes it do so, to prove that we would strip it anyway.

Faults, consumed one per ``/search`` request: ``"429"`` (hourly throughput limit),
``"429-exhausted"`` (the account has run out of searches), ``"500"``, ``"503"``,
``"malformed"`` (200 with an HTML body, as a broken proxy would send), ``"slow:2.5"``
(sleep, then answer), ``"400"`` (a bad request: not retried), and ``"hold"`` or
``"hold,FAULT"`` (wait until ``release()`` is called, then answer, or take FAULT): a test
waits on a condition while a call is in flight instead of guessing a delay. ``delay_s`` slows every search. ``calls`` counts searches by engine;
``requests`` keeps their parameters. The exact wording of the 429 throughput message is
not documented; the others are SerpAPI's.

    with FakeSerpAPI(faults=["429"]) as fake:
        recipe.search.serpapi.base_url = fake.url

From a shell (the demo): ``python -m deepeyes_cli.testing.fake_serpapi`` prints its URL, then
``SERPAPI_API_KEY=x deepeyes search text "q" -r 7b search.serpapi.base_url=URL``.
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.
import asyncio
import email.parser
import email.policy
import hashlib
import io
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from deepeyes_cli.testing.servers import FakeService

UPLOAD_LIMIT = 500_000
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG, PNG; WebP is RIFF....WEBP
EMPTY_RESULTS = "Google hasn't returned any results for this query."
SEARCH_FAILED = "We couldn't get valid results for this search. Please try again later."
OUT_OF_SEARCHES = "Your account has run out of searches."
THROUGHPUT_LIMIT = "Your account has exceeded its hourly searches limit. Please try again later."


def thumbnail_jpeg(n: int, size: int = 96) -> bytes:
    """A distinct, deterministic picture per ``n`` (a colour plus a bar whose position depends on n)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), ((n * 67) % 256, (n * 131) % 256, (n * 29) % 256))
    ImageDraw.Draw(img).rectangle([(n * 7) % (size - 8), 0, (n * 7) % (size - 8) + 8, size], fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload
    return fields


class FakeSerpAPI(FakeService[str]):
    def __init__(self, faults: Sequence[str] = (), api_key: str | None = None, results: int = 8,
                 delay_s: float = 0.0, oversized_positions: Sequence[int] = (), echo_api_key: bool = False) -> None:
        self.api_key = api_key  # when set, other keys get a 401 like the real service
        self.results = results
        self.delay_s = delay_s
        self.echo_api_key = echo_api_key
        self.oversized = set(oversized_positions)  # positions whose thumbnail is far over any sane size cap
        self._searches = 0
        self.calls: Counter[str] = Counter()
        self.requests: list[dict[str, str]] = []
        self.uploads: list[bytes] = []
        self.thumbnail_hits = 0
        self.holding = 0  # requests that reached a "hold" fault
        self._gate = threading.Event()
        super().__init__(self._app(), faults)

    def release(self) -> None:
        """Let every request held by a ``"hold"`` fault (now or later) go on."""
        self._gate.set()

    @property
    def url(self) -> str:
        return self._server.url

    # ------------------------------------------------------------------ answers

    def _organic(self, q: str) -> list[dict[str, Any]]:
        slug = hashlib.sha1(q.encode()).hexdigest()[:8]
        out = []
        for i in range(1, self.results + 1):
            r: dict[str, Any] = {"position": i, "title": f"{q.title()} — source {i}",
                                 "link": f"https://example.org/{slug}/{i}", "displayed_link": f"example.org › {slug}",
                                 "snippet": f"Snippet {i} about {q}.", "source": "Example"}
            if i % 3 == 1:
                r["date"] = f"Jan {i}, 2024"
            out.append(r)
        return out

    def _visual(self, subject: str) -> list[dict[str, Any]]:
        seed = int(hashlib.sha1(subject.encode()).hexdigest()[:4], 16) % 50
        return [{"position": i, "title": f"Visual match {seed + i}", "link": f"https://example.com/page/{seed + i}",
                 "source": "example.com", "source_icon": f"{self.url}/icons/{seed + i}.png",
                 "thumbnail": f"{self.url}/thumbnails/{seed + i}.jpg?p={i}", "thumbnail_width": 96,
                 "thumbnail_height": 96, "image": f"https://example.com/images/{seed + i}.jpg",
                 "image_width": 1200, "image_height": 900}
                for i in range(1, self.results + 1)]

    def _metadata(self, n: int, status: str) -> dict[str, Any]:
        search_id = f"{n:024x}"
        return {"id": search_id, "status": status, "json_endpoint": f"{self.url}/searches/{search_id}.json",
                "created_at": "2024-01-01 00:00:00 UTC", "processed_at": "2024-01-01 00:00:00 UTC",
                "total_time_taken": 0.01}

    def _app(self) -> Any:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, Response

        app = FastAPI()

        def err(status: int, message: str, **extra: Any) -> JSONResponse:
            return JSONResponse({**extra, "error": message}, status_code=status)

        @app.get("/search")
        @app.get("/search.json")
        async def search(request: Request) -> Any:
            params = dict(request.query_params)
            engine = params.get("engine", "google")
            with self._lock:
                self.calls[engine] += 1
                self.requests.append(params)
                self._searches += 1
                n = self._searches
            if self.api_key is not None and params.get("api_key") != self.api_key:
                return err(401, "Invalid API key. Your API key should be here: https://serpapi.com/manage-api-key")
            fault = self._next_fault()
            if fault and fault.startswith("hold"):
                with self._lock:
                    self.holding += 1
                await asyncio.to_thread(self._gate.wait, 300)
                fault = fault.partition(",")[2] or None
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if fault == "429":
                return err(429, THROUGHPUT_LIMIT)
            if fault == "429-exhausted":
                return err(429, OUT_OF_SEARCHES)
            if fault == "400":
                return err(400, "Missing query `q` parameter.")
            if fault == "500":
                return err(500, "Internal server error.")
            if fault == "503":
                return err(503, SEARCH_FAILED, search_metadata=self._metadata(n, "Error"))
            if fault == "malformed":
                return Response("<html><body>upstream proxy error</body></html>", media_type="text/html")
            if fault and fault.startswith("slow:"):
                await asyncio.sleep(float(fault.split(":", 1)[1]))
            shown = {k: v for k, v in params.items() if k != "api_key" or self.echo_api_key}
            body: dict[str, Any] = {"search_metadata": self._metadata(n, "Success"), "search_parameters": shown}
            if engine == "google":
                if not params.get("q"):
                    return err(400, "Missing query `q` parameter.")
                if params["q"].strip().lower() == "nothing at all":
                    body["search_information"] = {"organic_results_state": "Fully empty",
                                                  "query_displayed": params["q"]}
                    body["error"] = EMPTY_RESULTS
                else:
                    body["search_information"] = {"organic_results_state": "Results for exact spelling",
                                                  "query_displayed": params["q"], "total_results": 1000}
                    body["organic_results"] = self._organic(params["q"])
            elif engine == "google_lens":
                subject = params.get("url") or params.get("image_id")
                if not subject:
                    return err(400, "Missing `url` or `image_id` parameter.")
                matches = self._visual(subject)
                if params.get("type") == "exact_matches":
                    body["exact_matches"] = [{k: m[k] for k in ("position", "title", "link", "source", "source_icon",
                                                                 "thumbnail")} for m in matches]
                else:
                    body["visual_matches"] = matches
            else:
                return err(400, f"Unsupported `{engine}` search engine.")
            return body

        @app.post("/image")
        async def upload(request: Request) -> Any:
            fields = _multipart(request.headers.get("content-type", ""), await request.body())
            key = fields.get("api_key", b"").decode()
            if self.api_key is not None and key != self.api_key:
                return err(401, "Invalid API key. Your API key should be here: https://serpapi.com/manage-api-key")
            image = fields.get("image")
            if image is None:
                return err(400, "Missing `image` field.")
            if not (image.startswith(IMAGE_MAGIC) or (image[:4] == b"RIFF" and image[8:12] == b"WEBP")):
                return err(400, "Invalid image format. Supported format: jpg, jpeg, png, webp")
            if len(image) > UPLOAD_LIMIT:
                return err(400, "Image exceeds the maximum file size of 500 KB.")
            with self._lock:
                self.uploads.append(image)
            return {"message": "Image uploaded successfully.", "image_id": hashlib.sha256(image).hexdigest()[:40]}

        @app.get("/thumbnails/{name}")
        async def thumbnail(name: str, p: int = 0) -> Any:
            n = int(name.split(".")[0])
            with self._lock:
                self.thumbnail_hits += 1
            if p in self.oversized:
                return Response(b"\xff" * 5_000_000, media_type="image/jpeg")
            return Response(thumbnail_jpeg(n), media_type="image/jpeg")

        return app


def main() -> None:
    """``python -m deepeyes_cli.testing.fake_serpapi``: run the fake until Ctrl-C (for demos), print its URL."""
    import time

    with FakeSerpAPI() as fake:
        print(fake.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
