"""The ``sft`` stage entry (see :mod:`deepeyes_cli.train.stages`): distributed set-up, the
rank-0 progress bar, :func:`deepeyes_cli.train.sft.run_sft`, clean shutdown."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deepeyes_cli.recipe.schema import Recipe


class _Progress:
    """A rich bar with loss, tokens/s and ETA (rank 0, stderr)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from deepeyes_cli.cli.console import err_console

        self.bar = Progress(TextColumn("sft"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]}  {task.fields[tps]} tok/s"), TimeRemainingColumn(),
                            console=err_console, transient=False, disable=not err_console.is_terminal
                            and not os.environ.get("DEEPEYES_PROGRESS"))
        self.task: Any = None

    def __call__(self, row: dict[str, Any]) -> None:
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task("sft", total=row["total_steps"], completed=row["step"] - 1,
                                          loss="—", tps="—")
        self.bar.update(self.task, completed=row["step"], loss=f"{row['loss']:.4f}", tps=f"{row['tokens_per_s']:.0f}")

    def close(self) -> None:
        if self.task is not None:
            self.bar.stop()


def _check_node(recipe: Recipe) -> None:
    import logging
    import socket

    from deepeyes_cli.errors import LaunchError
    from deepeyes_cli.train.preflight import env_checks

    device = "cpu" if recipe.model.device == "cpu" else "cuda"
    for c in env_checks(recipe, device):
        if c.status == "fail":
            raise LaunchError(f"node {socket.gethostname()}: {c.name}: {c.detail}",
                              hint="fix this node's environment (launch.env passes variables to every process)")
        if c.status == "warn":
            logging.getLogger(__name__).warning("%s: %s", c.name, c.detail)


def main(recipe: Recipe, run_dir: Path, *, resume: bool = False) -> None:
    from deepeyes_cli.train.engine import init_distributed, shutdown_distributed
    from deepeyes_cli.train.sft import run_sft

    if os.environ.get("LOCAL_RANK", "0") == "0":  # each node checks its own environment, once
        _check_node(recipe)
    dist = init_distributed(recipe.model.device)
    progress = _Progress() if dist.is_main else None
    try:
        run_sft(recipe, run_dir, dist, resume=resume, on_step=progress)
    finally:
        if progress is not None:
            progress.close()
        shutdown_distributed()
