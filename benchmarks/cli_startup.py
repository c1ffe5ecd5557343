"""Wall time of `deepeyes --help` against `python -c pass`, as JSON.

Goal: `deepeyes --help` under 0.3 s on a 2-core machine (heavy imports are deferred).
Usage: python benchmarks/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], runs: int) -> list[float]:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the page cache and .pyc files
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    exe = shutil.which("deepeyes") or str(__import__("pathlib").Path(sys.executable).with_name("deepeyes"))
    base = timed([sys.executable, "-c", "pass"], args.runs)
    helps = {name: timed(cmd, args.runs) for name, cmd in {
        "deepeyes --help": [exe, "--help"],
        "deepeyes recipes --help": [exe, "recipes", "--help"],
        "deepeyes --version": [exe, "--version"],
    }.items()}
    result = {
        "python_pass_s": round(statistics.median(base), 4),
        **{f"{k}_s": round(statistics.median(v), 4) for k, v in helps.items()},
        "overhead_s": round(statistics.median(helps["deepeyes --help"]) - statistics.median(base), 4),
        "goal_s": 0.3,
        "runs": args.runs,
    }
    result["meets_goal"] = result["deepeyes --help_s"] < 0.3
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
