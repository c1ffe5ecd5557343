"""The `deepeyes` command.

Only typer, rich and the standard library are imported here and in the subcommand
modules' top levels: torch, transformers & co. are imported inside the commands that need
them, so `deepeyes --help` stays fast (a test checks ``sys.modules``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from deepeyes_cli import __version__
from deepeyes_cli.cli import (
    ask,
    bench,
    completions,
    curate,
    judge,
    model,
    recipes,
    rl,
    sandbox,
    search,
    sft,
    view,
)
from deepeyes_cli.cli import serve as serve_cmd
from deepeyes_cli.cli.startup import INTERRUPTED, INTERRUPTED_HINT, started

app = typer.Typer(
    name="deepeyes",
    help="Reproduce, run and extend DeepEyesV2: a Qwen2.5-VL agent that thinks with images, code and search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Listed in --help in this order: what most users run first comes first.
app.command("ask")(ask.ask)
app.command("view")(view.view)
app.command("judge")(judge.judge)
app.command("serve")(serve_cmd.serve)
app.command("bench")(bench.bench)
app.add_typer(curate.app, name="curate")
app.command("sft")(sft.sft)
app.command("rl")(rl.rl)
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(search.app, name="search")
app.add_typer(recipes.app, name="recipes")
app.add_typer(model.app, name="model")
app.add_typer(completions.app, name="completions")

_DEBUG = {"on": bool(os.environ.get("DEEPEYES_DEBUG"))}


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        extra = []
        for pkg in ("torch", "transformers", "vllm"):
            try:
                extra.append(f"{pkg} {metadata.version(pkg)}")
            except metadata.PackageNotFoundError:
                pass
        typer.echo(f"deepeyes {__version__}" + (f" ({', '.join(extra)})" if extra else ""))
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.",
                                        envvar="DEEPEYES_DEBUG")] = False,
) -> None:
    _DEBUG["on"] = debug or _DEBUG["on"]


def run(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: renders expected errors as `error:`/`hint:` and exits 1."""
    from deepeyes_cli.errors import DeepeyesError

    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        _DEBUG["on"] = True
    try:
        started()
        app(args=args, prog_name="deepeyes")
    except DeepeyesError as e:
        if _DEBUG["on"]:
            raise
        from deepeyes_cli.cli.console import print_error

        print_error(e.message, e.hint)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # raised outside typer's own handling (e.g. during start-up)
        _interrupted()
        sys.exit(130)
    except SystemExit as e:
        if e.code == 130:  # typer turns Ctrl-C into a silent exit 130
            _interrupted()
        raise


def _interrupted() -> None:
    from deepeyes_cli.cli.console import print_error

    print_error(INTERRUPTED, INTERRUPTED_HINT)
