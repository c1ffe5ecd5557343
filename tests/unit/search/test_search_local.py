"""Offline backends: a bm25s index over a generated corpus, pHash search over a generated image folder."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFilter

from deepeyes_cli.errors import InputError
from deepeyes_cli.search.image_index import IMAGE_INDEX_FILE, LocalImageIndex, build_image_index
from deepeyes_cli.search.local import LocalTextIndex, build_text_index, resolve_text_index

TOPICS = ["volcano lava eruption magma", "violin orchestra symphony concerto", "glacier ice arctic melting",
          "rocket launch orbit satellite", "bakery bread sourdough flour", "chess opening gambit endgame"]


def _corpus(path: Path, n: int = 60, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    filler = ["the", "of", "and", "a", "in", "to", "is", "was", "for", "on", "with", "as", "by", "at", "from"]
    docs = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)].split()
        words = [rng.choice(topic if rng.random() < 0.4 else filler) for _ in range(40)]
        docs.append({"title": f"Doc {i} {topic[0]}", "url": f"https://corpus.example/{i}", "text": " ".join(words)})
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return docs


def test_bm25_index_finds_the_topic(tmp_path: Path) -> None:
    _corpus(tmp_path / "c.jsonl")
    meta = build_text_index(tmp_path / "c.jsonl", tmp_path / "idx")
    assert meta["documents"] == 60 and len(meta["fingerprint"]) == 64
    index = LocalTextIndex(tmp_path / "idx")
    hits = index.search("sourdough bread", 5)
    assert len(hits) == 5 and all("bakery" in h.title for h in hits)
    assert all(h.url.startswith("https://corpus.example/") and h.snippet for h in hits)
    assert index.search("the of and", 5) == []  # stop words only: nothing to match
    assert index.search("quantum chromodynamics", 5) == []


def test_corpus_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "ok", "text": "fine"}\n{"title": "no text"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2"):
        build_text_index(bad, tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


def test_jsonl_in_the_recipe_is_indexed_once_by_content(tmp_path: Path) -> None:
    _corpus(tmp_path / "c.jsonl")
    first = resolve_text_index(str(tmp_path / "c.jsonl"), tmp_path / "cache")
    stamp = (first / "deepeyes_index.json").stat().st_mtime_ns
    assert resolve_text_index(str(tmp_path / "c.jsonl"), tmp_path / "cache") == first
    assert (first / "deepeyes_index.json").stat().st_mtime_ns == stamp
    assert LocalTextIndex(resolve_text_index("builtin:demo", tmp_path / "cache")).search("Eiffel tower", 1)[0].title \
        == "Eiffel Tower"


def _picture(seed: int, size: int = 128) -> Image.Image:
    rng = random.Random(seed)
    img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rng.randrange(size - 20), rng.randrange(size - 20)
        draw.ellipse([x, y, x + rng.randrange(10, 60), y + rng.randrange(10, 60)],
                     fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def test_phash_finds_a_resized_blurred_copy(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):
        _picture(i).save(folder / f"photo_{i}.png")
    (folder / "metadata.jsonl").write_text(json.dumps({"file": "photo_7.png", "title": "Seven", "url": "https://s/7"}))
    (folder / "broken.jpg").write_bytes(b"not an image")
    info = build_image_index(folder)
    assert info["images"] == 12 and (folder / IMAGE_INDEX_FILE).is_file()
    index = LocalImageIndex(folder, max_distance=20)
    query = _picture(7).resize((300, 300)).filter(ImageFilter.GaussianBlur(1))
    hits = index.search(query, 3)
    assert hits and hits[0][0].title == "Seven" and hits[0][0].url == "https://s/7"
    assert hits[0][1] == folder / "photo_7.png"
    assert index.search(_picture(3), 1)[0][0].title == "photo 3"  # title from the file name
    strict = LocalImageIndex(folder, max_distance=0)
    assert len(strict.search(query, 12)) <= 1


def test_image_index_reuses_unchanged_hashes(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    _picture(1).save(folder / "a.png")
    build_image_index(folder)
    data = json.loads((folder / IMAGE_INDEX_FILE).read_text())
    data["images"][0]["phash"] = "0000000000000000"  # a reused entry keeps what the index said
    (folder / IMAGE_INDEX_FILE).write_text(json.dumps(data))
    _picture(2).save(folder / "b.png")
    assert build_image_index(folder)["images"] == 2
    hashes = {e["file"]: e["phash"] for e in json.loads((folder / IMAGE_INDEX_FILE).read_text())["images"]}
    assert hashes["a.png"] == "0000000000000000" and hashes["b.png"] != "0000000000000000"
