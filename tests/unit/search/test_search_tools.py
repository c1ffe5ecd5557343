"""The `search` and `image_search` tools over the offline backend (no network)."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from deepeyes_cli.recipe.loader import load_recipe
from deepeyes_cli.search.cache import CacheEntry, SearchCache
from deepeyes_cli.search.types import Hit, sample_cache_key
from deepeyes_cli.tools.base import Tool, ToolContext, call_tool
from deepeyes_cli.tools.search import build_search_tools, close_search_tools, search_summary


def _tools(tmp_path: Path, *overrides: str) -> list[Tool]:
    recipe = load_recipe("tiny", [f"search.cache.path={tmp_path / 'cache.sqlite'}", f"run.cache_dir={tmp_path}",
                                  *overrides]).recipe
    return build_search_tools(recipe)


def _picture(seed: int) -> Image.Image:
    rng = random.Random(seed)
    img = Image.new("RGB", (96, 96), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(5):
        x, y = rng.randrange(70), rng.randrange(70)
        draw.rectangle([x, y, x + rng.randrange(10, 40), y + rng.randrange(10, 40)],
                       fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def test_tools_follow_the_protocol(tmp_path: Path) -> None:
    search, image_search = _tools(tmp_path)
    assert isinstance(search, Tool) and isinstance(image_search, Tool)
    assert (search.name, image_search.name) == ("search", "image_search")
    assert search.parameters["required"] == ["query"]
    assert image_search.parameters["required"] == [] and "image" in image_search.parameters["properties"]
    assert "1 = the input image" in image_search.description
    assert _tools(tmp_path, "search.backend=none") == []


def test_search_returns_the_original_text_and_counts(tmp_path: Path) -> None:
    tools = _tools(tmp_path)
    search = tools[0]
    ctx = ToolContext("t1")
    first = asyncio.run(call_tool(search, {"query": "Who built the Eiffel Tower?"}, ctx))
    assert first.ok and first.images == []
    assert first.text.startswith("A Google search for 'Who built the Eiffel Tower?' found ")
    assert "1. [Eiffel Tower](https://en.wikipedia.org/wiki/Eiffel_Tower)\n\nThe Eiffel Tower is" in first.text
    assert first.metadata["cache"] == "miss" and first.metadata["cost"] == 0.0
    again = asyncio.run(call_tool(search, {"query": "who built the  eiffel tower?"}, ctx))
    assert again.metadata["cache"] == "hit"
    bad = asyncio.run(call_tool(search, {"q": "x"}, ctx))
    assert not bad.ok and "Invalid search arguments" in (bad.error or "")
    summary = search_summary(tools)
    assert summary is not None and (summary["calls"], summary["hits"], summary["misses"]) == (2, 1, 1)
    close_search_tools(tools)
    stats = SearchCache(tmp_path / "cache.sqlite").run_stats(summary["run_id"])
    assert stats[summary["run_id"]]["calls"] == 2  # counters recorded for `deepeyes search cache stats --run`


def test_image_search_picks_the_image_by_number(tmp_path: Path) -> None:
    folder = tmp_path / "collection"
    folder.mkdir()
    for i in range(6):
        _picture(i).save(folder / f"pic_{i}.png")
    _, image_search = _tools(tmp_path, f"search.local.image_dir={folder}", "search.top_k=2",
                             "search.local.max_distance=64")
    ctx = ToolContext("t1", images=[_picture(2)], produced_images=[_picture(4).resize((200, 200))])
    default = asyncio.run(call_tool(image_search, {}, ctx))
    assert default.ok and default.text.startswith("A Google image search for the image found 2 results:")
    assert "1. <image>\n[pic 2] \n" in default.text
    assert default.text.count("<image>") == len(default.images) == 2
    crop = asyncio.run(call_tool(image_search, {"image": 2}, ctx))
    assert "1. <image>\n[pic 4] \n" in crop.text and crop.metadata["image"] == 2
    missing = asyncio.run(call_tool(image_search, {"image": 3}, ctx))
    assert not missing.ok and "images 1 to 2" in (missing.error or "")
    wrong = asyncio.run(call_tool(image_search, {"query": "x"}, ctx))
    assert not wrong.ok and "Invalid image_search arguments" in (wrong.error or "")


def test_replay_miss_is_a_short_tool_error_and_original_cache_is_found_by_sample(tmp_path: Path) -> None:
    _, image_search = _tools(tmp_path, "search.mode=replay", "search.backend=serpapi")
    ctx = ToolContext("t1", images=[_picture(1)], sample={"metadata": {"extra_info": {"index": "fvqa_7"}}})
    miss = asyncio.run(call_tool(image_search, {}, ToolContext("t0", images=[_picture(1)])))
    assert miss.error is not None and miss.error.startswith("search unavailable: not in the search cache")
    thumb = _picture(9)
    from deepeyes_cli.search.images import normalize_thumbnail, png_bytes
    from deepeyes_cli.search.types import sha256_bytes

    data = normalize_thumbnail(png_bytes(thumb), 512)
    assert data is not None
    SearchCache(tmp_path / "cache.sqlite").put(CacheEntry(
        sample_cache_key("fvqa_7"), "original", "image", "sample:fvqa_7", {},
        [Hit("Imported title", thumbnail=sha256_bytes(data))], "", 0.0), {sha256_bytes(data): data})
    hit = asyncio.run(call_tool(image_search, {}, ctx))
    assert hit.ok and "[Imported title]" in hit.text and len(hit.images) == 1
    assert json.dumps(hit.metadata) and hit.metadata["cache"] == "hit"
