"""The SerpAPI backend and the cache against a fake SerpAPI speaking HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest
import serpapi
from PIL import Image

from deepeyes_cli.errors import SearchError
from deepeyes_cli.search.service import SearchService
from deepeyes_cli.testing.fake_serpapi import FakeSerpAPI
from deepeyes_cli.tools.base import ToolContext, call_tool
from deepeyes_cli.tools.search import ImageSearchTool, SearchHandle, SearchTool


def test_text_hits_formatted_then_served_from_the_cache(fake: FakeSerpAPI, config_for, tmp_path: Path) -> None:
    service = SearchService(config_for(fake, top_k=3))
    first = service.search_text("Eiffel Tower")
    assert first.cache == "miss" and first.cost == 1.0
    assert first.text.startswith("A Google search for 'Eiffel Tower' found 3 results:\n\n## Web Results\n1. [")
    assert "(https://example.org/" in first.text and "Date published: Jan 1, 2024" in first.text
    assert "\n\nSnippet 2 about Eiffel Tower." in first.text and "source 4" not in first.text
    again = service.search_text("  eiffel   TOWER ")
    assert again.cache == "hit" and again.cost == 0.0 and fake.calls["google"] == 1
    assert again.text.startswith("A Google search for '  eiffel   TOWER ' found 3")  # the query as written
    empty = service.search_text("nothing at all")  # SerpAPI's 200 + "error": no results, still an answer
    assert empty.hits == [] and "found 0 results" in empty.text
    service.search_text("nothing at all")
    assert fake.calls["google"] == 2
    assert fake.requests[0]["api_key"] == fake.api_key and fake.requests[0]["q"] == "Eiffel Tower"
    assert serpapi.Client.BASE_DOMAIN == "https://serpapi.com"  # the class default is untouched
    summary = service.summary()
    assert (summary["calls"], summary["hits"], summary["misses"], summary["cost"]) == (4, 2, 2, 2.0)
    service.close()


def test_429_then_success_is_retried(fake: FakeSerpAPI, config_for) -> None:
    fake.add_faults("429", "503")  # the hourly throughput limit, then a failed search (status Error)
    service = SearchService(config_for(fake))
    outcome = service.search_text("retry me")
    assert outcome.hits and fake.calls["google"] == 3
    assert service.budget.used() == {"paid_calls": 1, "cost": 1.0}


def test_an_account_out_of_searches_is_not_retried(fake: FakeSerpAPI, config_for) -> None:
    fake.add_faults("429-exhausted", "429-exhausted")
    service = SearchService(config_for(fake))
    with pytest.raises(SearchError, match="answered 429: Your account has run out of searches") as err:
        service.search_text("no credits")
    assert fake.calls["google"] == 1 and err.value.hint and "no searches left" in err.value.hint
    assert service.budget.used()["paid_calls"] == 0  # a refused call is not billed


def test_persistent_failure_is_an_error_and_nothing_is_cached(fake: FakeSerpAPI, config_for) -> None:
    fake.add_faults("500", "500", "500")
    service = SearchService(config_for(fake, serpapi={"retries": 2}))
    with pytest.raises(SearchError, match=r"SerpAPI answered 500.*after 3 attempts") as err:
        service.search_text("down")
    assert fake.api_key not in str(err.value) and fake.calls["google"] == 3
    assert service.search_text("down").cache == "miss"  # the failure was not recorded
    assert service.summary()["errors"] == 1 and service.budget.used()["paid_calls"] == 1


def test_timeout(fake: FakeSerpAPI, config_for) -> None:
    fake.add_faults("slow:1")
    service = SearchService(config_for(fake, serpapi={"timeout_s": 0.3, "retries": 0}))
    with pytest.raises(SearchError, match="timed out after 0.3 s"):
        service.search_text("slow")


def test_malformed_json_is_retried_then_reported(fake: FakeSerpAPI, config_for) -> None:
    fake.add_faults("malformed")
    service = SearchService(config_for(fake))
    assert service.search_text("glitch").hits and fake.calls["google"] == 2
    fake.add_faults("malformed", "malformed")
    strict = SearchService(config_for(fake, serpapi={"retries": 1}))
    with pytest.raises(SearchError, match="malformed reply"):
        strict.search_text("glitch again")


def test_wrong_key_is_not_retried(fake: FakeSerpAPI, config_for, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERPAPI_API_KEY", "wrong-key")
    with pytest.raises(SearchError, match="answered 401: Invalid API key") as err:
        SearchService(config_for(fake)).search_text("q")
    assert err.value.hint and "SERPAPI_API_KEY" in err.value.hint and fake.calls["google"] == 1
    monkeypatch.delenv("SERPAPI_API_KEY")
    with pytest.raises(SearchError, match="SERPAPI_API_KEY is not set"):
        SearchService(config_for(fake)).search_text("other")


def test_budget_exhaustion_is_a_tool_error_and_hits_still_work(fake: FakeSerpAPI, config_for) -> None:
    handle = SearchHandle(config_for(fake, budget={"max_calls_per_run": 2}), None)
    tool, ctx = SearchTool(handle), ToolContext("t")
    for q in ("one", "two"):
        assert asyncio.run(call_tool(tool, {"query": q}, ctx)).ok
    spent = asyncio.run(call_tool(tool, {"query": "three"}, ctx))
    assert spent.error is not None and spent.error.startswith("search unavailable: search budget spent")
    assert asyncio.run(call_tool(tool, {"query": "one"}, ctx)).metadata["cache"] == "hit"
    assert fake.calls["google"] == 2
    summary = handle.summary()
    assert summary is not None and summary["budget_refusals"] == 1 and summary["errors"] == 1
    fast = SearchService(config_for(fake, budget={"max_calls_per_minute": 2, "max_wait_s": 0, "run_id": "other"}))
    with pytest.raises(SearchError, match="per minute"):
        fast.search_text("four")  # the two calls above are in the same minute, from the same cache file


def test_fifty_concurrent_identical_calls_make_one_upstream_call(serpapi_key: str, config_for) -> None:
    with FakeSerpAPI(api_key=serpapi_key, delay_s=0.5) as slow:
        handle = SearchHandle(config_for(slow), None)
        tool = SearchTool(handle)

        async def many() -> list:
            return await asyncio.gather(*(call_tool(tool, {"query": "same question"}, ToolContext(f"t{i}"))
                                          for i in range(50)))

        results = asyncio.run(many())
    assert slow.calls["google"] == 1
    assert len({r.text for r in results}) == 1 and all(r.ok for r in results)
    statuses = [r.metadata["cache"] for r in results]
    assert statuses.count("miss") == 1 and set(statuses) <= {"miss", "shared", "hit"}
    summary = handle.summary()
    assert summary is not None and summary["upstream_calls"] == 1 and summary["cost"] == 1.0


def test_image_search_uploads_a_fitted_crop_and_attaches_thumbnails(fake: FakeSerpAPI, config_for) -> None:
    fake.oversized = {2}  # the second match's thumbnail is far too big: skipped, the next one is used
    handle = SearchHandle(config_for(fake, top_k=4), None)
    tool = ImageSearchTool(handle)
    photo = Image.frombytes("RGB", (1500, 1000), os.urandom(1500 * 1000 * 3))
    crop = photo.crop((100, 100, 900, 700))
    ctx = ToolContext("t", images=[photo], produced_images=[crop])
    result = asyncio.run(call_tool(tool, {"image": 2}, ctx))
    assert result.ok, result.error
    assert len(fake.uploads) == 1 and len(fake.uploads[0]) <= 500_000
    assert Image.open(io.BytesIO(fake.uploads[0])).format == "JPEG"
    lens = [r for r in fake.requests if r["engine"] == "google_lens"]
    assert len(lens) == 1 and "image_id" in lens[0] and "url" not in lens[0]
    assert result.text.count("<image>") == len(result.images) == 4
    titles = [line for line in result.text.splitlines() if line.startswith("[")]
    seed = int(titles[0].strip("[] ").split()[-1]) - 1
    assert titles == [f"[Visual match {seed + i}] " for i in (1, 3, 4, 5)]
    assert all(img.size[0] <= 512 for img in result.images)
    again = asyncio.run(call_tool(tool, {"image": 2}, ctx))
    assert again.metadata["cache"] == "hit" and again.text == result.text and len(fake.uploads) == 1
    assert [im.tobytes() for im in again.images] == [im.tobytes() for im in result.images]


def test_modes_refresh_replay_and_fallback(fake: FakeSerpAPI, config_for, tmp_path: Path) -> None:
    SearchService(config_for(fake)).search_text("recorded")
    refreshed = SearchService(config_for(fake, mode="refresh")).search_text("recorded")
    assert refreshed.cache == "refresh" and fake.calls["google"] == 2
    replay = SearchService(config_for(None, mode="replay"))  # points at a closed port: no network needed
    assert replay.search_text("RECORDED").cache == "hit"
    with pytest.raises(SearchError, match="not in the search cache"):
        replay.search_text("never asked")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"title": "Fallback doc", "url": "https://f.example", "text": "never asked before"}\n')
    with_fallback = SearchService(config_for(None, mode="replay", fallback="local",
                                             local={"corpus": str(corpus)}))
    out = with_fallback.search_text("never asked")
    assert out.cache == "fallback" and "[Fallback doc](https://f.example)" in out.text
    assert with_fallback.cache.stats()["entries"] == 1  # fallback answers are not recorded


def test_lens_exact_matches_type(fake: FakeSerpAPI, config_for) -> None:
    service = SearchService(config_for(fake, serpapi={"lens_type": "exact_matches"}, top_k=3))
    outcome = service.search_image(Image.new("RGB", (64, 64), (70, 80, 90)))
    lens = [r for r in fake.requests if r["engine"] == "google_lens"]
    assert lens[0]["type"] == "exact_matches" and "country" not in lens[0]
    assert len(outcome.hits) == 3 and outcome.hits[0].title.startswith("Visual match")
    assert outcome.text.count("<image>") == len(outcome.images) == 3


def test_runs_with_their_own_budgets_do_not_share_a_refusal(fake: FakeSerpAPI, config_for) -> None:
    """Run A's budget is spent, run B's is not: B's identical concurrent request must still be answered."""
    import threading
    import time

    from deepeyes_cli.search.cache import SearchCache
    from deepeyes_cli.search.flight import Leases
    from deepeyes_cli.search.types import cache_key

    config = config_for(fake, budget={"max_calls_per_run": 1})
    service = SearchService(config)
    service.search_text("spend run a", run_id="a")
    # Another process holds the key for a moment, so that both requests are waiting when it lets go.
    key = cache_key("serpapi", "text", "asked by both", service.backend.params("text"))
    blocker = Leases(SearchCache(config.cache.path or ""), ttl_s=60)
    assert blocker.try_acquire(key, "another process")
    outcomes: dict[str, object] = {}

    def ask(run: str) -> None:
        try:
            outcomes[run] = service.search_text("asked by both", run_id=run)
        except SearchError as e:
            outcomes[run] = e

    threads = [threading.Thread(target=ask, args=(run,)) for run in ("a", "b")]
    threads[0].start()
    time.sleep(0.2)  # run A asks first and waits on the lease
    threads[1].start()
    time.sleep(0.2)
    blocker.release(key, "another process")
    for t in threads:
        t.join(timeout=60)
    blocker.close()
    service.close()
    a, b = outcomes["a"], outcomes["b"]
    assert not isinstance(b, SearchError), b
    # A is refused (it took the lease first) or shares B's answer (B took it first); it never pays.
    assert ("budget spent" in str(a)) if isinstance(a, SearchError) else a.cost == 0.0  # type: ignore[attr-defined]
    assert fake.calls["google"] == 2  # "spend run a", then run B's call
