"""The two rich consoles: results on stdout, messages and progress on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


def print_error(message: str, hint: str | None = None) -> None:
    """``error: …`` then ``hint: …`` on stderr, one line each, never wrapped."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    if hint:
        err_console.print(Text.assemble(("hint:", "bold cyan"), " ", hint), soft_wrap=True)


def print_warning(message: str) -> None:
    err_console.print(Text.assemble(("warning:", "bold yellow"), " ", message), soft_wrap=True)
