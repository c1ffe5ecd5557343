"""`deepeyes search text | image | index | serve | cache stats|import|export|prune`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deepeyes_cli.cli.options import DryRunOpt, OverridesArg, RecipeOpt, RunDirOpt, group

if TYPE_CHECKING:
    from deepeyes_cli.search.types import SearchOutcome

app = group("Search the web by text or image through the cache; build offline indexes; serve a shared cache.")
cache_app = group("Inspect, share and trim the search cache.")
app.add_typer(cache_app, name="cache")

TopKOpt = Annotated[int | None, typer.Option("--top-k", "-k", min=1, max=20, show_default=False,
                                             help="Results to show (default: search.top_k).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
PathOpt = Annotated[Path | None, typer.Option("--path", show_default=False,
                                              help="Cache file (default: search.cache.path of the recipe).")]


def _plan(what: str) -> Any:
    def plan(resolved: Any) -> list[str]:
        s = resolved.recipe.search
        where = f"server {s.url}" if s.url else f"backend {s.backend}, mode {s.mode}, cache {s.cache.path or 'default'}"
        return [f"{what} via {where}, top_k {s.top_k}"]
    return plan


def _show(outcome: SearchOutcome, summary: dict[str, Any], as_json: bool, saved: list[Path] | None = None) -> None:
    from rich.table import Table

    from deepeyes_cli.cli.console import console, err_console

    if as_json:
        data = outcome.to_json()
        data.pop("images")
        console.print_json(json.dumps({**data, "thumbnails_saved": [str(p) for p in saved or []],
                                       "summary": summary}))
        return
    table = Table("#", "title", "url", "snippet" if outcome.kind == "text" else "thumbnail", box=None,
                  header_style="bold")
    for i, hit in enumerate(outcome.hits, 1):
        last = (hit.snippet or "") if outcome.kind == "text" else ("yes" if hit.thumbnail else "-")
        table.add_row(str(i), hit.title, hit.url, last)
    console.print(table)
    err_console.print(f"{outcome.cache} · backend {outcome.backend} · cost {outcome.cost:g} · "
                      f"{outcome.latency_s * 1000:.1f} ms" + (f" · thumbnails in {saved[0].parent}" if saved else ""),
                      highlight=False, markup=False)


def _finish(stage: Any, summary: dict[str, Any]) -> None:
    from deepeyes_cli.fileio import atomic_write

    atomic_write(stage.run_dir.path / "search_summary.json", json.dumps(summary, indent=2) + "\n")


def _run_id(stage: Any) -> str:
    """The budget's run: search.budget.run_id or $DEEPEYES_RUN_ID when given (a resumed run keeps
    its spent calls), else this command's run dir."""
    return str(stage.recipe.search.budget.run_id or os.environ.get("DEEPEYES_RUN_ID") or stage.run_dir.path.name)


@app.command("text")
def text(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    top_k: TopKOpt = None,
    as_json: JsonOpt = False,
    run_dir: RunDirOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Text search (Google via SerpAPI, or the local index) through the cache; prints the hits."""
    from deepeyes_cli.cli.options import start_stage
    from deepeyes_cli.search.run import search_once

    stage = start_stage("search", recipe, overrides, run_dir=run_dir, dry_run=dry_run, plan=_plan(f"search {query!r}"))
    if stage is None:
        return
    outcome, summary = search_once(stage.recipe, query=query, top_k=top_k, run_id=_run_id(stage))
    _finish(stage, summary)
    _show(outcome, summary, as_json)


@app.command("image")
def image(
    path: Annotated[Path, typer.Argument(help="Image file (JPEG, PNG, WebP …).")],
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    box: Annotated[str | None, typer.Option("--box", show_default=False,
                                            help="Search only this region: x1,y1,x2,y2 in pixels.")] = None,
    top_k: TopKOpt = None,
    save: Annotated[Path | None, typer.Option("--save-thumbnails", show_default=False,
                                              help="Write the thumbnails shown to the model into this folder.")] = None,
    as_json: JsonOpt = False,
    run_dir: RunDirOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Image search (Google Lens via SerpAPI, or the local pHash index) of a file or a region of it."""
    from deepeyes_cli.cli.options import start_stage
    from deepeyes_cli.search.images import parse_box
    from deepeyes_cli.search.run import search_once

    region = parse_box(box) if box else None
    stage = start_stage("search", recipe, overrides, run_dir=run_dir, dry_run=dry_run,
                        plan=_plan(f"image search {path}" + (f" box {box}" if box else "")))
    if stage is None:
        return
    outcome, summary = search_once(stage.recipe, image=path, box=region, top_k=top_k, run_id=_run_id(stage))
    _finish(stage, summary)
    saved = []
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(outcome.images, 1):
            target = save / f"{i:02d}.jpg"
            target.write_bytes(data)
            saved.append(target)
    _show(outcome, summary, as_json, saved)


@app.command("index")
def index(
    path: Annotated[Path, typer.Argument(help="corpus.jsonl ({title, url, text} per line) or a folder of images.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", show_default=False,
                                             help="Where to write (default: CORPUS.index/ or FOLDER/.deepeyes-phash.json).")] = None,
) -> None:
    """Build an offline index: BM25 over a JSONL corpus, or perceptual hashes of an image folder."""
    from rich.progress import Progress

    from deepeyes_cli.cli.console import console, err_console
    from deepeyes_cli.search.run import build_index

    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task(f"indexing {path}", total=None)
        info = build_index(path, out, progress=lambda done, total: bar.update(task, completed=done, total=total))
    if info["kind"] == "text":
        console.print(f"text index of {info['documents']} documents: {info['path']}\n"
                      f"use it with search.backend=local search.local.corpus={info['path']}", highlight=False)
    else:
        console.print(f"image index of {info['images']} images: {info['path']}\n"
                      f"use it with search.backend=local search.local.image_dir={path}", highlight=False)


@app.command("serve")
def serve(
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    host: Annotated[str, typer.Option(help="Address to bind; beyond loopback a token is required.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8390,
    token: Annotated[str | None, typer.Option(envvar="DEEPEYES_SEARCH_TOKEN", show_default=False,
                                              help="Bearer token clients must send (search.token on their side).")] = None,
    run_dir: RunDirOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Serve the recipe's backends, cache and budget over HTTP for every node of a run (search.url)."""
    from deepeyes_cli.cli.console import err_console
    from deepeyes_cli.cli.options import start_stage
    from deepeyes_cli.search.run import check_bind
    from deepeyes_cli.search.run import serve as run_server

    check_bind(host, token)
    stage = start_stage("search-serve", recipe, overrides, run_dir=run_dir, dry_run=dry_run,
                        plan=lambda r: [f"serve search ({r.recipe.search.backend}, {r.recipe.search.mode}) on "
                                        f"http://{host}:{port}" + (" with a bearer token" if token else "")])
    if stage is None:
        return

    def ready(service: Any, bound_port: int) -> None:
        err_console.print(f"search server on http://{host}:{bound_port} · backend {service.config.backend} · "
                          f"mode {service.config.mode} · cache {service.cache.path}", highlight=False, markup=False)

    summary = run_server(stage.recipe.search, stage.recipe.run.cache_dir, host, port, token,
                         run_id=_run_id(stage), on_ready=ready)
    _finish(stage, summary)


# --------------------------------------------------------------------------- cache


@cache_app.command("stats")
def cache_stats(
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    path: PathOpt = None,
    run: Annotated[str | None, typer.Option("--run", show_default=False,
                                            help="Also show the counters recorded by this run id.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Entries per backend, thumbnails, size, paid calls and cost; per-run counters with --run."""
    from rich.table import Table

    from deepeyes_cli.cli.console import console
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.search.run import open_cache

    cache = open_cache(load_recipe(recipe, overrides or []).recipe, path)
    stats = cache.stats()
    runs = cache.run_stats(run) if run else {}
    cache.close()
    if as_json:
        console.print_json(json.dumps({**stats, "runs": runs}))
        return
    table = Table("backend", "kind", "entries", "cost", box=None, header_style="bold")
    for row in stats["by_backend"]:
        table.add_row(row["backend"], row["kind"], str(row["entries"]), f"{row['cost']:g}")
    console.print(table)
    console.print(f"{stats['path']}: {stats['entries']} answers, {stats['blobs']} thumbnails "
                  f"({stats['blob_bytes'] / 1e6:.1f} MB), {stats['bytes'] / 1e6:.1f} MB on disk; "
                  f"{stats['paid_calls']} paid calls (cost {stats['paid_cost']:g}, {stats['failed_calls']} failed, "
                  f"{stats['unsettled_calls']} pending or cut short, {stats['calls_last_minute']} in the last "
                  "minute)", highlight=False, markup=False)
    for rid, counters in runs.items():
        console.print(f"run {rid}: " + ", ".join(f"{k} {v:g}" for k, v in sorted(counters.items())),
                      highlight=False, markup=False)


@cache_app.command("import")
def cache_import(
    source: Annotated[Path, typer.Argument(help="JSONL dump, or the original release's image-search cache JSON.")],
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    path: PathOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl, original, or auto (by content).")] = "auto",
    images_root: Annotated[Path | None, typer.Option("--images-root", show_default=False,
                                                     help="original: folder or .zip holding the cached images.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace answers already in the cache.")] = False,
) -> None:
    """Import answers so a team shares one cache instead of paying twice."""
    from rich.progress import Progress

    from deepeyes_cli.cli.console import console, err_console
    from deepeyes_cli.errors import InputError
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.search.run import open_cache
    from deepeyes_cli.search.transfer import import_jsonl, import_original, sniff_format

    if fmt not in ("auto", "jsonl", "original"):
        raise InputError(f"unknown --format {fmt!r}", hint="jsonl, original or auto")
    if not source.is_file():
        raise InputError(f"{source} does not exist")
    kind = sniff_format(source) if fmt == "auto" else fmt
    resolved = load_recipe(recipe, overrides or []).recipe
    cache = open_cache(resolved, path, create=True)
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task(f"importing {source}", total=None)
        tick = lambda n: bar.update(task, completed=n)  # noqa: E731
        if kind == "original":
            counts = import_original(cache, source, images_root, resolved.search.images.max_side, overwrite, tick)
        else:
            counts = import_jsonl(cache, source, overwrite, tick)
    cache.close()
    console.print(f"{kind}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())
                  + f" -> {cache.path}", highlight=False, markup=False)


@cache_app.command("export")
def cache_export(
    dest: Annotated[Path, typer.Argument(help="JSONL file to write ('-' for stdout).")],
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    path: PathOpt = None,
    backend: Annotated[str | None, typer.Option(show_default=False, help="Only this backend.")] = None,
    kind: Annotated[str | None, typer.Option(show_default=False, help="Only text or image answers.")] = None,
    no_raw: Annotated[bool, typer.Option("--no-raw", help="Leave out the raw upstream responses.")] = False,
) -> None:
    """Export answers (with thumbnails) as JSONL; the schema is in the README."""
    import sys

    from deepeyes_cli.cli.console import err_console
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.search.run import open_cache
    from deepeyes_cli.search.transfer import export_jsonl, export_jsonl_file

    cache = open_cache(load_recipe(recipe, overrides or []).recipe, path)
    if str(dest) == "-":
        n = export_jsonl(cache, sys.stdout, backend, kind, not no_raw)
    else:
        n = export_jsonl_file(cache, dest, backend, kind, not no_raw)
    cache.close()
    err_console.print(f"exported {n} answers" + ("" if str(dest) == "-" else f" to {dest}"), highlight=False)


@cache_app.command("prune")
def cache_prune(
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    path: PathOpt = None,
    older_than: Annotated[str | None, typer.Option("--older-than", show_default=False,
                                                   help="Drop answers recorded before this age (30d, 12h …).")] = None,
    backend: Annotated[str | None, typer.Option(show_default=False, help="Drop this backend's answers.")] = None,
    kind: Annotated[str | None, typer.Option(show_default=False, help="Drop text or image answers.")] = None,
    ledger_older_than: Annotated[str | None, typer.Option(
        "--ledger-older-than", show_default=False,
        help="Also forget paid-call records older than this (they count against run budgets).")] = None,
    vacuum: Annotated[bool, typer.Option("--vacuum", help="Compact the file afterwards.")] = False,
) -> None:
    """Drop answers by age, backend or kind, and thumbnails no answer uses any more."""
    from deepeyes_cli.cli.console import console
    from deepeyes_cli.errors import InputError
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.search.run import open_cache, parse_duration

    if not (older_than or backend or kind or ledger_older_than):
        raise InputError("nothing to prune", hint="give --older-than, --backend, --kind or --ledger-older-than")
    age = parse_duration(older_than) if older_than else None
    ledger_age = parse_duration(ledger_older_than) if ledger_older_than else None
    cache = open_cache(load_recipe(recipe, overrides or []).recipe, path)
    counts = cache.prune(age, backend, kind, ledger_age)
    if vacuum:
        cache.vacuum()
    cache.close()
    console.print(f"removed {counts['entries']} answers, {counts['blobs']} thumbnails, {counts['calls']} ledger rows",
                  highlight=False)
