"""`deepeyes serve -r RECIPE [--host] [--port] [--api-key] [key=value ...]`: the agent behind an
OpenAI-compatible API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from deepeyes_cli.cli.options import DryRunOpt, OverridesArg, RecipeOpt, RunDirOpt


def _plan(resolved: Any) -> list[str]:
    r = resolved.recipe
    s = r.serve
    model = r.policy.url if r.policy.backend == "openai" else r.model.path
    return [f"policy: {r.policy.backend} ({model}); tools: {', '.join(r.agent.tools) or 'none'}",
            f"listen on http://{s.host}:{s.port}/v1 as model '{s.model_name}' "
            f"(auth: {'bearer key' if s.api_key else 'none'})",
            f"{s.max_concurrency} trajectories at once, {s.max_queue} waiting, then 429",
            f"at most {s.max_images} images of {s.max_image_pixels / 1e6:g} MP, {s.max_request_mb:g} MB per request"
            + ("; image URLs fetched" if s.allow_image_urls else ""),
            "trajectories saved" if s.save_trajectories else "trajectories not saved (serve.save_trajectories=true)"]


def serve(
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    host: Annotated[str | None, typer.Option(help="Address (default serve.host, 127.0.0.1). Off loopback an "
                                                  "API key is required.", show_default=False)] = None,
    port: Annotated[int | None, typer.Option(help="Port (default serve.port, 8000; 0: any free port).",
                                             show_default=False)] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="DEEPEYES_API_KEY", show_default=False,
                                                help="Bearer key clients must send (default serve.api_key).")] = None,
    run_dir: RunDirOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Serve the agent as an OpenAI-compatible API: POST /v1/chat/completions runs the whole
    loop (code sandbox and search included) and streams the turns; GET /v1/models, /health, /metrics."""
    import contextlib
    import sys
    from pathlib import Path

    from deepeyes_cli.cli.console import err_console
    from deepeyes_cli.cli.options import start_stage
    from deepeyes_cli.recipe.loader import load_recipe

    flags = [*(overrides or []), *([f"serve.host={host}"] if host else []),
             *([f"serve.port={port}"] if port is not None else [])]
    resolved = load_recipe(recipe, flags)
    if api_key:  # not an override: it would be written into the run directory's command line
        resolved.recipe.serve.api_key = api_key
    from deepeyes_cli.serve.server import check_exposure

    check_exposure(resolved.recipe.serve.host, resolved.recipe.serve.api_key)
    stage = start_stage("serve", recipe, flags, run_dir=run_dir, dry_run=dry_run, plan=_plan, resolved=resolved)
    if stage is None:
        return
    r = stage.recipe
    from deepeyes_cli.policy.factory import make_policy
    from deepeyes_cli.serve.server import serve as run_server

    save = Path(r.serve.trajectories_file) if r.serve.trajectories_file else stage.run_dir.path / "trajectories.jsonl"

    def ready(url: str) -> None:
        err_console.print(f"serving {r.serve.model_name} on {url}/v1 (trajectories: "
                          f"{save if r.serve.save_trajectories else 'not saved'})", highlight=False, markup=False)

    with contextlib.redirect_stdout(sys.stderr), err_console.status(f"loading the {r.policy.backend} policy …"):
        policy = make_policy(r)
    run_server(r, policy, recipe_digest=stage.resolved.digest, save_path=save, on_ready=ready,
               log_level="info" if r.serve.access_log else "warning")
