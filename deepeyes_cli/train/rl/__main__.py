"""``python -m deepeyes_cli.train.rl RUN_DIR``: the RL loop in one launched process.

The launcher (torchrun, deepspeed, srun, or none) sets RANK/WORLD_SIZE/MASTER_*; the
resolved recipe is read from ``RUN_DIR/recipe.yaml``, written by `deepeyes rl`.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def init_distributed() -> None:
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)


def main(argv: list[str] | None = None) -> int:
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.train.rl.loop import Trainer

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m deepeyes_cli.train.rl RUN_DIR [KEY=VALUE ...]", file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rank" + os.environ.get("RANK", "0") + " %(message)s")
    init_distributed()
    recipe = load_recipe(str(run_dir / "recipe.yaml"), args[1:]).recipe
    try:
        Trainer(recipe, run_dir).run()
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()  # cpu_facts §2: a barrier before destroy avoids the exit hang
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
