"""Image plumbing for image search: crops, re-encoding to fit upload limits, thumbnail download."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from deepeyes_cli.errors import InputError, SearchError

if TYPE_CHECKING:
    import httpx
    from PIL.Image import Image


def to_rgb(image: Image) -> Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "P"):
        from PIL import Image as PILImage

        rgba = image.convert("RGBA")
        background = PILImage.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def png_bytes(image: Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def open_image(data: bytes) -> Image:
    from PIL import Image as PILImage

    img = PILImage.open(io.BytesIO(data))
    img.load()
    return img


def parse_box(text: str) -> tuple[int, int, int, int]:
    try:
        x1, y1, x2, y2 = (round(float(v)) for v in text.split(","))
    except ValueError as e:
        raise InputError(f"--box {text!r} is not x1,y1,x2,y2", hint="e.g. --box 10,20,200,180 (pixels)") from e
    return x1, y1, x2, y2


def crop_box(image: Image, box: Sequence[int]) -> Image:
    x1, y1, x2, y2 = box
    x1, x2 = max(0, min(x1, x2)), min(image.width, max(x1, x2))
    y1, y2 = max(0, min(y1, y2)), min(image.height, max(y1, y2))
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise InputError(f"box {tuple(box)} is empty inside a {image.width}x{image.height} image",
                         hint="give x1,y1,x2,y2 in pixels with x1 < x2 and y1 < y2")
    return image.crop((x1, y1, x2, y2))


def encode_to_fit(image: Image, max_bytes: int) -> bytes:
    """JPEG bytes no larger than ``max_bytes``: lower quality first, then shrink.

    When even the first try is several times too big, lowering the quality cannot close the
    gap, so the image is shrunk at once to about the pixel count that fits (a JPEG's size
    grows roughly with its pixel count) instead of in many small steps."""
    img = to_rgb(image)
    while True:
        first = 0
        for quality in (90, 80, 70, 60):
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality, optimize=True)
            if buf.tell() <= max_bytes:
                return buf.getvalue()
            first = first or buf.tell()
            if first > 3 * max_bytes:
                break
        if min(img.size) <= 16:
            raise SearchError(f"cannot encode the image under {max_bytes} bytes")
        scale = min(0.75, 0.95 * (max_bytes / first) ** 0.5)
        img = img.resize((max(16, round(img.width * scale)), max(16, round(img.height * scale))))


def shrink(image: Image, max_side: int) -> Image:
    if max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))


def normalize_thumbnail(data: bytes, max_side: int) -> bytes | None:
    """Decode, cap the size and re-encode (JPEG, or PNG when small); None if it is not an image."""
    try:
        img = shrink(to_rgb(open_image(data)), max_side)
    except Exception:  # PIL raises many kinds for junk bytes; a bad thumbnail is simply skipped
        return None
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def fetch_bytes(client: httpx.Client, url: str, max_bytes: int) -> bytes | None:
    """GET ``url`` and return its body, or None on any failure or when it exceeds ``max_bytes``."""
    import httpx

    try:
        with client.stream("GET", url, follow_redirects=True) as resp:
            if resp.status_code != 200:
                return None
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                return None
            chunks, size = [], 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    return None
                chunks.append(chunk)
            return b"".join(chunks)
    except (httpx.HTTPError, ValueError):
        return None
