"""The report's plots (matplotlib, Agg): accuracy and tool use per category, a histogram of
turns, the breakdown of errors and how items were decided."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOTS = ("accuracy_by_category.png", "tool_use_by_category.png", "turns_histogram.png", "errors.png")


def _bar(ax: Any, labels: list[str], values: list[float], title: str, ylabel: str) -> None:
    ax.bar(range(len(values)), values, color="#4c72b0")
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, rotation=30 if len(labels) > 3 else 0, ha="right" if len(labels) > 3 else "center",
                       fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    for i, v in enumerate(values):
        ax.annotate(f"{v:g}", (i, v), ha="center", va="bottom", fontsize=7)


def write_plots(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    name = summary["benchmark"]
    cats = summary["by_category"]
    written = []

    def save(fig: Any, file: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / file, dpi=100)
        plt.close(fig)
        written.append(out_dir / file)

    width = max(5.0, 0.6 * len(cats) + 2)
    fig, ax = plt.subplots(figsize=(width, 3.6))
    _bar(ax, list(cats), [c["accuracy"] or 0.0 for c in cats.values()], f"{name}: accuracy per category", "%")
    ax.set_ylim(0, 105)
    save(fig, PLOTS[0])

    tools = {k: v for k, v in summary["tool_use"].items() if k != "all"}
    fig, ax = plt.subplots(figsize=(width, 3.6))
    _bar(ax, list(tools), [float(v["mean_tool_calls"]) for v in tools.values()],
         f"{name}: tool calls per item, by category", "mean tool calls")
    save(fig, PLOTS[1])

    turns = summary["turns"]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    keys = sorted(int(k) for k in turns)
    ax.bar(keys, [turns[k] if k in turns else turns[str(k)] for k in keys], color="#55a868")
    ax.set_xlabel("model calls in the trajectory")
    ax.set_ylabel("items")
    ax.set_title(f"{name}: turns")
    ax.set_xticks(keys)
    save(fig, PLOTS[2])

    ends = summary["end_reasons"]
    decided = summary["decided_by"]
    problems = {"malformed rows": float(summary.get("data", {}).get("malformed", 0)),
                "backend errors": float(summary["errors"]), "unjudged": float(summary["unjudged"]),
                "no answer": float(summary.get("no_answer", 0))}
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(13, 3.4))
    _bar(a1, list(ends), [float(v) for v in ends.values()], "how trajectories ended", "items")
    _bar(a2, list(decided), [float(v) for v in decided.values()], "who decided the score", "items")
    _bar(a3, list(problems), list(problems.values()), "problems", "items")
    save(fig, PLOTS[3])
    return written
