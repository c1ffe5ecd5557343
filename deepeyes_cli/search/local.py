"""Offline backends for air-gapped clusters and tests.

* Text: a BM25 index (bm25s) over a JSONL corpus, one document per line:
  ``{"title": str, "url": str, "text": str, "date": str?}`` (``snippet`` or ``contents``
  are accepted for ``text``). ``deepeyes search index corpus.jsonl`` builds it once;
  a ``.jsonl`` given directly in the recipe is indexed on first use into the cache dir.
* Images: 64-bit perceptual hashes (imagehash pHash) of every image in a folder; a query
  returns the nearest by Hamming distance. Titles come from an optional ``metadata.jsonl``
  in the folder (``{"file": "a.jpg", "title": ..., "url": ...}``), else from file names.
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
from deepeyes_cli.search.types import BackendResult, Hit

if TYPE_CHECKING:
    from PIL.Image import Image

Progress = Callable[[int, int], None]  # (done, total)
META_FILE = "deepeyes_index.json"
IMAGE_INDEX_FILE = ".deepeyes-phash.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
SNIPPET_CHARS = 400
BUILTIN_DEMO = "builtin:demo"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_corpus(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError as e:
                raise InputError(f"{path}:{n}: not JSON ({e.args[0]})", hint="one JSON object per line") from e
            text = doc.get("text") or doc.get("snippet") or doc.get("contents") if isinstance(doc, dict) else None
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


# --------------------------------------------------------------------------- images


def _metadata(folder: Path) -> dict[str, dict[str, Any]]:
    meta: dict[str, dict[str, Any]] = {}
    path = folder / "metadata.jsonl"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                meta[str(row.get("file"))] = row
    return meta


def build_image_index(folder: str | Path, out: str | Path | None = None,
                      progress: Progress | None = None) -> dict[str, Any]:
    """pHash every image under ``folder``; unchanged files (same size and mtime) keep their hash."""
    import imagehash
    from PIL import Image as PILImage

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a directory", hint="pass the folder holding your images")
    out_path = Path(out) if out else folder / IMAGE_INDEX_FILE
    old = {}
    if out_path.is_file():
        old = {e["file"]: e for e in json.loads(out_path.read_text()).get("images", [])}
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    meta = _metadata(folder)
    entries = []
    for i, path in enumerate(files):
        rel = path.relative_to(folder).as_posix()
        st = path.stat()
        prev = old.get(rel)
        if prev and prev["size"] == st.st_size and prev["mtime"] == st.st_mtime:
            entries.append(prev)
        else:
            try:
                with PILImage.open(path) as img:
                    phash = str(imagehash.phash(img.convert("RGB")))
            except Exception:  # unreadable files are left out of the index, not fatal
                continue
            info = meta.get(rel, {})
            entries.append({"file": rel, "size": st.st_size, "mtime": st.st_mtime, "phash": phash,
                            "title": str(info.get("title") or path.stem.replace("_", " ").replace("-", " ")),
                            "url": str(info.get("url") or path.resolve().as_uri())})
        if progress:
            progress(i + 1, len(files))
    index = {"version": 1, "folder": str(folder.resolve()), "images": entries}
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(json.dumps(index) + "\n")
    os.replace(tmp, out_path)
    return {"images": len(entries), "path": str(out_path)}


class LocalImageIndex:
    """Reads ``index_path`` (default: the one ``deepeyes search index FOLDER`` wrote), building it if missing.
    An existing index is not refreshed: re-run ``deepeyes search index FOLDER`` after adding images."""

    def __init__(self, folder: str | Path, max_distance: int = 20, index_path: Path | None = None) -> None:
        import numpy as np
        from filelock import FileLock

        self.folder = Path(folder).expanduser()
        index_path = index_path or self.folder / IMAGE_INDEX_FILE
        if not index_path.is_file():
            index_path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(index_path) + ".lock"):
                if not index_path.is_file():
                    build_image_index(self.folder, index_path)
        self.entries = json.loads(index_path.read_text())["images"]
        self.hashes = np.array([int(e["phash"], 16) for e in self.entries], dtype=np.uint64)
        self.max_distance = max_distance
        self.fingerprint = hashlib.sha256(
            "".join(f"{e['file']}:{e['phash']}" for e in self.entries).encode()).hexdigest()

    def search(self, image: Image, k: int) -> list[tuple[Hit, Path]]:
        import imagehash
        import numpy as np

        if not self.entries:
            return []
        query = np.uint64(int(str(imagehash.phash(image.convert("RGB"))), 16))
        distances = np.bitwise_count(self.hashes ^ query)
        order = np.argsort(distances, kind="stable")[:k]
        return [(Hit(title=self.entries[i]["title"], url=self.entries[i]["url"]), self.folder / self.entries[i]["file"])
                for i in order if int(distances[i]) <= self.max_distance]


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
