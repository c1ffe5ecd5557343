"""``python -m deepeyes_cli.train --run-dir DIR [--resume] [--stage NAME]``: what every
process the launcher starts runs (torchrun / deepspeed / srun set RANK, WORLD_SIZE, …).
It reads the resolved recipe from the run directory, so every rank of every node trains on
exactly what ``deepeyes sft`` resolved and recorded."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepeyes_cli.train")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--stage", default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None)  # the deepspeed launcher's
    args, _unknown = parser.parse_known_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    from pathlib import Path

    from deepeyes_cli.errors import DeepeyesError
    from deepeyes_cli.logs import setup_logging
    from deepeyes_cli.train.stages import run_stage

    rank = os.environ.get("RANK", "0")
    setup_logging("info" if rank == "0" else "warning",
                  Path(args.run_dir) / "logs" / f"{args.stage or 'train'}-rank{rank}.log")
    try:
        run_stage(args.run_dir, stage=args.stage, resume=args.resume)
    except DeepeyesError as e:
        print(f"error: [rank {rank}] {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
