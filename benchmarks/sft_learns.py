""""The tiny recipe learns": protocol-valid trajectories on held-out prompts, before and
after `deepeyes sft -r tiny`, run through the real agent loop (transformers backend,
greedy, the offline search tool). Prints JSON.

Protocol-valid: format reward 1 (rewards.format, tool-call tags checked), a parsed action
in every turn (a tool call or the answer, no parse issues), the trajectory ends with an
answer (every tag closed). Goal: 0 % before, >= 90 % after, all of it in < 5 min on 2 cores.
Usage: python benchmarks/sft_learns.py [--train 64] [--heldout 20] [--runs-dir runs] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SYSTEM = ("You answer questions about images. Think in <think> </think>; call the search tool as <tool_call> "
          "JSON </tool_call> when needed; give the final answer in <answer> </answer>.")
INSTRUCTION = "Think, then answer."


def protocol_valid(traj: Any) -> bool:
    from deepeyes_cli.rewards.format import check_format

    turns = [m.text for m in traj.messages if m.role == "assistant"]
    if traj.end_reason != "answered" or not turns:
        return False
    if any(t.parse_issues or t.action in ("invalid", "none") for t in traj.turns):
        return False
    return check_format(turns, tool_call_tags=True).ok


async def _evaluate(recipe: Any, tasks: list[Any]) -> list[Any]:
    from deepeyes_cli.agent.ask import build_runtime
    from deepeyes_cli.agent.loop import run_trajectories
    from deepeyes_cli.policy.factory import make_policy
    from deepeyes_cli.testing.sft_data import TOOLS
    from deepeyes_cli.tools.registry import open_toolbox

    policy = make_policy(recipe)
    try:
        async with open_toolbox(recipe, TOOLS) as toolbox:
            return await run_trajectories(tasks, build_runtime(recipe, policy, toolbox))
    finally:
        await policy.aclose()


def evaluate(recipe: Any, model_path: str, n: int, seed: int) -> dict[str, Any]:
    from deepeyes_cli.testing.sft_data import TOOLS, make_tasks

    r = recipe.model_copy(deep=True)
    r.model.path = model_path
    r.agent.tools = TOOLS
    r.agent.temperature = 0.0
    r.agent.concurrency = n
    r.policy.max_batch_size = n  # one batched generate per turn: the cheapest on CPU
    t0 = time.perf_counter()
    trajs = asyncio.run(_evaluate(r, make_tasks(n, seed, prefix="heldout")))
    valid = [protocol_valid(t) for t in trajs]
    return {"valid": sum(valid), "n": n, "rate": sum(valid) / n, "seconds": round(time.perf_counter() - t0, 1),
            "end_reasons": {k: sum(1 for t in trajs if t.end_reason == k) for k in {t.end_reason for t in trajs}},
            "example": trajs[0].response_text[:300]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=160)
    ap.add_argument("--heldout", type=int, default=20)
    ap.add_argument("--runs-dir", default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.testing.sft_data import write_sft_trajectories

    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sft-learns-"))
    runs = Path(args.runs_dir or work / "runs")
    # short prompts keep each CPU step cheap; synthesis and evaluation use the same ones
    recipe = load_recipe("tiny", [f"agent.system_prompt={SYSTEM}", f"agent.user_instruction={INSTRUCTION}"]).recipe
    t0 = time.perf_counter()
    data = write_sft_trajectories(recipe, work / "train.jsonl", args.train, seed=1)
    synth_s = time.perf_counter() - t0
    before = evaluate(recipe, recipe.model.path, args.heldout, seed=99)
    print(json.dumps({"before": before, "synthesis_s": round(synth_s, 1)}), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    run_dir = runs / "tiny-sft-learns"
    cmd = [sys.executable, "-m", "deepeyes_cli", "sft", "-r", "tiny", f"sft.datasets=[{data}]",
           f"run.runs_dir={runs}", "--run-dir", str(run_dir), *args.overrides]
    done = subprocess.run(cmd, capture_output=True, text=True)
    train_s = time.perf_counter() - t0
    if done.returncode != 0:
        print(json.dumps({"error": done.stderr[-2000:]}))
        sys.exit(1)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    after = evaluate(recipe, str(run_dir / "export"), args.heldout, seed=99)
    total = time.perf_counter() - start
    print(json.dumps({
        "train_samples": args.train, "heldout": args.heldout, "synthesis_s": round(synth_s, 1),
        "before": before, "train_s": round(train_s, 1), "steps": len(rows),
        "loss_first": rows[0]["loss"], "loss_last": rows[-1]["loss"], "after": after,
        "total_s": round(total, 1),
        "goal": {"before_0": before["valid"] == 0, "after_ge_90": after["rate"] >= 0.9, "under_5_min": total < 300},
        "run_dir": str(run_dir)}, indent=2))


if __name__ == "__main__":
    main()
