"""`deepeyes search …` end to end, in subprocesses, offline (local backend or the fake SerpAPI)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from deepeyes_cli.testing.fake_serpapi import FakeSerpAPI


def _ok(proc) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(proc.stdout)


def _pictures(folder: Path, n: int = 5) -> None:
    folder.mkdir()
    for i in range(n):
        rng = random.Random(i)
        img = Image.new("RGB", (120, 90), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            x, y = rng.randrange(90), rng.randrange(60)
            draw.ellipse([x, y, x + 30, y + 30], fill=tuple(rng.randrange(256) for _ in range(3)))
        img.save(folder / f"item_{i}.png")


def test_text_search_offline_with_the_tiny_recipe(cli, tmp_path: Path) -> None:
    cache = tmp_path / "c.sqlite"
    out = json.loads(_ok(cli("search", "text", "Where is the Eiffel Tower?", "--recipe", "tiny",
                             f"search.cache.path={cache}", "--json", cwd=tmp_path)))
    assert out["hits"][0]["title"] == "Eiffel Tower" and out["cache"] == "miss" and out["backend"] == "local"
    assert out["text"].startswith("A Google search for 'Where is the Eiffel Tower?' found")
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "search_summary.json").read_text())["misses"] == 1
    table = _ok(cli("search", "text", "where is the eiffel tower?", "-r", "tiny", f"search.cache.path={cache}",
                    "-k", "1", cwd=tmp_path))
    assert "Eiffel Tower" in table and "Leaning" not in table
    stats = json.loads(_ok(cli("search", "cache", "stats", "-r", "tiny", f"search.cache.path={cache}", "--json")))
    assert stats["entries"] == 1 and stats["by_backend"][0]["backend"] == "local"


def test_index_then_search_a_corpus_and_an_image_folder(cli, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"title": f"Doc {i}", "url": f"https://d/{i}",
                                          "text": f"document number {i} about {'kayaks' if i == 3 else 'tea'}"}) + "\n"
                              for i in range(10)))
    assert "text index of 10 documents" in _ok(cli("search", "index", str(corpus)))
    index = tmp_path / "corpus.index"
    out = json.loads(_ok(cli("search", "text", "kayaks", "-r", "tiny", f"search.local.corpus={index}",
                             f"search.cache.path={tmp_path / 'c.sqlite'}", "--json", cwd=tmp_path)))
    assert [h["title"] for h in out["hits"]] == ["Doc 3"]
    folder = tmp_path / "pics"
    _pictures(folder)
    assert "image index of 5 images" in _ok(cli("search", "index", str(folder)))
    thumbs = tmp_path / "thumbs"
    out = json.loads(_ok(cli("search", "image", str(folder / "item_2.png"), "--box", "0,0,120,90", "-r", "tiny",
                             f"search.local.image_dir={folder}", "search.local.max_distance=64", "-k", "3",
                             f"search.cache.path={tmp_path / 'c.sqlite'}", "--save-thumbnails", str(thumbs),
                             "--json", cwd=tmp_path)))
    assert out["hits"][0]["title"] == "item 2" and len(out["thumbnails_saved"]) == 3
    assert Image.open(thumbs / "01.jpg").size == (120, 90)


def test_serpapi_through_the_cli_never_writes_the_key(cli, tmp_path: Path, serpapi_key: str) -> None:
    cache = tmp_path / "c.sqlite"
    common = ["-r", "7b", f"search.cache.path={cache}"]
    with FakeSerpAPI(api_key=serpapi_key) as fake:
        common.append(f"search.serpapi.base_url={fake.url}")
        out = json.loads(_ok(cli("search", "text", "mount everest", *common, "run.log_level=debug", "--json",
                                 cwd=tmp_path)))
        assert out["cache"] == "miss" and out["cost"] == 1.0 and len(out["hits"]) == 5
        img = tmp_path / "photo.png"
        Image.new("RGB", (200, 150), (1, 100, 200)).save(img)
        out = json.loads(_ok(cli("search", "image", str(img), *common, "--json", cwd=tmp_path)))
        assert len(out["hits"]) == 5 and fake.calls["google_lens"] == 1
        missing = cli("search", "text", "new query", *common, cwd=tmp_path, env={"SERPAPI_API_KEY": ""})
    assert missing.returncode == 1 and "error: SERPAPI_API_KEY is not set" in missing.stderr
    assert "hint:" in missing.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "search.log" for p in written) and any(p.name == "recipe.yaml" for p in written)
    for p in written:
        assert serpapi_key.encode() not in p.read_bytes(), p


def test_cache_export_import_prune(cli, tmp_path: Path) -> None:
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    for q in ("eiffel tower", "giant panda"):
        _ok(cli("search", "text", q, "-r", "tiny", f"search.cache.path={a}", cwd=tmp_path))
    dump = tmp_path / "dump.jsonl"
    _ok(cli("search", "cache", "export", str(dump), "-r", "tiny", f"search.cache.path={a}"))
    assert len(dump.read_text().splitlines()) == 2
    assert "imported 2" in _ok(cli("search", "cache", "import", str(dump), "--path", str(b)))
    assert "skipped 2" in _ok(cli("search", "cache", "import", str(dump), "--path", str(b)))
    replayed = json.loads(_ok(cli("search", "text", "Giant Panda", "-r", "tiny", "search.mode=replay",
                                  f"search.cache.path={b}", "--json", cwd=tmp_path)))
    assert replayed["cache"] == "hit" and replayed["hits"][0]["title"] == "Giant panda"
    assert "removed 2 answers" in _ok(cli("search", "cache", "prune", "--path", str(b), "--older-than", "0s"))
    miss = cli("search", "text", "giant panda", "-r", "tiny", "search.mode=replay", f"search.cache.path={b}",
               cwd=tmp_path)
    assert miss.returncode == 1 and "not in the search cache" in miss.stderr


def test_usage_errors(cli, tmp_path: Path) -> None:
    gone = cli("search", "cache", "stats", "--path", str(tmp_path / "none.sqlite"))
    assert gone.returncode == 1 and "no search cache" in gone.stderr
    nothing = cli("search", "cache", "prune", "--path", str(tmp_path / "none.sqlite"))
    assert nothing.returncode == 1 and "nothing to prune" in nothing.stderr
    box = cli("search", "image", "x.png", "--box", "1,2", "-r", "tiny", cwd=tmp_path)
    assert box.returncode == 1 and "x1,y1,x2,y2" in box.stderr
    (tmp_path / "notes.png").write_text("not a picture")
    junk = cli("search", "image", "notes.png", "-r", "tiny", cwd=tmp_path)
    assert junk.returncode == 1 and "error: notes.png is not a readable image" in junk.stderr
    assert "BytesIO" not in junk.stderr and "hint: pass a JPEG, PNG or WebP file" in junk.stderr
    exposed = cli("search", "serve", "--host", "0.0.0.0", "-r", "tiny", env={"DEEPEYES_SEARCH_TOKEN": ""})
    assert exposed.returncode == 1 and "without a token" in exposed.stderr
    plan = _ok(cli("search", "serve", "-r", "tiny", "--port", "0", "--dry-run"))
    assert "serve search (local, live) on http://127.0.0.1:0" in plan


def test_serve_subprocess_answers_a_remote_client(tmp_path: Path) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys

    from deepeyes_cli.search.config import SearchConfig
    from deepeyes_cli.search.remote import RemoteSearch

    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "DEEPEYES_SEARCH_TOKEN": "tok"}
    proc = subprocess.Popen([sys.executable, "-m", "deepeyes_cli", "search", "serve", "-r", "tiny", "--port", "0",
                             f"search.cache.path={tmp_path / 'c.sqlite'}"], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        client = RemoteSearch(SearchConfig(url=match.group(0), token="tok"))
        out = client.search_text("Statue of Liberty")
        assert out.hits[0].title == "Statue of Liberty" and out.backend == "local"
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "search_summary.json").read_text())["calls"] == 1
