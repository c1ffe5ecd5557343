"""The text the model sees, byte for byte as the original environment wrote it, and cache keys."""

from __future__ import annotations

import io

from PIL import Image

from deepeyes_cli.search.format import format_image_results, format_text_results
from deepeyes_cli.search.types import Hit, cache_key, image_sha256, normalize_query


def test_text_results_match_the_original_template() -> None:
    hits = [Hit("Eiffel Tower", "https://a.example/1", snippet="330 m tall.", date="Jan 1, 2024"),
            Hit("No snippet", "https://a.example/2"),
            Hit("Snippet only", "https://a.example/3", snippet="Paris.")]
    assert format_text_results("eiffel tower", hits) == (
        "A Google search for 'eiffel tower' found 3 results:\n\n## Web Results\n"
        "1. [Eiffel Tower](https://a.example/1)\nDate published: Jan 1, 2024\n\n330 m tall."
        "\n\n"
        "2. [No snippet](https://a.example/2)\n"
        "\n\n"
        "3. [Snippet only](https://a.example/3)\n\nParis.")


def test_no_results_still_has_the_header() -> None:
    assert format_text_results("zzz", []) == "A Google search for 'zzz' found 0 results:\n\n## Web Results\n"


def test_image_results_one_placeholder_per_hit() -> None:
    text = format_image_results([Hit("First page"), Hit("Second page")])
    assert text == ("A Google image search for the image found 2 results:\n\n## Web Results\n"
                    "1. <image>\n[First page] \n\n\n2. <image>\n[Second page] \n")
    assert text.count("<image>") == 2


def test_queries_that_google_treats_alike_share_a_key() -> None:
    assert normalize_query("  Eiffel\tTOWER   height ") == "eiffel tower height"
    assert normalize_query("ＡＢＣ") == "abc"  # full-width letters (NFKC)
    k = cache_key("serpapi", "text", "Eiffel  Tower", {"engine": "google", "hl": None})
    assert k == cache_key("serpapi", "text", "eiffel tower", {"engine": "google"})
    assert k != cache_key("serpapi", "text", "eiffel tower", {"engine": "google", "hl": "fr"})
    assert k != cache_key("local", "text", "eiffel tower", {"engine": "google"})
    assert k != cache_key("serpapi", "image", "eiffel tower", {"engine": "google"})


def test_image_key_depends_on_pixels_not_on_encoding() -> None:
    img = Image.new("RGB", (40, 30), (10, 120, 200))
    img.putpixel((3, 4), (255, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    again = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    assert image_sha256(again) == image_sha256(img)
    other = img.copy()
    other.putpixel((5, 5), (0, 255, 0))
    assert image_sha256(other) != image_sha256(img)
