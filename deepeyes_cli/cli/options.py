"""Options shared by every stage, and the one function that starts a stage.

``deepeyes <stage> --recipe NAME|PATH [a.b=c ...] [--run-dir DIR] [--dry-run]``:
precedence is defaults < recipe YAML (with ``extends``) < overrides < explicit flags.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from deepeyes_cli.recipe.loader import ResolvedRecipe
    from deepeyes_cli.rundir import RunDir

def group(help: str) -> typer.Typer:
    """A subcommand group. Help is rendered by click, not rich: rich's help renderer imports
    markdown-it and friends and would double `deepeyes … --help` time (goal: < 0.3 s)."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, add_completion=False,
                       context_settings={"help_option_names": ["-h", "--help"]})


RecipeOpt = Annotated[
    str | None,
    typer.Option("--recipe", "-r", envvar="DEEPEYES_RECIPE", show_default=False,
                 help="Recipe name (see `deepeyes recipes ls`) or YAML path. Default: built-in 7B defaults."),
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(show_default=False, metavar="[KEY=VALUE]...",
                   help="Recipe overrides, e.g. agent.max_turns=5 model.path=/ckpt."),
]
RunDirOpt = Annotated[
    Path | None,
    typer.Option("--run-dir", show_default=False,
                 help="Run directory; an existing one is resumed. Default: runs/<recipe>-<stage>-<UTC time>/."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the resolved recipe and what would run, then exit.")
]
SlurmOpt = Annotated[
    bool, typer.Option("--slurm", help="Outside an allocation: write an sbatch script into the run directory "
                                       "and submit it.")
]


@dataclass
class Stage:
    resolved: ResolvedRecipe
    run_dir: RunDir

    @property
    def recipe(self) -> Any:
        return self.resolved.recipe


def print_dry_run(resolved: ResolvedRecipe, stage: str, plan: Sequence[str]) -> None:
    from rich.syntax import Syntax

    from deepeyes_cli.cli.console import console

    files = ", ".join(str(f) for f in resolved.files) or "built-in defaults"
    console.print(f"# stage: {stage}\n# recipe: {resolved.name} ({files}), digest {resolved.digest}",
                  highlight=False, markup=False)
    console.print(Syntax(resolved.to_yaml(redact=True), "yaml", background_color="default"))
    console.print("# would run:", highlight=False, markup=False)
    for line in plan:
        console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)


def start_stage(stage: str, recipe: str | None, overrides: Sequence[str] | None, *, run_dir: Path | None = None,
                dry_run: bool = False, plan: Callable[[ResolvedRecipe], Sequence[str]] | None = None,
                resolved: ResolvedRecipe | None = None) -> Stage | None:
    """Resolve the recipe; on ``--dry-run`` print it with the plan and return None, else open the
    run directory, start logging into it and return the stage."""
    from deepeyes_cli.cli.console import print_warning
    from deepeyes_cli.logs import setup_logging
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.rundir import RunDir

    if resolved is None:
        resolved = load_recipe(recipe, overrides or [])
    for key, var in resolved.missing_env.items():
        print_warning(f"{'.'.join(key)} uses ${{{var}}}, which is not set; it is left empty")
    if dry_run:
        print_dry_run(resolved, stage, plan(resolved) if plan else [f"deepeyes {stage}"])
        return None
    rd = RunDir.open(resolved, stage, ["deepeyes", *sys.argv[1:]], run_dir)
    # Worker processes started by this stage share per-run budgets (search) through this id.
    os.environ.setdefault("DEEPEYES_RUN_ID", rd.path.name)
    setup_logging(resolved.recipe.run.log_level, rd.log_path(), rd.secrets)
    return Stage(resolved, rd)
