"""Stages the training entrypoint (``python -m deepeyes_cli.train``) can run.

A stage is ``"module:function"`` with the signature
``function(recipe: Recipe, run_dir: Path, *, resume: bool) -> None``; it runs inside every
launched process and initializes distributed itself (:func:`deepeyes_cli.train.engine.init_distributed`).
RL registers itself here the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import LaunchError

STAGES: dict[str, str] = {
    "sft": "deepeyes_cli.train.sft_stage:main",
    "rl": "deepeyes_cli.train.rl.stage:main",
}


def stage_function(name: str) -> Callable[..., Any]:
    target = STAGES.get(name)
    if target is None:
        raise LaunchError(f"no training stage named '{name}'", hint=f"stages: {', '.join(sorted(STAGES))}")
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def recipe_file(run_dir: Path) -> Path:
    """The resolved recipe of the run's latest invocation (``run.json``)."""
    import json

    try:
        info = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError) as e:
        raise LaunchError(f"{run_dir} is not a run directory (run.json: {e})",
                          hint="start the stage with `deepeyes sft …`, which writes it") from e
    invocations = info.get("invocations") or [{}]
    return run_dir / str(invocations[-1].get("recipe_file", "recipe.yaml"))


def run_stage(run_dir: str | Path, *, stage: str | None = None, resume: bool = False) -> None:
    """Load the run's recipe and run ``stage`` (default: the run's own) in this process."""
    import json

    from deepeyes_cli.recipe.loader import load_recipe

    run_dir = Path(run_dir)
    path = recipe_file(run_dir)
    if stage is None:
        stage = str(json.loads((run_dir / "run.json").read_text()).get("stage", "sft"))
    recipe = load_recipe(path).recipe
    stage_function(stage)(recipe, run_dir, resume=resume)
