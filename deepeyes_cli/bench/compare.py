"""`deepeyes bench compare RUN_A RUN_B`: the same benchmark's items in two runs side by side.

For each benchmark folder both runs have: the items that flipped (right in one, wrong in
the other), the change per category, and a paired bootstrap confidence interval of the
difference in mean score (items resampled with replacement, both runs together).
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean
from typing import Any

from deepeyes_cli.bench.results import ItemResult, read_results
from deepeyes_cli.errors import InputError


def _folders(run: Path) -> dict[str, Path]:
    """Benchmark folders of a run (a run directory, or one benchmark's folder)."""
    if (run / "scores.jsonl").is_file():
        return {run.name: run}
    found = {p.parent.name: p.parent for p in sorted(run.glob("*/scores.jsonl"))}
    if not found:
        raise InputError(f"{run}: not a bench run (no */scores.jsonl)", hint="give folders written by `deepeyes bench`")
    return found


def _results(folder: Path) -> dict[str, ItemResult]:
    return {k: r for k, r in read_results(folder / "scores.jsonl").items() if int(r.meta.get("rotation", 0)) == 0}


def _value(r: ItemResult) -> float:
    return r.score if r.score is not None else 0.0


def bootstrap_ci(diffs: list[float], samples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``diffs`` (paired per-item differences)."""
    import numpy as np

    if not diffs:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    d = np.asarray(diffs, dtype=float)
    means = np.concatenate([d[rng.integers(0, len(d), (min(200, samples - k), len(d)))].mean(axis=1)
                            for k in range(0, samples, 200)])
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


def compare_folders(a: Path, b: Path, samples: int = 2000, seed: int = 0) -> dict[str, Any]:
    ra, rb = _results(a), _results(b)
    common = [i for i in ra if i in rb]
    diffs = [_value(rb[i]) - _value(ra[i]) for i in common]
    lo, hi = bootstrap_ci(diffs, samples, seed)
    cats: dict[str, list[str]] = {}
    for i in common:
        cats.setdefault(ra[i].category, []).append(i)
    flipped = [{"id": i, "category": ra[i].category, "answer": ra[i].answer, "a": ra[i].prediction,
                "b": rb[i].prediction, "a_score": ra[i].score, "b_score": rb[i].score,
                "direction": "gained" if _value(rb[i]) >= 0.5 else "lost",
                "a_trajectory": ra[i].trajectory_id, "b_trajectory": rb[i].trajectory_id}
               for i in common if (_value(ra[i]) >= 0.5) != (_value(rb[i]) >= 0.5)]
    return {
        "a": str(a), "b": str(b), "common_items": len(common), "only_a": len(ra) - len(common),
        "only_b": len(rb) - len(common),
        "mean_a": round(100 * mean(_value(ra[i]) for i in common), 2) if common else None,
        "mean_b": round(100 * mean(_value(rb[i]) for i in common), 2) if common else None,
        "delta": round(100 * mean(diffs), 2) if diffs else None,
        "ci95": [round(100 * lo, 2), round(100 * hi, 2)],
        "per_category": {c: {"n": len(ids), "a": round(100 * mean(_value(ra[i]) for i in ids), 2),
                             "b": round(100 * mean(_value(rb[i]) for i in ids), 2),
                             "delta": round(100 * mean(_value(rb[i]) - _value(ra[i]) for i in ids), 2)}
                         for c, ids in sorted(cats.items())},
        "flipped": flipped,
        "gained": sum(1 for f in flipped if f["direction"] == "gained"),
        "lost": sum(1 for f in flipped if f["direction"] == "lost"),
    }


def compare_runs(run_a: str | Path, run_b: str | Path, samples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Every benchmark folder the two runs share (a single folder each: those two)."""
    fa, fb = _folders(Path(run_a)), _folders(Path(run_b))
    if len(fa) == 1 and len(fb) == 1:
        pairs = [(next(iter(fa)), next(iter(fa.values())), next(iter(fb.values())))]
    else:
        pairs = [(k, fa[k], fb[k]) for k in fa if k in fb]
    if not pairs:
        raise InputError(f"{run_a} and {run_b} share no benchmark",
                         hint=f"A has {', '.join(fa)}; B has {', '.join(fb)}")
    return {name: compare_folders(a, b, samples, seed) for name, a, b in pairs}
