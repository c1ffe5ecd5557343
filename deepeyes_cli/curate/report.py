"""`curate report`: one self-contained HTML page (plots inline as PNG) from the stage summaries.

Plots: pass@k histogram (difficulty), tool-benefit distribution (accuracy with tools minus
without), mix by data_source and by capability (RL and SFT), cost per teacher model. Tables:
ingest (bad rows by reason), each stage's summary. Stages that have not run are listed as such.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from deepeyes_cli.curate.store import DataDir
from deepeyes_cli.fileio import atomic_write

STAGES = ("ingest", "difficulty", "tool_benefit", "synthesize", "split", "export")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _bar(title: str, labels: list[str], values: list[float], xlabel: str, ylabel: str) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.bar(labels, values, color="#4c72b0")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for lab in ax.get_xticklabels():
        lab.set_rotation(30 if len(labels) > 6 else 0)
    return _png(fig)


def _mix(split: dict[str, Any], key: str) -> str:
    import matplotlib.pyplot as plt

    sides = [s for s in ("rl", "sft", "val") if split.get(s, {}).get("total")]
    cats = sorted({c for s in sides for c in split[s][key]})
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    bottom = [0.0] * len(sides)
    for c in cats:
        vals = [float(split[s][key].get(c, 0)) for s in sides]
        ax.bar(sides, vals, bottom=bottom, label=c)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_title(f"mix by {key.removeprefix('by_')}")
    ax.set_ylabel("questions")
    if cats:
        ax.legend(fontsize=8)
    return _png(fig)


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) or "—"
    return str(v)


def build_report(data: DataDir, title: str = "deepeyes curate report") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    parts = [f"<h1>{html.escape(title)}</h1><p>{html.escape(str(data.path.resolve()))}</p>"]
    sums = {s: data.summary(s) for s in STAGES}
    parts.append("<h2>Stages</h2>" + _table([(s, "done" if sums[s] else "not run") for s in STAGES]))
    ing = sums["ingest"]
    if ing:
        parts.append("<h2>Ingest</h2>" + _table([("rows", ing["rows"]), ("samples", ing["samples"]),
                                                 ("bad rows", ing["bad"]), ("bad rows by reason", ing["reasons"]),
                                                 ("samples by data_source", ing["by_source"])]))
    d = sums["difficulty"]
    if d:
        hist = d["histogram"]
        parts.append("<h2>Difficulty</h2>" + _bar(f"pass@{d['k']}: correct answers out of {d['k']}", list(hist),
                                                   [float(v) for v in hist.values()], "correct of k", "questions")
                     + _table([("questions", d["questions"]), ("kept (hard)", d["kept"]),
                               ("max correct", d["max_correct"]), ("trajectories", d["trajectories"])]))
    tb = sums["tool_benefit"]
    if tb:
        rows = data.read_jsonl(data.path / "tool_benefit" / "questions.jsonl")
        deltas = Counter(round(r["delta"], 3) for r in rows)
        keys = sorted(deltas)
        parts.append("<h2>Tool benefit</h2>" + _bar("accuracy with tools − without", [f"{k:+.2f}" for k in keys],
                                                     [float(deltas[k]) for k in keys], "delta", "questions")
                     + _table([("questions", tb["questions"]), ("tools help", tb["tools_help"]),
                               ("mean accuracy, tools", tb["mean_acc_tools"]),
                               ("mean accuracy, no tools", tb["mean_acc_no_tools"]), ("rule", tb["rule"])]))
    sy = sums["synthesize"]
    if sy:
        models = sy["models"]
        parts.append("<h2>Synthesis</h2>" + _bar("cost per model (USD)", list(models),
                                                  [m["cost_usd"] for m in models.values()], "model", "USD")
                     + _table([("trajectories", sy["trajectories"]), ("kept", sy["kept"]),
                               ("questions with a kept trajectory", sy["questions_with_kept"]),
                               ("dropped by reason", sy["dropped"]), ("cost (USD)", sy["cost_usd"]),
                               ("stopped", sy["stopped"] or "no")])
                     + "".join(f"<h3>{html.escape(k)}</h3>" + _table(list(v.items())) for k, v in models.items()))
    sp = sums["split"]
    if sp:
        parts.append("<h2>Split</h2>" + _mix(sp, "by_source") + _mix(sp, "by_capability")
                     + _table([(s, sp[s]["total"]) for s in ("rl", "sft", "val")] + [("dropped", sp["dropped"])]))
    ex = sums["export"]
    if ex:
        parts.append("<h2>Export</h2>" + _table([("files", ", ".join(ex["files"])),
                                                 ("SFT trajectories", ex["sft_trajectories"]), ("RL", ex["rl"]),
                                                 ("val", ex["val"])]))
    parts.append(f"<details><summary>raw summaries</summary><pre>{html.escape(json.dumps(sums, indent=1))}</pre>"
                 "</details>")
    style = ("body{font-family:sans-serif;max-width:900px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
             "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>" \
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    path = data.path / "report.html"
    atomic_write(path, page)
    return path
