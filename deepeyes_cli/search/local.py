"""Offline backends for air-gapped clusters and tests.

* Text: a BM25 index (bm25s) over a JSONL corpus, one document per line:
  ``{"title": str, "url": str, "text": str, "date": str?}`` (``snippet`` or ``contents``
  are accepted for ``text``). ``deepeyes search index corpus.jsonl`` builds it once;
  a ``.jsonl`` given directly in the recipe is indexed on first use into the cache dir.
* Images: perceptual hashes of a folder of images (``image_index.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import InputError, SearchError
from deepeyes_cli.search.image_index import IMAGE_INDEX_FILE, LocalImageIndex
from deepeyes_cli.search.types import BackendResult, Hit, iter_jsonl

if TYPE_CHECKING:
    from PIL.Image import Image

Progress = Callable[[int, int], None]  # (done, total)
META_FILE = "deepeyes_index.json"
SNIPPET_CHARS = 400
BUILTIN_DEMO = "builtin:demo"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_corpus(path: Path) -> Iterator[dict[str, Any]]:
    for n, doc in iter_jsonl(path):
        text = doc.get("text") or doc.get("snippet") or doc.get("contents")
        if not isinstance(text, str):
            raise InputError(f"{path}:{n}: a document needs a 'text' string",
                             hint='{"title": "...", "url": "...", "text": "..."}')
        yield {"title": str(doc.get("title") or ""), "url": str(doc.get("url") or doc.get("link") or ""),
               "text": text, "date": doc.get("date")}


def build_text_index(corpus: str | Path, out_dir: str | Path, progress: Progress | None = None) -> dict[str, Any]:
    """Index a JSONL corpus into ``out_dir`` (written beside, then renamed: a kill leaves no half index)."""
    import bm25s

    corpus, out = Path(corpus), Path(out_dir)
    if not corpus.is_file():
        raise InputError(f"corpus {corpus} does not exist", hint="pass a JSONL file, one document per line")
    docs = list(read_corpus(corpus))
    if not docs:
        raise InputError(f"corpus {corpus} holds no documents")
    if progress:
        progress(0, len(docs))
    tokens = bm25s.tokenize([f"{d['title']} {d['text']}" for d in docs], stopwords="en", show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        retriever.save(str(tmp), corpus=docs, show_progress=False)
        meta = {"version": 1, "source": str(corpus.resolve()), "documents": len(docs),
                "fingerprint": _file_sha256(corpus)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        progress(len(docs), len(docs))
    return meta


class LocalTextIndex:
    def __init__(self, directory: str | Path) -> None:
        import bm25s

        self.directory = Path(directory)
        try:
            self.meta = json.loads((self.directory / META_FILE).read_text())
            self.retriever = bm25s.BM25.load(str(self.directory), load_corpus=True, show_progress=False)
        except (OSError, ValueError) as e:
            raise SearchError(f"{self.directory} is not a text index ({e})",
                              hint="build one with `deepeyes search index corpus.jsonl --out DIR`") from e

    @property
    def fingerprint(self) -> str:
        return str(self.meta.get("fingerprint", ""))

    def search(self, query: str, k: int) -> list[Hit]:
        import bm25s

        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)
        if not tokens or not tokens[0]:
            return []
        n = min(k, len(self.retriever.corpus))
        docs, scores = self.retriever.retrieve(tokens, k=n, show_progress=False)
        hits = []
        for doc, score in zip(docs[0], scores[0], strict=True):
            if float(score) <= 0:
                continue
            text = str(doc.get("text") or "")
            snippet = text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " …"
            hits.append(Hit(title=str(doc.get("title") or ""), url=str(doc.get("url") or ""),
                            snippet=snippet or None, date=doc.get("date") or None))
        return hits


def resolve_text_index(spec: str, cache_dir: Path, progress: Progress | None = None) -> Path:
    """``search.local.corpus`` → an index directory (a JSONL corpus is indexed once, keyed by its content)."""
    if spec == BUILTIN_DEMO:
        source = resources.files("deepeyes_cli.search") / "demo_corpus.jsonl"
        with resources.as_file(source) as p:
            return resolve_text_index(str(p), cache_dir, progress)
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if not path.is_file():
        raise SearchError(f"search.local.corpus {spec} does not exist",
                          hint="point it at a JSONL corpus or at a directory from `deepeyes search index`")
    target = cache_dir / "indexes" / _file_sha256(path)[:24]
    if not (target / META_FILE).is_file():
        from filelock import FileLock

        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):  # workers starting together index the corpus once
            if not (target / META_FILE).is_file():
                build_text_index(path, target, progress)
    return target


class LocalBackend:
    """The ``local`` backend: free, deterministic, offline."""

    name = "local"
    paid = False

    def __init__(self, config: Any, cache_dir: Path) -> None:
        self.config = config  # SearchConfig
        self.cache_dir = cache_dir
        self._text: LocalTextIndex | None = None
        self._images: LocalImageIndex | None = None
        self._lock = threading.Lock()

    def text_index(self) -> LocalTextIndex:
        with self._lock:
            return self._load_text()

    def _load_text(self) -> LocalTextIndex:
        if self._text is None:
            if not self.config.local.corpus:
                raise SearchError("search.backend is local but search.local.corpus is not set",
                                  hint="set search.local.corpus to a JSONL corpus, an index directory or builtin:demo")
            self._text = LocalTextIndex(resolve_text_index(self.config.local.corpus, self.cache_dir))
        return self._text

    def image_index(self) -> LocalImageIndex:
        with self._lock:
            return self._load_images()

    def _load_images(self) -> LocalImageIndex:
        if self._images is None:
            if not self.config.local.image_dir:
                raise SearchError("no local image collection is configured",
                                  hint="set search.local.image_dir to a folder of images")
            folder = Path(self.config.local.image_dir).expanduser()
            index_path = folder / IMAGE_INDEX_FILE
            if not index_path.is_file():  # never write into the user's collection unasked: index into the cache dir
                digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
                index_path = self.cache_dir / "indexes" / f"phash-{digest}.json"
            self._images = LocalImageIndex(folder, self.config.local.max_distance, index_path)
        return self._images

    def params(self, kind: str) -> dict[str, Any]:
        if kind == "text":
            return {"index": self.text_index().fingerprint}
        return {"index": self.image_index().fingerprint, "max_distance": self.config.local.max_distance}

    def text(self, query: str) -> BackendResult:
        hits = self.text_index().search(query, 20)
        return BackendResult(raw={"engine": "bm25s", "hits": [h.to_dict() for h in hits]}, hits=hits)

    def image(self, image: Image, sha256: str) -> BackendResult:
        from deepeyes_cli.search.images import normalize_thumbnail
        from deepeyes_cli.search.types import sha256_bytes

        hits, blobs = [], {}
        for hit, path in self.image_index().search(image, 20):
            try:
                thumb = normalize_thumbnail(path.read_bytes(), self.config.images.max_side)
            except OSError:
                thumb = None
            if thumb is not None:
                hit.thumbnail = sha256_bytes(thumb)
                blobs[hit.thumbnail] = thumb
            hits.append(hit)
        return BackendResult(raw={"engine": "phash", "hits": [h.to_dict() for h in hits]}, hits=hits, blobs=blobs)
