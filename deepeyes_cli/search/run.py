"""The functions behind `deepeyes search …` (the CLI module only parses flags and renders)."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import InputError, SearchError
from deepeyes_cli.search.cache import SearchCache
from deepeyes_cli.search.config import SearchConfig
from deepeyes_cli.search.image_index import build_image_index
from deepeyes_cli.search.local import Progress, build_text_index
from deepeyes_cli.search.types import SearchOutcome

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90``, ``45s``, ``30m``, ``12h``, ``7d``, ``2w`` → seconds."""
    m = _DURATION.match(text)
    if not m:
        raise InputError(f"{text!r} is not a duration", hint="e.g. 3600, 30m, 12h, 7d, 2w")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def open_cache(recipe: Any, path: str | Path | None = None, create: bool = False) -> SearchCache:
    """The recipe's cache file, or ``path``; a missing file is an error unless ``create``."""
    from deepeyes_cli.search.service import default_cache_path

    target = Path(path) if path else default_cache_path(recipe.search, recipe.run.cache_dir)
    if not create and not target.is_file():
        raise SearchError(f"no search cache at {target}",
                          hint="searches record one there; or pass --path, or set search.cache.path")
    return SearchCache(target)


def search_once(recipe: Any, query: str | None = None, image: Path | None = None,
                box: tuple[int, int, int, int] | None = None, top_k: int | None = None,
                run_id: str | None = None) -> tuple[SearchOutcome, dict[str, Any]]:
    """One text or image search through the recipe's searcher; returns the outcome and the run counters."""
    from deepeyes_cli.tools.search import open_searcher

    pil = None
    if image is not None:
        from PIL import UnidentifiedImageError
        from PIL.Image import DecompressionBombError

        from deepeyes_cli.search.images import crop_box, open_image

        try:
            data = image.read_bytes()
        except OSError as e:
            raise InputError(f"cannot read image {image}: {e.strerror or e}", hint="pass a JPEG, PNG or WebP file") \
                from e
        try:
            pil = open_image(data)
        except (UnidentifiedImageError, DecompressionBombError, OSError, ValueError) as e:  # junk, cut, or huge
            raise InputError(f"{image} is not a readable image ({type(e).__name__})",
                             hint="pass a JPEG, PNG or WebP file") from e
        if box is not None:
            pil = crop_box(pil, box)
    searcher = open_searcher(recipe.search, recipe.run.cache_dir, run_id=run_id)
    try:
        outcome = searcher.search_text(query or "", top_k) if pil is None else searcher.search_image(pil, top_k)
        return outcome, searcher.summary()
    finally:
        searcher.close()


def build_index(path: Path, out: Path | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """A JSONL corpus → bm25s text index directory; a folder of images → pHash index file."""
    if path.is_dir():
        info = build_image_index(path, out, progress)
        return {"kind": "image", **info}
    if path.suffix not in (".jsonl", ".json", ".ndjson"):
        raise InputError(f"{path} is neither a JSONL corpus nor a folder of images",
                         hint="text: corpus.jsonl with {title, url, text} per line; images: a directory")
    target = out or path.with_suffix(".index")
    meta = build_text_index(path, target, progress)
    return {"kind": "text", "path": str(target), **meta}


def check_bind(host: str, token: str | None) -> None:
    """Serving beyond loopback without a token would hand the SerpAPI budget to anyone on the network."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not token:
        raise SearchError(f"refusing to serve on {host} without a token",
                          hint="pass --token (or set DEEPEYES_SEARCH_TOKEN), or bind 127.0.0.1")


def serve(config: SearchConfig, cache_dir: str | None, host: str, port: int, token: str | None,
          run_id: str | None = None, on_ready: Any = None) -> dict[str, Any]:
    """Run the search server until interrupted; returns the server's counters."""
    import uvicorn

    from deepeyes_cli.search.server import create_app
    from deepeyes_cli.search.service import SearchService

    check_bind(host, token)
    # Bind here rather than in uvicorn so that --port 0 works: the kernel picks, we report it.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SearchError(f"cannot listen on {host}:{port}: {e.strerror}", hint="pick another --port") from e
    service = SearchService(config.model_copy(update={"url": None}), cache_dir=cache_dir, run_id=run_id)
    try:
        server = uvicorn.Server(uvicorn.Config(create_app(service, token), log_level="warning", access_log=False))
        if on_ready is not None:
            on_ready(service, sock.getsockname()[1])
        with _stop_signals_raise():
            try:
                server.run(sockets=[sock])
            except (KeyboardInterrupt, _Stopped):
                pass  # uvicorn already shut down gracefully; it re-raises the signal it caught
        return service.summary()
    finally:
        service.close()
        sock.close()


class _Stopped(Exception):
    pass


@contextlib.contextmanager
def _stop_signals_raise() -> Iterator[None]:
    """Make SIGTERM (like Ctrl-C) end the server with an exception, so the summary is still written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise _Stopped()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
