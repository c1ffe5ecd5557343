"""Upload re-encoding, crops, thumbnail capping, key scrubbing."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from deepeyes_cli.errors import InputError
from deepeyes_cli.search.images import crop_box, encode_to_fit, normalize_thumbnail, parse_box, to_rgb
from deepeyes_cli.search.serpapi_backend import scrub


def test_large_noisy_image_fits_the_upload_limit() -> None:
    noisy = Image.frombytes("RGB", (1600, 1200), os.urandom(1600 * 1200 * 3))
    data = encode_to_fit(noisy, 500_000)
    assert len(data) <= 500_000
    back = Image.open(io.BytesIO(data))
    assert back.format == "JPEG" and back.width / back.height == pytest.approx(4 / 3, rel=0.02)
    small = Image.new("RGB", (64, 64), (1, 2, 3))
    assert Image.open(io.BytesIO(encode_to_fit(small, 500_000))).size == (64, 64)


def test_crop_box_and_parse_box() -> None:
    img = Image.new("RGB", (100, 80))
    assert parse_box("10,20.4,60,70") == (10, 20, 60, 70)
    assert crop_box(img, (60, 70, 10, 20)).size == (50, 50)  # corners in any order
    assert crop_box(img, (-5, -5, 500, 500)).size == (100, 80)  # clipped to the image
    with pytest.raises(InputError):
        parse_box("1,2,3")
    with pytest.raises(InputError, match="empty"):
        crop_box(img, (10, 10, 10, 50))


def test_thumbnails_are_capped_and_junk_is_dropped() -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (2000, 1000), (0, 0, 0, 0)).save(buf, format="PNG")
    thumb = normalize_thumbnail(buf.getvalue(), 512)
    assert thumb is not None and Image.open(io.BytesIO(thumb)).size == (512, 256)
    assert normalize_thumbnail(b"<html>nope</html>", 512) is None
    assert to_rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)


def test_scrub_removes_the_key_everywhere() -> None:
    raw = {"search_parameters": {"q": "x", "api_key": "sk-123456"},
           "links": ["https://serpapi.com/search?api_key=sk-123456&q=x"], "n": 3}
    clean = scrub(raw, "sk-123456")
    assert "sk-123456" not in repr(clean) and clean["n"] == 3 and "api_key" not in clean["search_parameters"]


def test_scrub_leaves_text_alone_for_a_short_test_key() -> None:
    raw = {"search_parameters": {"api_key": "x"}, "link": "https://example.org/?api_key=x&q=1"}
    assert scrub(raw, "x") == {"search_parameters": {}, "link": "https://example.org/?api_key=***&q=1"}
