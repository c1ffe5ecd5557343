"""The ``rl`` stage entry (see :mod:`deepeyes_cli.train.stages`): distributed set-up, the
trainer (it resumes by itself from the run's latest checkpoint), clean shutdown."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepeyes_cli.recipe.schema import Recipe


def main(recipe: Recipe, run_dir: Path, *, resume: bool = False) -> None:
    from deepeyes_cli.train.engine import init_distributed, shutdown_distributed
    from deepeyes_cli.train.rl.loop import Trainer

    dist = init_distributed(recipe.model.device)
    try:
        trainer = Trainer(recipe, Path(run_dir), dist=dist)
        trainer.run()
        trainer.close()  # not after a failure: its barrier would wait for ranks stuck elsewhere
    finally:
        shutdown_distributed()
