"""Logging set-up shared by every stage: rich on stderr, a plain file in the run directory,
and secrets replaced by ``***`` in both."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            msg = record.getMessage()
            for s in self.secrets:
                msg = msg.replace(s, "***")
            record.msg, record.args = msg, None
        return True


def setup_logging(level: str = "info", log_file: Path | None = None, secrets: Iterable[str] = ()) -> None:
    """Configure the ``deepeyes_cli`` logger once per process (idempotent)."""
    from rich.logging import RichHandler

    from deepeyes_cli.cli.console import err_console

    logger = logging.getLogger("deepeyes_cli")
    logger.setLevel(level.upper())
    logger.propagate = False
    redact = RedactingFilter(secrets)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    console = RichHandler(console=err_console, show_path=False, show_time=False, markup=False)
    console.addFilter(redact)
    logger.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        fh.addFilter(redact)
        logger.addHandler(fh)
