"""Client of ``deepeyes search serve``: same methods as ``SearchService``, answers from the server."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import SearchError
from deepeyes_cli.search.budget import default_run_id
from deepeyes_cli.search.config import SearchConfig
from deepeyes_cli.search.searcher import Searcher
from deepeyes_cli.search.types import SearchOutcome

if TYPE_CHECKING:
    from PIL.Image import Image


class RemoteSearch(Searcher):
    def __init__(self, config: SearchConfig, run_id: str | None = None) -> None:
        import httpx

        assert config.url
        self.config = config
        self.url = config.url.rstrip("/")
        self.run_id = run_id or default_run_id(config.budget.run_id)
        headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        # The server may wait on SerpAPI retries and on another worker's identical search.
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(config.worst_call_s() + 30, connect=10))
        super().__init__(config.max_concurrency, "search-remote")

    def _post(self, path: str, body: dict[str, Any]) -> SearchOutcome:
        import httpx

        try:
            resp = self._http.post(f"{self.url}{path}", json={**body, "run_id": self.run_id})
        except httpx.HTTPError as e:
            self._count(calls=1, errors=1)
            raise SearchError(f"cannot reach the search server at {self.url} ({type(e).__name__})",
                              hint="start it with `deepeyes search serve` or fix search.url") from e
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            data = {}
        if resp.status_code != 200:
            self._count(calls=1, errors=1)
            raise SearchError(str(data.get("error") or f"search server answered {resp.status_code}"),
                              hint=data.get("hint"))
        outcome = SearchOutcome.from_json(data)
        self._count(calls=1, cost=outcome.cost, upstream_calls=int(outcome.cost > 0), **{
            {"hit": "hits", "miss": "misses", "off": "misses", "refresh": "refreshed"}.get(outcome.cache,
                                                                                           outcome.cache): 1})
        return outcome

    def search_text(self, query: str, top_k: int | None = None) -> SearchOutcome:
        return self._post("/v1/search/text", {"query": query, "top_k": top_k})

    def search_image(self, image: Image, top_k: int | None = None, sample_index: str | None = None) -> SearchOutcome:
        from deepeyes_cli.search.images import png_bytes, to_rgb

        data = base64.b64encode(png_bytes(to_rgb(image))).decode()
        return self._post("/v1/search/image", {"image": data, "top_k": top_k, "sample_index": sample_index})

    def summary(self) -> dict[str, Any]:
        return self._summary(f"remote {self.url}", "server")

    def flush_stats(self) -> None:
        """The server keeps the run counters."""

    def close(self) -> None:
        super().close()
        self._http.close()
