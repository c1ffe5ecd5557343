"""Does `deepeyes rl -r tiny` learn? The synthetic counting task (testing/rl_task.py), where
calling the code tool reveals the answer.

1. SFT warm start through `deepeyes sft`: trajectories of the task written by the agent
   loop (live sandbox) with a scripted policy that calls the tool half of the time (else
   guesses), so the SFT'd tiny model uses the tool about half of the time.
2. `deepeyes rl -r tiny` from that checkpoint for N steps, for each of 3 seeds.
3. JSON on stdout: per seed, mean reward over the first and last steps and the tool-call
   rate; the rise against the seed-to-seed spread; the curve in rl_tiny_learning.png.

    PYTHONPATH=. python benchmarks/rl_tiny_learning.py --out /tmp/rl-learn [--steps 20] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from deepeyes_cli.testing.rl_task import SYSTEM_PROMPT

RL_ARGS = ["rl.datasets=[builtin:count]", "agent.tools=[code]", "agent.max_tokens_per_turn=96",
           "agent.max_turns=3", "sandbox.pool_size=2", f"agent.system_prompt={SYSTEM_PROMPT}"]


def start(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "deepeyes_cli", *args], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env=env)


def cli(*args: str, log: Path) -> None:
    if start(*args, log=log).wait():
        raise SystemExit(f"deepeyes {' '.join(args[:3])} failed; see {log}")


def sft_data(path: Path, n: int) -> None:
    """Trajectories of the task through the real agent loop and sandbox, scripted policy."""
    from deepeyes_cli.agent.ask import build_runtime
    from deepeyes_cli.agent.loop import run_trajectories
    from deepeyes_cli.agent.trajectory import append_jsonl
    from deepeyes_cli.policy.scripted import ScriptedPolicy
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.testing.rl_task import scripted_turn, write_dataset
    from deepeyes_cli.tools.registry import open_toolbox
    from deepeyes_cli.train.rl.prompts import load_prompts

    recipe = load_recipe("tiny", RL_ARGS).recipe
    tasks = load_prompts([write_dataset(path.with_name("sft-prompts.jsonl"), n, seed=7)])

    async def go() -> list:
        async with open_toolbox(recipe) as box:
            rt = build_runtime(recipe, ScriptedPolicy(scripted_turn(0.5, 1.0, rng=random.Random(7))), box)
            return await run_trajectories(tasks, rt)

    trajs = asyncio.run(go())
    path.unlink(missing_ok=True)
    append_jsonl(path, trajs)


def curve(run: Path) -> list[dict]:
    from deepeyes_cli.train.rl.metrics import read_metrics

    return read_metrics(run / "metrics.jsonl")


def plot(results: dict[int, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for seed, rows in results.items():
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["rollout/reward"] for r in rows], marker=".", label=f"seed {seed}")
        axes[1].plot(steps, [r["rollout/tool_calls"] for r in rows], marker=".", label=f"seed {seed}")
    axes[0].set_title("mean reward")
    axes[1].set_title("tool calls / trajectory")
    for ax in axes:
        ax.set_xlabel("RL step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sft-samples", type=int, default=128)
    ap.add_argument("--sft-epochs", type=int, default=8)
    ap.add_argument("--window", type=int, default=4, help="steps averaged at the start and at the end")
    ap.add_argument("--report-only", action="store_true", help="summarize the runs already in --out")
    ap.add_argument("rl_overrides", nargs="*")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    export = out / "sft" / "export"
    if not (export / "config.json").is_file():
        data = out / "sft-data.jsonl"
        sft_data(data, args.sft_samples)
        cli("sft", "-r", "tiny", f"sft.datasets=[{data}]", f"sft.epochs={args.sft_epochs}",
            "sft.learning_rate=3e-3", f"sft.max_samples={args.sft_samples}", "sft.gradient_accumulation_steps=1",
            "sft.per_device_batch_size=8", "sft.save_steps=100000", "sft.report_to=[]",
            "--run-dir", str(out / "sft"), log=out / "sft.log")
    t_sft = time.perf_counter() - t0
    if args.report_only:
        return summarize(out, args, {s: curve(out / f"rl-seed{s}") for s in args.seeds}, t_sft, t0)
    # the seeds run side by side: the same CPU time in all, and equal progress if cut short
    procs = {seed: start("rl", "-r", "tiny", f"rl.init_from={export}", f"run.seed={seed}",
                         f"rl.rollout.max_steps={args.steps}", *RL_ARGS, *args.rl_overrides,
                         "--run-dir", str(out / f"rl-seed{seed}"), log=out / f"rl-seed{seed}.log")
             for seed in args.seeds}
    for seed, proc in procs.items():
        if proc.wait():
            raise SystemExit(f"deepeyes rl (seed {seed}) failed; see {out / f'rl-seed{seed}.log'}")
    results = {seed: curve(out / f"rl-seed{seed}") for seed in args.seeds}
    summarize(out, args, results, t_sft, t0)


def summarize(out: Path, args: argparse.Namespace, results: dict[int, list[dict]], t_sft: float, t0: float) -> None:
    w = args.window
    per_seed = {}
    for seed, rows in results.items():
        rewards = [r["rollout/reward"] for r in rows]
        tools = [r["rollout/tool_calls"] for r in rows]
        per_seed[seed] = {"first": statistics.mean(rewards[:w]), "last": statistics.mean(rewards[-w:]),
                          "tool_calls_first": statistics.mean(tools[:w]), "tool_calls_last": statistics.mean(tools[-w:])}
    rises = [v["last"] - v["first"] for v in per_seed.values()]
    firsts = [v["first"] for v in per_seed.values()]
    noise = statistics.stdev(firsts) if len(firsts) > 1 else float("nan")
    plot(results, out / "rl_tiny_learning.png")
    print(json.dumps({
        "benchmark": "rl_tiny_learning", "steps": {s: len(r) for s, r in results.items()}, "seeds": args.seeds, "per_seed": per_seed,
        "mean_rise": statistics.mean(rises), "min_rise": min(rises),
        "seed_noise_std_of_start": noise,
        "rise_std_across_seeds": statistics.stdev(rises) if len(rises) > 1 else None, "rise_over_noise": statistics.mean(rises) / noise if noise else None,
        "tool_calls_collapsed": any(v["tool_calls_last"] < 0.05 for v in per_seed.values()),
        "sft_s": round(t_sft, 1), "total_s": round(time.perf_counter() - t0, 1),
        "plot": str(out / "rl_tiny_learning.png")}, indent=2))


if __name__ == "__main__":
    main()
