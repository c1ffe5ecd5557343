

from deepeyes_cli.cli import startup as _startup  # first, before typer and rich: see startup.py

_startup.install()
