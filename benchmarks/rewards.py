"""Reward speed, as JSON.

Goals: rule scoring ≥ 5,000 samples/s on one core; a fully cached re-judge of 10,000
samples (`judge_file`, file in and file out) in < 5 s.

Rule scoring runs an RL-like mix: groups of 16 rollouts per prompt, every prompt distinct
(multiple choice in many dresses, numbers with units, yes/no, short text, math, search
trajectories, format errors, over-long answers), on trajectories held in memory, caches
cleared first; each sample gets the full breakdown dumped to the dict stored in the record.
The re-judge needs a cache holding a verdict for every sample. The first ``--http-fill``
samples (default 1,000) are judged through a real HTTP judge (the fake OpenAI-compatible
server), which also reports that path's throughput; the rest get the same verdicts written
straight into the cache with the judge's own keys (`Judge.remember`) — filling all 10,000
over HTTP took ~60 s on the shared 2-core machine and measured nothing the goal asks about.
Then the whole file is re-scored with every verdict cached, the server gone.

Usage: python benchmarks/rewards.py [--samples N] [--rejudge N] [--http-fill N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from deepeyes_cli.agent.trajectory import Trajectory, append_jsonl, read_jsonl
from deepeyes_cli.rewards.config import JudgeConfig, RewardConfig
from deepeyes_cli.rewards.synthetic import answer_turn, code_turn, make_trajectory, search_turn

DRESSES = ["{x}", "({x})", "{x}.", "\\boxed{{{x}}}", "The answer is {x}.", "答案是{x}", "{x}. because"]


def rollout_group(p: int, rng: random.Random) -> list[Trajectory]:
    """16 rollouts of one distinct prompt, in one of the shapes RL data has."""
    kind = p % 8
    out = []
    for k in range(16):
        tools = [code_turn(f"look {p}", f"print(image_1.size, {k})")] if k % 2 else []
        source = "perception"
        if kind in (0, 1):  # multiple choice
            gt, pred = "ABCD"[p % 4], rng.choice(DRESSES).format(x=rng.choice("ABCD"))
        elif kind == 2:  # counting, with units and separators
            n = 1000 + p
            gt, pred = f"{n:,}", rng.choice([str(n), f"{n} items", f"{n + 1}", f"There are {n} of them."])
        elif kind == 3:
            gt, pred = rng.choice(["yes", "no"]), rng.choice(["Yes.", "No, it is not.", "yes", "是的"])
        elif kind == 4:  # short text
            gt, pred = f"Tower {p}", rng.choice([f"the tower {p}", f"Tower {p}.", f"TOWER {p}"])
        elif kind == 5:  # math
            source = "reason"
            gt, pred = f"\\frac{{{p % 97 + 1}}}{{2}}", rng.choice([f"{(p % 97 + 1) / 2}", f"\\frac{{{p % 97 + 1}}}{{2}}"])
        elif kind == 6:  # search data, with and without a search
            source = "search"
            gt, pred = f"{1900 + p % 120}", f"{1900 + p % 120 + k % 2}"
            tools = [search_turn(f"search {p}", f"year {p}")] if k % 2 else tools
        else:  # format errors and over-long answers
            gt, pred = "B", "B. " + "x" * (k * 30)
            if k % 4 == 0:
                tools.append(f"<think>cut off {p}")
        turns = [*tools, answer_turn(f"so {p}", pred)]
        out.append(make_trajectory(turns, answer=gt, data_source=source, question=f"question {p}?",
                                   traj_id=f"p{p}-r{k}"))
    return out


def clear_caches() -> None:
    from deepeyes_cli.rewards import choices, mathcheck, normalize, numbers

    for fn in (normalize.normalize_text, normalize.answer_core, numbers.parse_quantity, choices.read_choice,
               choices.gold_letters, mathcheck._parse):
        fn.cache_clear()


def bench_rules(samples: int) -> dict[str, object]:
    from deepeyes_cli.rewards.reward import RewardScorer

    rng = random.Random(0)
    trajs = [t for p in range((samples + 15) // 16) for t in rollout_group(p, rng)][:samples]
    scorer = RewardScorer(RewardConfig(matching="rules"))
    for warm in trajs[:16 * 8]:  # imports (math-verify, sympy) are start-up cost, not per-sample cost
        scorer.score_by_rules(warm)
    clear_caches()
    decided = 0
    t = time.perf_counter()
    for traj in trajs:
        traj.reward = scorer.score_by_rules(traj).model_dump(mode="json")
        decided += traj.reward["decided_by"] == "rule"
    elapsed = time.perf_counter() - t
    rate = samples / elapsed
    return {"samples": samples, "seconds": round(elapsed, 3), "samples_per_s": round(rate),
            "rule_decided_share": round(decided / samples, 3), "goal_samples_per_s": 5000,
            "meets_goal": rate >= 5000}


def free_text(i: int) -> Trajectory:
    """An answer no rule decides: the judge must."""
    return make_trajectory([answer_turn("ok", f"it looks like item {i} to me" if i % 3 else "something else")],
                           answer=f"item {i}", question=f"What is object {i}?", traj_id=f"j{i}")


def fake_verdict(ground_truth: str, prediction: str) -> bool:
    return ground_truth in prediction


def bench_rejudge(n: int, http_n: int, workdir: Path) -> dict[str, object]:
    from deepeyes_cli.rewards.reward import RewardScorer
    from deepeyes_cli.rewards.scorefile import judge_file
    from deepeyes_cli.testing.fake_openai import FakeOpenAI

    trajs = [free_text(i) for i in range(n)]
    src, head = workdir / "traj.jsonl", workdir / "head.jsonl"
    append_jsonl(src, trajs)
    append_jsonl(head, trajs[:http_n])
    cache = workdir / "judge.sqlite"

    def verdict(body: dict) -> str:
        user = body["messages"][-1]["content"]
        ref = user.split("Reference answer:\n", 1)[1].split("\n\n", 1)[0]
        return "VERDICT: " + ("CORRECT" if fake_verdict(ref, user.split("<candidate>", 1)[1]) else "INCORRECT")

    with FakeOpenAI(verdict, model="judge") as fake:
        cfg = RewardConfig(cache_path=str(cache), judge=JudgeConfig(base_url=fake.base_url, model="judge",
                                                                    concurrency=64))
        t = time.perf_counter()
        first = judge_file(RewardScorer.from_config(cfg), head, workdir / "first.jsonl")
        http_s = time.perf_counter() - t
        requests = len(fake.requests)
    filler = RewardScorer.from_config(cfg)
    asks = [req for req in (filler.prepare(traj).request for traj in trajs[http_n:]) if req is not None]
    assert filler.judge is not None and len(asks) == n - http_n  # every sample needs the judge
    filler.judge.remember("judge", [(req, fake_verdict(req.ground_truth, req.prediction)) for req in asks],
                          reply="VERDICT: (filled directly)")
    # The server is gone: every verdict must come from the cache.
    t = time.perf_counter()
    scorer = RewardScorer.from_config(cfg)
    again = judge_file(scorer, src, workdir / "again.jsonl")
    elapsed = time.perf_counter() - t
    wrong = sum(traj.reward is not None and traj.reward["accuracy"] != float(fake_verdict(traj.sample.answer or "",
                                                                                         traj.reward["prediction"]))
                for traj in read_jsonl(workdir / "again.jsonl"))
    return {"samples": n, "http_fill": {"samples": http_n, "seconds": round(http_s, 2),
                                        "requests": requests, "unjudged": first.unjudged,
                                        "samples_per_s": round(http_n / http_s) if http_s else None},
            "filled_directly": len(asks), "cached_rejudge_s": round(elapsed, 3), "cache_hits": again.cache_hits,
            "judge_calls": again.judge_calls, "unjudged": again.unjudged, "wrong_verdicts": wrong, "goal_s": 5.0,
            "meets_goal": elapsed < 5.0 and again.judge_calls == 0 and again.unjudged == 0 and wrong == 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=20000, help="rule-scored samples")
    ap.add_argument("--rejudge", type=int, default=10000, help="samples in the cached re-judge")
    ap.add_argument("--http-fill", type=int, default=1000, help="of those, judged over HTTP to fill the cache")
    args = ap.parse_args()
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    if cores:
        os.sched_setaffinity(0, {min(cores)})  # rule scoring on one core
    result: dict[str, object] = {"rule_scoring": {"cores": 1, **bench_rules(args.samples)}}
    if cores:
        os.sched_setaffinity(0, cores)  # the fake judge server in the first pass needs its own core
    with tempfile.TemporaryDirectory() as tmp:
        result["cached_rejudge"] = bench_rejudge(args.rejudge, min(args.http_fill, args.rejudge), Path(tmp))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
