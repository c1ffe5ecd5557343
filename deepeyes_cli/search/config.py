"""`search:` section (owned by the search package).

The SerpAPI key is never a recipe value: it is read from ``SERPAPI_API_KEY`` when a paid
call is about to be made, so it cannot end up in a resolved recipe, a cache or a log.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepeyes_cli.recipe.base import Section

BackendName = Literal["serpapi", "local", "none"]


class SerpapiConfig(Section):
    base_url: str = Field("https://serpapi.com", description="SerpAPI endpoint (a proxy, or a fake in tests).")
    timeout_s: float = Field(30.0, gt=0, description="HTTP time limit of one request.")
    retries: int = Field(3, ge=0, le=10, description="Extra attempts on 429, 5xx, time-outs and non-JSON replies.")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles each attempt, with ±50% jitter.")
    max_backoff_s: float = Field(30.0, ge=0)
    text_engine: str = Field("google", description="SerpAPI engine for text search.")
    image_engine: str = Field("google_lens", description="SerpAPI engine for image search.")
    hl: str | None = Field(None, description="Interface language (e.g. en); part of the cache key.")
    gl: str | None = Field(None, description="Country (e.g. us); part of the cache key.")
    location: str | None = Field(None, description="Google location string; part of the cache key.")
    lens_type: str | None = Field(None, description="Google Lens `type` (all, visual_matches …); unset = all.")


class S3HostConfig(Section):
    bucket: str | None = Field(None, description="Bucket that receives the images SerpAPI must fetch.")
    prefix: str = "deepeyes-search/"
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, Ceph …); unset = AWS.")
    region: str | None = None
    expires_s: int = Field(3600, ge=60, description="Lifetime of the presigned URL handed to SerpAPI.")


class UrlTemplateHostConfig(Section):
    directory: str | None = Field(None, description="Folder your web server publishes; images are written here.")
    template: str | None = Field(None, description="Public URL of a written file, e.g. https://cdn.example/{name}; "
                                                   "fields: {name} ({sha256}.jpg) and {sha256}.")


class BudgetConfig(Section):
    max_calls_per_run: int | None = Field(None, ge=0, description="Paid upstream searches per run; unset = no limit.")
    max_calls_per_minute: int | None = Field(None, ge=1, description="Paid searches per minute, all runs sharing "
                                                                    "the cache file (or the server) together.")
    max_wait_s: float = Field(30.0, ge=0, description="How long a call may wait for a per-minute slot.")
    run_id: str | None = Field(None, description="Run whose budget a call counts against; default "
                                                 "$DEEPEYES_RUN_ID, else one per process.")
    cost_per_call: float = Field(1.0, ge=0, description="Cost recorded per paid search (SerpAPI credits).")


class LocalConfig(Section):
    corpus: str | None = Field(None, description="Text index: a directory from `deepeyes search index`, a JSONL "
                                                 "corpus (indexed on first use), or builtin:demo.")
    image_dir: str | None = Field(None, description="Image collection searched by perceptual hash.")
    max_distance: int = Field(20, ge=0, le=64, description="Largest pHash Hamming distance reported as a hit.")


class CacheConfig(Section):
    path: str | None = Field(None, description="SQLite file; default <run.cache_dir>/search/cache.sqlite.")
    enabled: bool = Field(True, description="false: never read or record answers (the file still holds the "
                                            "budget ledger and the in-flight leases).")
    lease_s: float = Field(120.0, gt=0, description="A worker's claim on a miss (renewed while its call runs) lapses "
                                                    "this long after it stops being renewed; a killed worker's on "
                                                    "this host is taken over at once.")


class ImagesConfig(Section):
    max_images: int = Field(10, ge=0, le=10, description="Thumbnails attached per image search (original: 10).")
    max_bytes: int = Field(2_000_000, ge=1024, description="Largest thumbnail download accepted.")
    max_side: int = Field(512, ge=32, description="Thumbnails are downscaled to this longest side.")
    timeout_s: float = Field(10.0, gt=0)
    upload_max_bytes: int = Field(500_000, ge=10_000, description="SerpAPI's image upload limit (500 KB).")


class SearchConfig(Section):
    backend: BackendName = "serpapi"
    mode: Literal["live", "replay", "refresh"] = Field(
        "live", description="live: read-through cache; replay: cache only (miss = error or fallback); "
                            "refresh: always call upstream and overwrite.")
    fallback: BackendName = Field("none", description="Backend answering replay misses (not recorded).")
    top_k: int = Field(5, ge=1, le=20)
    url: str | None = Field(None, description="Shared `deepeyes search serve` endpoint; local when unset.")
    token: str | None = Field(None, description="Bearer token of that endpoint (use ${ENV_VAR}).")
    image_host: Literal["upload", "s3", "url_template"] = Field(
        "upload", description="How Google Lens gets the image: SerpAPI upload, S3 presigned URL, or your web server.")
    max_concurrency: int = Field(16, ge=1, description="Threads running searches in one process.")
    serpapi: SerpapiConfig = Field(default_factory=SerpapiConfig)
    s3: S3HostConfig = Field(default_factory=S3HostConfig)
    url_template: UrlTemplateHostConfig = Field(default_factory=UrlTemplateHostConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)

    def worst_call_s(self) -> float:
        """A bound on one upstream search: a wait for a per-minute slot, every attempt timing out after its
        longest backoff, twice for an image (upload, then search), plus the thumbnail downloads."""
        s = self.serpapi
        one = (s.retries + 1) * s.timeout_s + s.retries * s.max_backoff_s
        return self.budget.max_wait_s + 2 * one + 2 * self.images.max_images * self.images.timeout_s
