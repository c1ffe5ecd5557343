"""`deepeyes search serve`: one service (cache, single-flight, budget) for clients on other nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from PIL import Image

from deepeyes_cli.errors import SearchError
from deepeyes_cli.search.remote import RemoteSearch
from deepeyes_cli.search.run import check_bind
from deepeyes_cli.search.server import create_app
from deepeyes_cli.search.service import SearchService
from deepeyes_cli.testing.fake_serpapi import FakeSerpAPI
from deepeyes_cli.testing.servers import BackgroundServer
from deepeyes_cli.tools.base import ToolContext, call_tool
from deepeyes_cli.tools.search import build_search_tools, search_summary

TOKEN = "server-token-42"


@pytest.fixture
def slow_fake(serpapi_key: str) -> Iterator[FakeSerpAPI]:
    with FakeSerpAPI(api_key=serpapi_key, delay_s=0.4) as fake:
        yield fake


@pytest.fixture
def server(slow_fake: FakeSerpAPI, config_for) -> Iterator[tuple[str, SearchService]]:
    service = SearchService(config_for(slow_fake, budget={"max_calls_per_run": 3}))
    with BackgroundServer(create_app(service, TOKEN)) as http:
        yield http.url, service
    service.close()


def test_clients_share_one_cache_and_one_upstream_call(server, slow_fake: FakeSerpAPI, config_for) -> None:
    url, service = server
    from deepeyes_cli.recipe.loader import load_recipe

    recipe = load_recipe(None, [f"search.url={url}", f"search.token={TOKEN}", "search.budget.run_id=node-a"]).recipe
    tools = build_search_tools(recipe)
    search, image_search = tools

    async def burst() -> list:
        return await asyncio.gather(*(call_tool(search, {"query": "shared"}, ToolContext(f"t{i}")) for i in range(20)))

    results = asyncio.run(burst())
    assert all(r.ok for r in results) and len({r.text for r in results}) == 1
    assert slow_fake.calls["google"] == 1
    assert results[0].text.startswith("A Google search for 'shared' found 5 results:")
    img = asyncio.run(call_tool(image_search, {}, ToolContext("t", images=[Image.new("RGB", (80, 60), (9, 9, 9))])))
    assert img.ok and len(img.images) == img.text.count("<image>") == 5
    summary = search_summary(tools)
    assert summary is not None and summary["calls"] == 21 and summary["errors"] == 0
    assert service.summary()["upstream_calls"] == 2


def test_budget_is_per_client_run_and_errors_carry_the_hint(server, config_for) -> None:
    url, _ = server
    client = RemoteSearch(config_for(None, url=url, token=TOKEN, budget={"run_id": "run-x"}))
    for q in ("a", "b", "c"):
        client.search_text(q)
    with pytest.raises(SearchError, match="budget spent") as err:
        client.search_text("d")
    assert err.value.hint and "max_calls_per_run" in err.value.hint
    other = RemoteSearch(config_for(None, url=url, token=TOKEN, budget={"run_id": "run-y"}))
    assert other.search_text("d").cache == "miss"
    assert other.search_text("a").cache == "hit"


def test_token_is_required(server, config_for) -> None:
    url, _ = server
    with pytest.raises(SearchError, match="bearer token"):
        RemoteSearch(config_for(None, url=url, token="wrong")).search_text("q")
    with pytest.raises(SearchError, match="bearer token"):
        RemoteSearch(config_for(None, url=url)).search_text("q")
    with pytest.raises(SearchError, match="cannot reach the search server"):
        RemoteSearch(config_for(None, url="http://127.0.0.1:9")).search_text("q")


def test_binding_beyond_loopback_needs_a_token() -> None:
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("0.0.0.0", "t")
    with pytest.raises(SearchError, match="without a token"):
        check_bind("0.0.0.0", None)
