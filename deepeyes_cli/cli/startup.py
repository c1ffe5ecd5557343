"""Ctrl-C while the command is still starting (importing typer, rich and the subcommands,
before ``main.run`` can catch ``KeyboardInterrupt``) ends it the same way as later: one
``error: interrupted`` line and exit 130, never a traceback. Only the entry points install
this (``deepeyes``, ``python -m deepeyes_cli``), never a program that imports the package;
``main.run`` hands Ctrl-C back to Python once it is ready to catch it."""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED = "interrupted"
INTERRUPTED_HINT = "what finished is kept; re-run the same command to resume where the stage supports it"


def _interrupted_while_starting(signum: int, frame: object) -> None:
    os.write(2, f"error: {INTERRUPTED}\nhint: {INTERRUPTED_HINT}\n".encode())
    os._exit(130)


def is_entry_point(argv0: str) -> bool:
    return os.path.basename(argv0) == "deepeyes" or argv0.endswith(os.path.join("deepeyes_cli", "__main__.py"))


def install() -> None:
    """Catch an early Ctrl-C, if this process is the command and nobody else handles SIGINT."""
    if is_entry_point(sys.argv[0] if sys.argv else "") and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_starting)


def started() -> None:
    """From here on ``KeyboardInterrupt`` is raised and caught as usual."""
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
