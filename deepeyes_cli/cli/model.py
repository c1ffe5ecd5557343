"""`deepeyes model build-tiny | check`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepeyes_cli.cli.options import DryRunOpt, OverridesArg, RecipeOpt, RunDirOpt, group

app = group("Build the tiny offline model; load and smoke-test any Qwen2.5-VL checkpoint.")


@app.command("build-tiny")
def build_tiny(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Directory to write (default: the cache).")] = None,
    seed: Annotated[int, typer.Option(help="Weight seed; same seed, same weights.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it is not empty.")] = False,
) -> None:
    """Build the random-weight tiny Qwen2.5-VL (what `model.path: builtin:tiny` uses)."""
    import shutil

    from deepeyes_cli.cli.console import console, err_console
    from deepeyes_cli.errors import ModelError

    with err_console.status("building tiny Qwen2.5-VL …"):
        if out is None:
            from deepeyes_cli.models.loading import default_cache_dir
            from deepeyes_cli.testing.tiny import ensure_tiny_model

            path = ensure_tiny_model(default_cache_dir() / "models", seed=seed)
        else:
            from deepeyes_cli.testing.tiny import build_tiny_model

            if out.exists() and any(out.iterdir()):
                if not force:
                    raise ModelError(f"{out} is not empty", hint="pass --force to overwrite it, or another --out")
                shutil.rmtree(out)
            path = build_tiny_model(out, seed=seed)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    console.print(f"tiny model ready: {path} ({size / 1e6:.1f} MB)", highlight=False)


def _check_plan(resolved: object) -> list[str]:
    r = resolved.recipe  # type: ignore[attr-defined]
    return [f"resolve model.path={r.model.path}",
            f"load processor (min_pixels={r.model.min_pixels}, max_pixels={r.model.max_pixels}) and model "
            f"(dtype={r.model.dtype}, device={r.model.device})",
            "generate from one image and one question, report timings"]


@app.command("check")
def check(
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    image: Annotated[Path | None, typer.Option(help="Image to use (default: a generated test card).")] = None,
    question: Annotated[str, typer.Option(help="Question to ask.")] = "What is in this image?",
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens to generate.")] = 20,
    run_dir: RunDirOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Load the recipe's model through the one loader and generate once: a smoke test for a checkpoint."""
    from deepeyes_cli.cli.console import console, err_console
    from deepeyes_cli.cli.options import start_stage

    stage = start_stage("model", recipe, overrides, run_dir=run_dir, dry_run=dry_run, plan=_check_plan)
    if stage is None:
        return
    from deepeyes_cli.models.check import smoke_test

    with err_console.status("loading model …"):
        report = smoke_test(stage.recipe, image=image, question=question, max_new_tokens=max_new_tokens)
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for k, v in report.items():
        table.add_row(k, str(v))
    console.print(table)
    (stage.run_dir.path / "model_check.json").write_text(__import__("json").dumps(report, indent=2) + "\n")
