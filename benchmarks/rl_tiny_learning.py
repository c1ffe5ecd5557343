"""Does `deepeyes rl -r tiny` learn? The synthetic task of testing/rl_task.py ("how many
colours are in the image?", 2 or 3), where one short code cell prints the answer.

1. SFT warm start through `deepeyes sft`: trajectories of the task written by the agent
   loop (live sandbox) with a scripted policy that calls the tool half of the time and
   otherwise answers "2" (right half of the time), so the SFT'd tiny model calls the tool
   about half of the time and, after the tool, copies what it printed.
2. How the warm start plays the task, sampled as RL samples (warm_start.json).
3. `deepeyes rl -r tiny` from that checkpoint for N steps, for each of 3 seeds.
4. JSON on stdout: per seed, mean reward over the first and last steps and the tool-call
   rate; the rise against the seed-to-seed spread; the curve in rl_tiny_learning.png.

    PYTHONPATH=. python benchmarks/rl_tiny_learning.py [RL overrides a.b=c ...] --out /tmp/rl-learn [--steps 20] [--seeds 0 1 2]
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

from deepeyes_cli.testing.rl_task import AGENT_ARGS

# rl.alarms.min_entropy: the task's turns are fixed text but for a token or two (tool or not; the digit), so a
# healthy SFT'd policy's mean token entropy is ~0.015 and falls as RL settles; the default 0.05 fired every step.
RL_ARGS = ["rl.datasets=[builtin:count]", *AGENT_ARGS, "agent.max_tokens_per_turn=48", "agent.max_turns=3",
           "sandbox.pool_size=2", "rl.alarms.min_entropy=0.001"]


def start(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "deepeyes_cli", *args], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env=env)


def cli(*args: str, log: Path) -> None:
    if start(*args, log=log).wait():
        raise SystemExit(f"deepeyes {' '.join(args[:3])} failed; see {log}")


def sft_data(path: Path, n: int, p_tool: float = 0.5, seed: int = 7, guess: str | None = "2") -> None:
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
    tasks = load_prompts([write_dataset(path.with_name(path.stem + "-prompts.jsonl"), n, seed=seed)])

    async def go() -> list:
        async with open_toolbox(recipe) as box:
            rt = build_runtime(recipe, ScriptedPolicy(scripted_turn(p_tool, 1.0, guess=guess, seed=seed)), box)
            return await run_trajectories(tasks, rt)

    trajs = asyncio.run(go())
    failed = [t for t in trajs if t.end_reason != "answered"]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(trajs)} warm-start trajectories did not end with an answer; first: "
                         f"{failed[0].end_reason} {failed[0].metadata.get('error', '')}")
    path.unlink(missing_ok=True)
    append_jsonl(path, trajs)


def policy_stats(model: str, n: int = 32, temperature: float = 1.0, seed: int = 1, work: Path | None = None) -> dict:
    """How the model plays the task on held-out prompts (sampled as RL samples at temperature
    1, or greedy at 0): the protocol-valid rate (benchmarks/sft_learns.py's rule), the
    tool-call rate, and how often the answer is right with and without a tool call."""
    from sft_learns import protocol_valid  # benchmarks/sft_learns.py

    from deepeyes_cli.agent.ask import build_runtime
    from deepeyes_cli.agent.loop import run_trajectories
    from deepeyes_cli.agent.records import tool_calls
    from deepeyes_cli.policy.factory import make_policy
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.testing.rl_task import write_dataset
    from deepeyes_cli.tools.registry import open_toolbox
    from deepeyes_cli.train.rl.prompts import load_prompts

    recipe = load_recipe("tiny", [*RL_ARGS, f"model.path={model}", f"agent.temperature={temperature}",
                                  f"agent.concurrency={n}", f"policy.max_batch_size={n}"]).recipe
    where = Path(work) if work else Path(model) if Path(model).is_dir() else Path(".")
    tasks = load_prompts([write_dataset(where / f"heldout-{seed}.jsonl", n, seed=1000 + seed)])
    random.seed(seed)
    t0 = time.perf_counter()

    async def go() -> list:
        policy = make_policy(recipe)
        try:
            async with open_toolbox(recipe) as box:
                return await run_trajectories(tasks, build_runtime(recipe, policy, box))
        finally:
            await policy.aclose()

    trajs = asyncio.run(go())
    used = [bool(tool_calls(t)) for t in trajs]
    right = [(t.final_answer or "").strip() == t.sample.answer for t in trajs]
    with_tool = [r for r, u in zip(right, used, strict=True) if u]
    without = [r for r, u in zip(right, used, strict=True) if not u]
    return {"model": model, "temperature": temperature, "n": n,
            "protocol_valid": sum(protocol_valid(t) for t in trajs) / n, "tool_rate": sum(used) / n,
            "right": sum(right) / n,
            "right_with_tool": sum(with_tool) / len(with_tool) if with_tool else None,
            "right_without_tool": sum(without) / len(without) if without else None,
            "answered": sum(t.end_reason == "answered" for t in trajs) / n,
            "seconds": round(time.perf_counter() - t0, 1)}


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
    ap.add_argument("--sft-samples", type=int, default=2048)
    ap.add_argument("--sft-epochs", type=int, default=3)
    ap.add_argument("--sft-lr", type=float, default=6e-3)
    ap.add_argument("--p-tool", type=float, default=0.5, help="share of warm-start trajectories that call the tool")
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
        sft_data(data, args.sft_samples, p_tool=args.p_tool)
        cli("sft", "-r", "tiny", f"sft.datasets=[{data}]", f"sft.epochs={args.sft_epochs}",
            f"sft.learning_rate={args.sft_lr}", f"sft.max_samples={args.sft_samples}", "sft.gradient_accumulation_steps=1",
            "sft.per_device_batch_size=8", "sft.save_steps=100000", "sft.report_to=[]",
            "--run-dir", str(out / "sft"), log=out / "sft.log")
    t_sft = time.perf_counter() - t0
    warm = out / "warm_start.json"
    if not warm.is_file():  # how the warm start plays the task, sampled as RL samples
        warm.write_text(json.dumps(policy_stats(str(export), 64, 1.0, seed=3, work=out), indent=2))
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
        "warm_start": json.loads((out / "warm_start.json").read_text()) if (out / "warm_start.json").is_file() else None,
        "sft_s": round(t_sft, 1), "total_s": round(time.perf_counter() - t0, 1),
        "plot": str(out / "rl_tiny_learning.png")}, indent=2))


if __name__ == "__main__":
    main()
