"""A chat request to a :class:`Task`: the question and its images, checked against the
server's limits. Every refusal is a 400 that says which image and why.

The question is the last user message; images come from every user message, in order (a
follow-up question in a chat UI keeps its image). System prompts from the client are not
used (the agent's protocol has its own) and earlier assistant turns are not replayed:
both are reported in ``deepeyes.warnings``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import math
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from deepeyes_cli.agent.records import ImageRefs, Task, sample_id
from deepeyes_cli.agent.trajectory import ImageRef, Sample
from deepeyes_cli.serve.config import ServeConfig
from deepeyes_cli.serve.wire import ApiError, ChatRequest, bad_request

if TYPE_CHECKING:
    import httpx
    from PIL.Image import Image

_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*?);base64,(?P<data>.*)", re.S)


def _question_and_urls(req: ChatRequest) -> tuple[str, list[str], list[str]]:
    warnings = []
    if req.messages[-1].role != "user":
        raise bad_request("the last message must be the user's question (role 'user')", param="messages")
    urls: list[str] = []
    for m in req.messages:
        if m.role != "user" or isinstance(m.content, str) or m.content is None:
            continue
        for part in m.content:
            if part.type == "image_url":
                if part.image_url is None:
                    raise bad_request("an image_url part needs {'url': ...}", param="messages")
                urls.append(part.image_url.url)
    last = req.messages[-1].content
    if isinstance(last, str):
        question = last
    else:
        question = "\n".join(p.text or "" for p in (last or []) if p.type == "text")
    if any(m.role in ("system", "developer") for m in req.messages):
        warnings.append("system messages are not used: the agent's protocol sets its own system prompt")
    if any(m.role == "assistant" for m in req.messages):
        warnings.append("earlier assistant turns are not replayed: each request runs one new trajectory "
                        "on the last user message (images of earlier user messages included)")
    return question.strip(), urls, warnings


_INLINE_PIXELS = 256 * 256  # decoded on the event loop: cheaper than a hop to a worker thread


@contextlib.contextmanager
def _as_400(index: int) -> Iterator[None]:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        yield
    except ApiError:
        raise
    except UnidentifiedImageError as e:
        raise bad_request(f"image {index} is not an image (PNG, JPEG, WebP, GIF or BMP expected)",
                          param="messages", code="invalid_image") from e
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as e:
        raise bad_request(f"image {index} is corrupt or truncated ({e})", param="messages",
                          code="invalid_image") from e


def _open(raw: bytes, index: int, cfg: ServeConfig) -> Image:
    """The image's header, refused when it claims more than ``serve.max_image_pixels`` (before
    any pixel is decoded)."""
    from PIL import Image as PILImage

    with _as_400(index):
        im = PILImage.open(io.BytesIO(raw))
        w, h = im.size
        if w * h > cfg.max_image_pixels:
            raise bad_request(f"image {index} is {w}x{h} = {w * h / 1e6:.1f} megapixels; this server takes at "
                              f"most {cfg.max_image_pixels / 1e6:.1f} megapixels per image (downscale it first)",
                              param="messages", code="image_too_large")
        return im


def _load(im: Image, index: int, max_pixels: int) -> Image:
    """Decode (a large JPEG at a reduced scale) and normalise: downscaled to ``max_pixels``."""
    from deepeyes_cli.protocol.images import normalize_image

    with _as_400(index):
        w, h = im.size
        if im.format == "JPEG" and w * h > max_pixels:
            scale = math.sqrt(max_pixels / (w * h))  # decode at 1/2, 1/4 or 1/8 scale
            im.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
        im.load()
        return normalize_image(im, max_pixels)


def _data_url_bytes(url: str, index: int) -> bytes:
    m = _DATA_URL.fullmatch(url.strip())
    if m is None:
        raise bad_request(f"image {index}: a data URL must look like data:image/png;base64,<data>",
                          param="messages", code="invalid_image")
    try:
        return base64.b64decode(m["data"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise bad_request(f"image {index}: the data URL's base64 is corrupt ({e})", param="messages",
                          code="invalid_image") from e


async def _fetch(url: str, index: int, cfg: ServeConfig, http: httpx.AsyncClient, limit: int) -> bytes:
    import httpx

    try:
        async with http.stream("GET", url, timeout=cfg.image_url_timeout_s, follow_redirects=True) as resp:
            if resp.status_code != 200:
                raise bad_request(f"image {index}: {url} answered HTTP {resp.status_code}", param="messages",
                                  code="image_fetch_failed")
            data = bytearray()
            async for piece in resp.aiter_bytes():
                data += piece
                if len(data) > limit:
                    raise bad_request(f"image {index}: {url} is larger than {limit / 1e6:g} MB", param="messages",
                                      code="image_too_large")
            return bytes(data)
    except httpx.HTTPError as e:
        raise bad_request(f"image {index}: cannot fetch {url} ({type(e).__name__})", param="messages",
                          code="image_fetch_failed") from e


async def load_task(req: ChatRequest, cfg: ServeConfig, max_pixels: int, http: httpx.AsyncClient | None,
                    request_id: str) -> tuple[Task, list[str]]:
    """The request's question and decoded images, and the warnings to return with it."""
    import asyncio

    question, urls, warnings = _question_and_urls(req)
    if not question:
        raise bad_request("the last user message has no question text", param="messages", code="no_question")
    if len(urls) > cfg.max_images:
        raise bad_request(f"{len(urls)} images sent; this server takes at most {cfg.max_images} per request",
                          param="messages", code="too_many_images")
    if not urls and cfg.require_image:
        raise bad_request("no image in the request: send one as a content part "
                          "{'type': 'image_url', 'image_url': {'url': 'data:image/png;base64,...'}}",
                          param="messages", code="no_image")
    limit = int(cfg.max_request_mb * 1e6)
    images = []
    for i, url in enumerate(urls, 1):
        if url.startswith("data:"):
            url = re.sub(r"\s+", "", url)
            raw = _data_url_bytes(url, i)
        elif url.startswith(("http://", "https://")):
            if not cfg.allow_image_urls or http is None:
                raise bad_request(f"image {i}: image URLs are not fetched by this server; send the image as a "
                                  "data URL (data:image/png;base64,...) or start it with serve.allow_image_urls=true",
                                  param="messages", code="image_url_not_allowed")
            raw = await _fetch(url, i, cfg, http, limit)
        else:
            raise bad_request(f"image {i}: expected a data: or http(s): URL, got {url[:40]!r}", param="messages",
                              code="invalid_image")
        header = _open(raw, i, cfg)
        small = header.width * header.height <= _INLINE_PIXELS
        png = header.format == "PNG"
        image = _load(header, i, max_pixels) if small else await asyncio.to_thread(_load, header, i, max_pixels)
        if png and image is header:  # unchanged: its upload is the record's PNG, not encoded again
            encoded = url.split(",", 1)[1] if url.startswith("data:") else base64.b64encode(raw).decode()
            ImageRefs.remember(image, ImageRef(sha256=hashlib.sha256(raw).hexdigest(), width=image.width,
                                               height=image.height, b64=encoded))
        images.append(image)
    sample = Sample(id=sample_id(question, images), question=question, data_source="serve",
                    metadata={"request_id": request_id, **({"user": req.user} if req.user else {})})
    return Task(sample, images), warnings
