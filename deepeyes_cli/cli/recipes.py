"""`deepeyes recipes ls | show | cp | validate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepeyes_cli.cli.options import OverridesArg, group

app = group("List, show, copy and validate recipes.")


@app.command("ls")
def ls() -> None:
    """List the recipes visible from here (./recipes, $DEEPEYES_RECIPE_PATH, built-in)."""
    import yaml
    from rich.table import Table

    from deepeyes_cli.cli.console import console
    from deepeyes_cli.recipe.loader import BUILTIN_DIR, available_recipes, display_path

    table = Table("name", "description", "extends", "file", box=None, header_style="bold")
    for name, path in available_recipes().items():
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        desc = (data.get("run") or {}).get("description", "") if isinstance(data.get("run"), dict) else ""
        extends = data.get("extends") or ""
        where = "built-in" if path.parent.resolve() == BUILTIN_DIR.resolve() else display_path(path)
        table.add_row(name, str(desc), str(extends), where)
    console.print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Recipe name or YAML path.")],
    overrides: OverridesArg = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of YAML.")] = False,
    sources: Annotated[bool, typer.Option("--sources", help="Show which file or override set each key.")] = False,
) -> None:
    """Print a recipe fully resolved (extends, overrides, defaults), secrets redacted."""
    import json

    from deepeyes_cli.cli.console import console
    from deepeyes_cli.recipe.loader import load_recipe

    resolved = load_recipe(name, overrides or [])
    if sources:
        from rich.table import Table

        table = Table("key", "value", "set by", box=None, header_style="bold")
        for key, origin in sorted(resolved.sources.items(), key=lambda kv: kv[1]):
            value = _lookup(resolved.to_dict(), key)
            if isinstance(value, dict):
                continue
            table.add_row(".".join(key), repr(value), origin)
        console.print(table)
    elif as_json:
        console.print_json(json.dumps(resolved.to_dict()))
    else:
        from rich.syntax import Syntax

        console.print(Syntax(resolved.to_yaml(), "yaml", background_color="default"))


def _lookup(data: object, key: tuple[str, ...]) -> object:
    for part in key:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


@app.command("cp")
def cp(
    name: Annotated[str, typer.Argument(help="Recipe to copy.")],
    dest: Annotated[Path, typer.Argument(help="Destination file or directory.")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing file.")] = False,
) -> None:
    """Copy a recipe to edit it (`extends:` keeps pointing at the same parents)."""
    import shutil

    from deepeyes_cli.cli.console import console
    from deepeyes_cli.errors import RecipeError
    from deepeyes_cli.recipe.loader import find_recipe

    src = find_recipe(name)
    target = dest / src.name if dest.is_dir() else dest
    if target.suffix not in (".yaml", ".yml"):
        raise RecipeError(f"destination {target} is not a .yaml file", hint="name it like my-recipe.yaml")
    if target.exists() and not force:
        raise RecipeError(f"{target} already exists", hint="pass --force to overwrite it")
    if target.resolve() == src.resolve():
        raise RecipeError(f"{target} is the recipe itself", hint="choose another destination")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    console.print(f"copied {name} -> {target}", highlight=False)


@app.command("validate")
def validate(
    paths: Annotated[list[str], typer.Argument(help="Recipe files or names.")],
) -> None:
    """Validate recipes: unknown keys, wrong types, broken `extends:`. Exits 1 if any fails."""
    from deepeyes_cli.cli.console import console, print_error
    from deepeyes_cli.errors import RecipeError
    from deepeyes_cli.recipe.loader import load_recipe

    failed = 0
    for p in paths:
        try:
            r = load_recipe(p)
        except RecipeError as e:
            failed += 1
            print_error(f"{p}: {e.message}", e.hint)
            continue
        console.print(f"[green]ok[/]  {p} (digest {r.digest})", highlight=False)
    if failed:
        raise typer.Exit(1)
