"""A stored answer is replaced by a newer one for the same key — by ``put`` itself, by
refresh mode through the service, and by ``import --overwrite`` — and only then."""

from __future__ import annotations

import time
from pathlib import Path

from deepeyes_cli.search.cache import CacheEntry, SearchCache
from deepeyes_cli.search.transfer import export_jsonl_file, import_jsonl
from deepeyes_cli.search.types import Hit, cache_key


def _entry(title: str, created: float, raw: object = None) -> CacheEntry:
    key = cache_key("serpapi", "text", "the query", {"engine": "google"})
    return CacheEntry(key, "serpapi", "text", "the query", {"engine": "google"},
                      [Hit(title, f"https://{title}.example", snippet=f"about {title}")], f"shown {title}",
                      created, 0.5, 0.1, raw=raw)


def test_put_replaces_every_field_of_an_entry(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "c.sqlite")
    old, new = _entry("old", 1000.0, raw={"v": 1}), _entry("new", 2000.0, raw={"v": 2})
    new.cost, new.latency_s = 0.0, 3.5
    cache.put(old)
    cache.put(new)
    got = cache.get(new.key)
    assert got is not None
    assert (got.hits[0].title, got.shown, got.created, got.cost, got.latency_s) == ("new", "shown new", 2000.0, 0.0, 3.5)
    assert [e.raw for e in cache.iter_entries()] == [{"v": 2}] and cache.stats()["entries"] == 1


def test_import_overwrites_only_when_asked(tmp_path: Path) -> None:
    source, target = SearchCache(tmp_path / "a.sqlite"), SearchCache(tmp_path / "b.sqlite")
    source.put(_entry("fresh", time.time()))
    dump = tmp_path / "dump.jsonl"
    export_jsonl_file(source, dump)
    target.put(_entry("stale", 1000.0))
    assert import_jsonl(target, dump)["imported"] == 0
    assert target.get(_entry("x", 0).key).hits[0].title == "stale"  # type: ignore[union-attr]
    assert import_jsonl(target, dump, overwrite=True)["imported"] == 1
    assert target.get(_entry("x", 0).key).hits[0].title == "fresh"  # type: ignore[union-attr]


def test_refresh_mode_overwrites_what_live_mode_recorded(tmp_path: Path, monkeypatch) -> None:
    from deepeyes_cli.search.config import SearchConfig
    from deepeyes_cli.search.service import SearchService
    from deepeyes_cli.testing.fake_serpapi import FakeSerpAPI

    monkeypatch.setenv("SERPAPI_API_KEY", "sk-fake-0123456789abcdef")
    base = {"backend": "serpapi", "cache": {"path": str(tmp_path / "c.sqlite")}, "budget": {"run_id": "r"}}
    with FakeSerpAPI(api_key="sk-fake-0123456789abcdef", results=2) as fake:
        base["serpapi"] = {"base_url": fake.url, "backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5}
        live = SearchService(SearchConfig.model_validate(base))
        first = live.search_text("what changed")
        key = first.key
        recorded = live.cache.get(key)
        assert recorded is not None
        live.close()
        fake.results = 5  # upstream now answers differently
        refresh = SearchService(SearchConfig.model_validate({**base, "mode": "refresh"}))
        assert refresh.search_text("what changed").cache == "refresh"
        stored = refresh.cache.get(key)
        assert stored is not None and len(stored.hits) == 5 and stored.created > recorded.created
        refresh.close()
        replay = SearchService(SearchConfig.model_validate({**base, "mode": "replay"}))
        assert len(replay.search_text("what changed").hits) == 5  # runs after the refresh see the new answer
        replay.close()
