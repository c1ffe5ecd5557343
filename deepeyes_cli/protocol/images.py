"""Images on their way into a trajectory: user files and tool outputs.

Every image passes :func:`normalize_image` once, on arrival: RGB, an aspect ratio the
Qwen2.5-VL processor accepts (<= 200, the original squashes wider ones), a short side of at
least 32 px (the original's minimum), and at most ``agent.image_max_pixels`` (downscaled,
aspect kept). What the model, the sandbox and the record see is then the same image.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from deepeyes_cli.errors import InputError

if TYPE_CHECKING:
    from PIL.Image import Image

MAX_ASPECT = 200
MIN_SIDE = 32
# Files whose header claims more pixels than this are refused before decoding (a 1 GP RGB
# image needs 3 GB); JPEGs are decoded at a reduced scale instead when that fits.
MAX_DECODE_PIXELS = 400_000_000
_REDUCIBLE = ("RGB", "RGBA", "RGBX", "L", "LA", "I", "F", "CMYK")  # modes Image.reduce supports


def _fit(w: int, h: int, max_pixels: int) -> tuple[int, int]:
    if w * h <= max_pixels:
        return w, h
    scale = math.sqrt(max_pixels / (w * h))
    return max(1, math.floor(w * scale)), max(1, math.floor(h * scale))


def normalize_image(image: Image, max_pixels: int) -> Image:
    """RGB, aspect <= 200, short side >= 32 px, at most ``max_pixels``. Returns the same
    object when nothing changes."""
    from PIL import Image as PILImage

    img = image if image.mode == "RGB" else image.convert("RGB")
    w, h = img.size
    if max(w, h) > MAX_ASPECT * min(w, h):  # squash the long side
        w, h = (MAX_ASPECT * h, h) if w > h else (w, MAX_ASPECT * w)
    if min(w, h) < MIN_SIDE:
        scale = MIN_SIDE / min(w, h)
        w, h = max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale))
        w, h = min(w, MAX_ASPECT * h), min(h, MAX_ASPECT * w)
    w, h = _fit(w, h, max_pixels)
    if (w, h) != img.size:
        img = img.resize((w, h), PILImage.Resampling.BICUBIC)
    return img


def load_image(path: str | Path, max_pixels: int) -> Image:
    """Open a user's image file safely: clear errors for missing, non-image and corrupt
    files; huge images are downscaled (JPEGs decoded at a reduced scale, so memory stays
    bounded) instead of crashing."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"image not found: {p}", hint="check the path")
    if not p.is_file():
        raise InputError(f"{p} is not a file", hint="give image files (JPEG, PNG, WebP …)")
    saved = PILImage.MAX_IMAGE_PIXELS
    PILImage.MAX_IMAGE_PIXELS = None  # we check the size ourselves, before decoding
    try:
        with PILImage.open(p) as im:
            w, h = im.size
            if w * h > max_pixels and im.format == "JPEG":
                im.draft("RGB", _fit(w, h, max_pixels))  # decode at 1/2, 1/4 or 1/8 scale
            if im.size[0] * im.size[1] > MAX_DECODE_PIXELS:
                raise InputError(f"{p} is too large to decode safely ({w}x{h} pixels)",
                                 hint="downscale it first, e.g. to under 100 megapixels")
            im.load()
            # shrink by an integer factor before the RGB copy: a huge PNG is then held once, not twice
            factor = math.isqrt(im.size[0] * im.size[1] // max_pixels) if im.size[0] * im.size[1] > max_pixels else 1
            src = im.reduce(factor) if factor >= 2 and im.mode in _REDUCIBLE else im
            img = src.convert("RGB")
    except InputError:
        raise
    except UnidentifiedImageError as e:
        raise InputError(f"{p} is not an image file", hint="use a JPEG, PNG, WebP, GIF or BMP file") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{p} is a corrupt or truncated image ({e})", hint="re-export or re-download it") from e
    finally:
        PILImage.MAX_IMAGE_PIXELS = saved
    return normalize_image(img, max_pixels)


def decode_png(data: bytes, max_pixels: int) -> Image:
    """An image a tool returned as bytes (the sandbox's PNGs), normalised."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(data)) as im:
        im.load()
        return normalize_image(im, max_pixels)


def smart_resize(height: int, width: int, min_pixels: int, max_pixels: int, factor: int = 28) -> tuple[int, int]:
    """The size Qwen2.5-VL's image processor resizes to (sides multiples of ``factor``)."""
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_token_count(width: int, height: int, min_pixels: int, max_pixels: int, factor: int = 28) -> int:
    """Visual tokens one image takes in the model's context (pads after merging)."""
    h, w = smart_resize(height, width, min_pixels, max_pixels, factor)
    return (h // factor) * (w // factor)
