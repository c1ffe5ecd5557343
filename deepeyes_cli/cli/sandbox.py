"""`deepeyes sandbox serve | run | check | build-image`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepeyes_cli.cli.options import DryRunOpt, OverridesArg, RecipeOpt, RunDirOpt, group

app = group("The code sandbox: serve it over HTTP, run a cell, check isolation, build its Docker image.")

TokenOpt = Annotated[str | None, typer.Option("--token", envvar="DEEPEYES_SANDBOX_TOKEN", show_default=False,
                                              help="Bearer token clients must send (default: sandbox.token).")]
IsolationOpt = Annotated[str | None, typer.Option("--isolation", show_default=False,
                                                  help="bwrap, docker or none (default: sandbox.isolation).")]


def _sandbox_config(recipe: str | None, overrides: list[str] | None, isolation: str | None) -> object:
    from deepeyes_cli.recipe.loader import load_recipe

    extra = [f"sandbox.isolation={isolation}"] if isolation else []
    return load_recipe(recipe, [*(overrides or []), *extra])


@app.command("serve")
def serve(
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    host: Annotated[str, typer.Option(help="Address to listen on. Loopback unless you mean it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port, printed on start).")] = 8080,
    token: TokenOpt = None,
    workers: Annotated[int, typer.Option(help="Server processes. Must be 1: one process owns every kernel, so "
                                              "a session's requests always reach its kernel.")] = 1,
    isolation: IsolationOpt = None,
    run_dir: RunDirOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Serve sessions over HTTP: POST /jupyter_sandbox (the original's API), /sessions, /health, /metrics."""
    from deepeyes_cli.cli.console import err_console, print_warning
    from deepeyes_cli.cli.options import start_stage

    if workers != 1:
        raise typer.BadParameter("the sandbox server runs as one process (it owns every session's kernel); "
                                 "run more servers for more capacity", param_hint="--workers")
    resolved = _sandbox_config(recipe, overrides, isolation)
    cfg = resolved.recipe.sandbox  # type: ignore[attr-defined]
    token = token or cfg.token
    plan = [f"listen on http://{host}:{port} ({cfg.isolation} isolation, {cfg.pool_size} kernels ready, "
            f"at most {cfg.max_sessions} sessions, {cfg.memory_mb} MiB each)", "auth: bearer token" if token else
            "auth: none"]
    from deepeyes_cli.sandbox.server import exposure_warning
    from deepeyes_cli.sandbox.server import serve as run_server

    warning = exposure_warning(host, token)
    if warning:
        print_warning(warning)
    stage = start_stage("sandbox-serve", recipe, overrides, run_dir=run_dir, dry_run=dry_run,
                        plan=lambda _: plan, resolved=resolved)  # type: ignore[arg-type]
    if stage is None:
        return

    def ready(url: str) -> None:
        err_console.print(f"sandbox listening on {url}", highlight=False, markup=False)

    run_server(cfg, host=host, port=port, token=token, on_ready=ready)


@app.command("run")
def run(
    code: Annotated[str | None, typer.Argument(show_default=False, help="Python to run ('-' reads stdin).")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Run this file instead.")] = None,
    image: Annotated[list[Path] | None, typer.Option("--image", "-i", help="Input image (image_1, image_2 …).")] = None,
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    url: Annotated[str | None, typer.Option(help="A sandbox server (default: sandbox.url, else local).")] = None,
    token: TokenOpt = None,
    isolation: IsolationOpt = None,
    timeout: Annotated[float | None, typer.Option(min=0.001, help="Cell time limit in seconds.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write returned images here as PNG.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cell result as JSON.")] = False,
) -> None:
    """Run one cell in a fresh session and print what it returns (stdout, stderr, images …)."""
    import sys

    from deepeyes_cli.errors import InputError
    from deepeyes_cli.sandbox.oneshot import render_result, run_once

    if file is not None and code is not None:
        raise InputError("pass CODE or --file, not both")
    if file is not None:
        try:
            source = file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read {file}: {e}", hint="pass a Python source file (UTF-8)") from e
    elif code == "-":
        source = sys.stdin.read()
    elif code:
        source = code
    else:
        raise InputError("nothing to run", hint="pass CODE, '-' for stdin, or --file FILE")
    cfg = _sandbox_config(recipe, overrides, isolation).recipe.sandbox  # type: ignore[attr-defined]
    updates = {k: v for k, v in {"url": url, "token": token}.items() if v}
    if updates:
        cfg = cfg.model_copy(update=updates)
    result = run_once(cfg, source, image or [], timeout)
    typer.echo(render_result(result, out, as_json), nl=False)
    if result.status != "ok":
        raise typer.Exit(1)


@app.command("check")
def check(recipe: RecipeOpt = None, overrides: OverridesArg = None, isolation: IsolationOpt = None) -> None:
    """Say which isolation and limits this machine gives sessions, and start one kernel to prove it."""
    from deepeyes_cli.cli.console import console
    from deepeyes_cli.sandbox.oneshot import check_isolation

    cfg = _sandbox_config(recipe, overrides, isolation).recipe.sandbox  # type: ignore[attr-defined]
    for name, value in check_isolation(cfg):
        console.print(f"{name:<22} {value}", highlight=False, markup=False)


@app.command("build-image")
def build_image(
    tag: Annotated[str, typer.Option(help="Image tag (what sandbox.docker_image names).")] = "deepeyes-sandbox:latest",
    base: Annotated[str | None, typer.Option(envvar="DEEPEYES_SANDBOX_BASE", show_default=False,
                                             help="Base image (default: the Dockerfile's python:3.11-slim). "
                                                  "Offline: a local Debian base, e.g. the one "
                                                  "scripts/docker-engine.sh base imports.")] = None,
    context_out: Annotated[Path | None, typer.Option("--context-out", show_default=False,
                                                     help="Write the build context here instead of building.")] = None,
    ca_bundle: Annotated[Path | None, typer.Option("--ca-bundle", show_default=False,
                                                   help="CA certificates the build's pip trusts (default: "
                                                        "PIP_CERT / SSL_CERT_FILE when set).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not stream the build output.")] = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Build the sandbox's Docker image (sandbox_image/Dockerfile) with the engine at DOCKER_HOST."""
    import time

    from deepeyes_cli.cli.console import err_console
    from deepeyes_cli.sandbox.image import build_image as build
    from deepeyes_cli.sandbox.image import ca_bundle_for_build, write_build_context

    on = f" on {base}" if base else ""
    if dry_run or context_out is not None:
        where = write_build_context(context_out) if context_out is not None else None
        typer.echo(f"would build {tag}{on} from sandbox_image/Dockerfile" + (f"; context written to {where}"
                                                                             if where else ""))
        return
    started = time.monotonic()
    with err_console.status(f"building {tag}{on} …") as status:
        def line(text: str) -> None:
            if not quiet:
                err_console.print(text, highlight=False, markup=False, style="dim")
            if text.startswith("STEP ") or text.startswith("Step "):
                status.update(f"building {tag}{on}: {text[:100]}")

        image = build(tag, base=base, on_line=line, ca_bundle=ca_bundle or ca_bundle_for_build())
    typer.echo(f"built {image.tag} ({image.id}, {image.size / 1e6:.0f} MB, {time.monotonic() - started:.0f} s)")
