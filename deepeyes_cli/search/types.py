"""What every backend returns, and how a request becomes a cache key.

A cache key is the SHA-256 of (backend, kind, normalised query or image content hash,
parameters that change the answer). ``top_k`` is not part of it: a cached answer holds
every hit the backend returned and is cut to ``top_k`` when shown.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from PIL.Image import Image

Kind = Literal["text", "image"]
CacheStatus = Literal["hit", "miss", "refresh", "shared", "fallback", "off"]


@dataclass
class Hit:
    title: str
    url: str = ""
    snippet: str | None = None
    date: str | None = None
    thumbnail_url: str | None = None
    thumbnail: str | None = None  # sha256 of the stored thumbnail bytes (image search), None if unavailable

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hit:
        return cls(title=str(data.get("title") or ""), url=str(data.get("url") or data.get("link") or ""),
                   snippet=data.get("snippet"), date=data.get("date"), thumbnail_url=data.get("thumbnail_url"),
                   thumbnail=data.get("thumbnail"))


@dataclass
class BackendResult:
    """One upstream answer: the raw response (secrets stripped), the hits, thumbnail bytes by sha256."""

    raw: Any
    hits: list[Hit]
    blobs: dict[str, bytes] = field(default_factory=dict)
    cost: float = 0.0


@dataclass
class SearchRequest:
    kind: Kind
    backend: str
    query: str | None = None  # text search: the query as the model wrote it
    image_png: bytes | None = None  # image search: the image, PNG-encoded
    image_sha256: str | None = None  # content hash of the image's pixels
    params: dict[str, Any] = field(default_factory=dict)
    sample_index: str | None = None  # original-release cache key (FVQA samples), input image only

    @property
    def key(self) -> str:
        return cache_key(self.backend, self.kind, self.query if self.kind == "text" else self.image_sha256,
                         self.params)


@dataclass
class SearchOutcome:
    """A search as the tool shows it: formatted text plus thumbnails, and how it was obtained."""

    kind: Kind
    hits: list[Hit]
    text: str
    images: list[bytes]  # thumbnails in the order of the `<image>` placeholders in `text`
    cache: CacheStatus
    backend: str
    key: str
    cost: float = 0.0
    latency_s: float = 0.0
    query: str | None = None

    def metadata(self) -> dict[str, Any]:
        return {"cache": self.cache, "backend": self.backend, "cost": self.cost,
                "latency_s": round(self.latency_s, 6), "hits": len(self.hits), "cache_key": self.key[:16]}

    def to_json(self) -> dict[str, Any]:
        import base64

        return {"kind": self.kind, "hits": [h.to_dict() for h in self.hits], "text": self.text,
                "images": [base64.b64encode(b).decode() for b in self.images], "cache": self.cache,
                "backend": self.backend, "key": self.key, "cost": self.cost, "latency_s": self.latency_s,
                "query": self.query}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchOutcome:
        import base64

        return cls(kind=data["kind"], hits=[Hit.from_dict(h) for h in data.get("hits", [])], text=data["text"],
                   images=[base64.b64decode(b) for b in data.get("images", [])], cache=data["cache"],
                   backend=data["backend"], key=data["key"], cost=float(data.get("cost", 0.0)),
                   latency_s=float(data.get("latency_s", 0.0)), query=data.get("query"))


_SPACES = re.compile(r"\s+")


def normalize_query(query: str) -> str:
    """Queries that Google treats alike share a cache entry: NFKC, case-folded, single spaces."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", query)).strip().casefold()


def cache_key(backend: str, kind: str, subject: str | None, params: dict[str, Any]) -> str:
    if kind == "text":
        subject = normalize_query(subject or "")
    blob = json.dumps({"b": backend, "k": kind, "s": subject,
                       "p": {k: v for k, v in sorted(params.items()) if v is not None}},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def sample_cache_key(sample_index: str) -> str:
    """Key of an answer imported from the original release's cache (keyed by sample, not image)."""
    return cache_key("original", "image", f"sample:{sample_index}", {})


def image_sha256(image: Image) -> str:
    """Hash of the pixels (mode, size, raw bytes): the same picture gives the same key however it was encoded."""
    h = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object names itself."""
    from deepeyes_cli.errors import InputError

    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise InputError(f"{path}:{n}: not JSON ({e.args[0]})", hint="one JSON object per line") from e
            if not isinstance(row, dict):
                raise InputError(f"{path}:{n}: expected a JSON object")
            yield n, row
