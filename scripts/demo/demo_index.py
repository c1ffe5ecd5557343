"""runs/demo/index.html: one page linking every stage's report, with the headline figures
of the run, each read from the JSON a stage wrote (nothing typed in by hand).

A figure whose file is missing or malformed is an error: the page never shows a number the
run did not produce.
"""

from __future__ import annotations

import html
import json
import statistics
from pathlib import Path
from typing import Any


class DemoOutputError(RuntimeError):
    """A stage's output the index needs is missing or malformed."""


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DemoOutputError(f"cannot read {path}: {e}") from e


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    except (OSError, ValueError) as e:
        raise DemoOutputError(f"cannot read {path}: {e}") from e


def rl_curve(metrics: Path) -> list[float]:
    """Mean rollout reward per step (the last line of a step wins, as after a resume)."""
    by_step: dict[int, float] = {}
    for row in _jsonl(metrics):
        if "rollout/reward" in row:
            by_step[int(row["step"])] = float(row["rollout/reward"])
    if not by_step:
        raise DemoOutputError(f"{metrics} has no rollout/reward rows")
    return [by_step[s] for s in sorted(by_step)]


BENCH = "heldout"  # the demo's mini benchmark file of the counting task, read by `bench heldout`


def bench_headline(run: Path, name: str = BENCH) -> tuple[str, float]:
    """(folder, headline value) of benchmark ``name`` in a bench run (``name`` or ``name-no-tools``)."""
    s = _json(run / "summary.json")
    for variant in (name, f"{name}-no-tools"):
        if isinstance(s, dict) and variant in s:
            try:
                return variant, float(s[variant]["headline"]["value"])
            except (KeyError, TypeError, ValueError) as e:
                raise DemoOutputError(f"{run / 'summary.json'}: {variant} has no headline value") from e
    raise DemoOutputError(f"{run / 'summary.json'} has no {name} result")


def headline(out: Path) -> dict[str, Any]:
    """The run's figures, from the stages' outputs under ``out``."""
    before, after = _json(out / "valid_before.json"), _json(out / "valid_after.json")
    sft_rows = [r for r in _jsonl(out / "sft" / "metrics.jsonl") if "loss" in r]
    if not sft_rows:
        raise DemoOutputError(f"{out / 'sft' / 'metrics.jsonl'} has no loss rows")
    curve = rl_curve(out / "rl" / "metrics.jsonl")
    w = max(1, len(curve) // 4)
    split = _json(out / "data" / "split" / "summary.json") if (out / "data" / "split" / "summary.json").is_file() else {}
    timings = {r["step"]: r["seconds"] for r in _jsonl(out / "timings.jsonl")} if (out / "timings.jsonl").is_file() else {}
    serve = _json(out / "serve.json")
    base, trained = bench_headline(out / "bench-base"), bench_headline(out / "bench-trained")
    return {
        "curate": {"sft_trajectories": sum(1 for _ in (out / "data" / "export" / "sft.jsonl").open()),
                   "rl_questions": sum(1 for _ in (out / "data" / "export" / "rl.jsonl").open()),
                   "val_questions": sum(1 for _ in (out / "data" / "export" / "val.jsonl").open()),
                   "split": split.get("counts", split.get("result", {}))},
        "protocol_valid": {"before": before["rate"], "after": after["rate"], "n": after["n"],
                           "before_valid": before["valid"], "after_valid": after["valid"]},
        "sft": {"steps": len(sft_rows), "loss_first": sft_rows[0]["loss"], "loss_last": sft_rows[-1]["loss"]},
        "rl": {"steps": len(curve), "reward_first": curve[0], "reward_last": curve[-1], "window": w,
               "reward_first_mean": statistics.mean(curve[:w]), "reward_last_mean": statistics.mean(curve[-w:]),
               "curve": curve},
        "bench": {"benchmark": base[0], "unit": "accuracy (%)", "base": base[1], "trained": trained[1],
                  "trained_folder": trained[0]},
        "serve": {"question": serve["question"], "answer": serve["answer"], "seconds": serve["seconds"]},
        "timings_s": timings,
    }


def _link(out: Path, rel: str, text: str) -> str:
    if not (out / rel).exists():
        return f"{html.escape(text)} <em>(not written)</em>"
    return f'<a href="{html.escape(rel)}">{html.escape(text)}</a>'


def _img(out: Path, rel: str) -> str:
    return f'<img src="{html.escape(rel)}" alt="{html.escape(rel)}">' if (out / rel).is_file() else ""


def summary_rows(h: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures as (label, text) rows: the index page's table and the demo's last lines."""
    pv, rl, b = h["protocol_valid"], h["rl"], h["bench"]
    return [
        ("protocol-valid (held-out prompts, real loop)",
         f"{pv['before']:.0%} ({pv['before_valid']}/{pv['n']}) → {pv['after']:.0%} ({pv['after_valid']}/{pv['n']})"),
        ("SFT loss", f"{h['sft']['loss_first']:.3f} → {h['sft']['loss_last']:.3f} over {h['sft']['steps']} steps"),
        ("RL mean reward, first → last step", f"{rl['reward_first']:.3f} → {rl['reward_last']:.3f} "
         f"(mean of first/last {rl['window']}: {rl['reward_first_mean']:.3f} → {rl['reward_last_mean']:.3f}; "
         f"{rl['steps']} steps)"),
        (f"bench {b['benchmark']} accuracy (%), base vs trained", f"{b['base']:.1f} vs {b['trained']:.1f}"),
        ("serve: one question via the openai client", f"{h['serve']['answer']!r} in {h['serve']['seconds']} s"),
    ]


def write_index(out: Path) -> dict[str, Any]:
    """Write ``out/index.html`` and ``out/headline.json``; return the headline figures."""
    out = Path(out)
    h = headline(out)
    (out / "headline.json").write_text(json.dumps(h, indent=2), encoding="utf-8")
    rows = summary_rows(h)
    stages = [
        ("curate", _link(out, "data/report.html", "data report"),
         f"{h['curate']['sft_trajectories']} SFT trajectories, {h['curate']['rl_questions']} RL and "
         f"{h['curate']['val_questions']} validation questions"),
        ("sft", _link(out, "sft/loss_curve.png", "loss curve") + " · " + _link(out, "sft/metrics.jsonl", "metrics"),
         _img(out, "sft/loss_curve.png")),
        ("rl", _link(out, "rl/report.md", "report") + " · " + _link(out, "rl/curves.png", "curves"),
         _img(out, "rl/curves.png")),
        ("bench (base)", _link(out, f"bench-base/{h['bench']['benchmark']}/report.html", "report"), ""),
        ("bench (trained)", _link(out, f"bench-trained/{h['bench']['trained_folder']}/report.html", "report"), ""),
        ("bench compare", _link(out, "compare.json", "compare.json"), ""),
        ("serve", _link(out, "serve.json", "the question and answer") + " · " + _link(out, "logs/serve.log", "log"),
         ""),
    ]
    times = ", ".join(f"{k} {v} s" for k, v in h["timings_s"].items())
    page = ["<!doctype html><meta charset=utf-8><title>deepeyes demo</title>",
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:.3em .8em;"
            "border-bottom:1px solid #ddd;text-align:left;vertical-align:top}img{max-width:36em}</style>",
            "<h1>deepeyes demo: the pipeline on the tiny model</h1>",
            "<p>Every figure below was measured in this run and read from the stages' outputs "
            "(<a href=\"headline.json\">headline.json</a>).</p>",
            "<h2>Headline</h2><table>"]
    page += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows]
    page += ["</table><h2>Stages</h2><table>"]
    page += [f"<tr><th>{s}</th><td>{links}</td><td>{extra}</td></tr>" for s, links, extra in stages]
    page += [f"</table><p>Wall time per step: {html.escape(times or 'not recorded')}</p>"]
    (out / "index.html").write_text("\n".join(page), encoding="utf-8")
    return h
