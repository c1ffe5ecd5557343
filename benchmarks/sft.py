"""SFT step anatomy on the tiny model, as JSON: the data pipeline's share of step time
(image decoding, the image processor, collation; in DataLoader workers), tokens/s and peak
RSS (this process and its workers). Goal: data share <= 5 % with workers.

Usage: python benchmarks/sft.py [--samples 32] [--steps 12] [--workers 2] [--batch 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()

    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.testing.sft_data import write_sft_trajectories
    from deepeyes_cli.train.engine import DistInfo
    from deepeyes_cli.train.sft import run_sft

    work = Path(tempfile.mkdtemp(prefix="sft-bench-"))
    recipe = load_recipe("tiny").recipe
    data = write_sft_trajectories(recipe, work / "train.jsonl", args.samples, seed=7)
    recipe = load_recipe("tiny", [f"sft.datasets=[{data}]", f"sft.max_steps={args.steps}",
                                  f"sft.dataloader_workers={args.workers}", f"sft.per_device_batch_size={args.batch}",
                                  "sft.export=false", "sft.report_to=[]", f"sft.save_steps={10**6}"]).recipe
    t0 = time.perf_counter()
    result = run_sft(recipe, work / "run", DistInfo())
    wall = time.perf_counter() - t0
    rows = result.metrics[1:] or result.metrics  # the first step includes worker start-up
    step_s = sum(r["step_s"] for r in rows)
    data_s = sum(r["data_s"] for r in rows)
    tokens = sum(r["tokens"] for r in rows)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    share = data_s / step_s
    print(json.dumps({
        "samples": args.samples, "steps": len(result.metrics), "batch": args.batch, "workers": args.workers,
        "tokens_per_step": round(tokens / len(rows)), "tokens_per_s": round(tokens / step_s, 1),
        "step_s_median": round(statistics.median(r["step_s"] for r in rows), 3),
        "data_share": round(share, 4), "data_share_goal": 0.05, "data_share_met": share <= 0.05,
        "peak_rss_mb": round(own), "peak_rss_worker_mb": round(kids), "wall_s": round(wall, 1),
        "final_loss": result.final_loss}, indent=2))


if __name__ == "__main__":
    main()
