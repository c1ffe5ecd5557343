"""A benchmark's results as numbers: the headline exactly as the benchmark defines it,
breakdowns per category, tool use, turns and errors.

Unjudged items (no judge reachable) count as wrong in the headline, as in a benchmark whose
denominator is every item; ``scored_only`` gives the figure over the judged ones, and
``unjudged`` says how many there are, so a missing judge is never hidden.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from statistics import mean
from typing import Any

from deepeyes_cli.bench.registry import BenchSpec
from deepeyes_cli.bench.results import ItemResult
from deepeyes_cli.bench.scoring import ocrbench_group

DEFINITIONS = {
    "accuracy": "correct / items × 100 (micro)",
    "cycles_mean": "accuracy within each option cycle (cycle_category), then the mean of the cycles × 100",
    "points": "one point per item whose answer contains a reference (Final Score: Text Recognition + Scene VQA "
              "+ Doc VQA + KIE + HMER)",
    "versions_mean": "accuracy within each problem version, then the mean of the versions × 100",
    "f1_mean": "mean over items of the best SQuAD token F1 against the answer and its alternatives × 100",
    "split_harmonic": "harmonic mean of the accuracy on unseen_question and on unseen_entity × 100",
    "simplevqa_f1": "harmonic mean of is_correct and accuracy_given_attempted × 100",
}


def _val(r: ItemResult) -> float:
    return r.score if r.score is not None else 0.0


def _acc(rs: Sequence[ItemResult], f: Callable[[ItemResult], float] = _val) -> float | None:
    return round(100 * mean(f(r) for r in rs), 2) if rs else None


def _groups(rs: Sequence[ItemResult], key: Callable[[ItemResult], str]) -> dict[str, list[ItemResult]]:
    out: dict[str, list[ItemResult]] = defaultdict(list)
    for r in rs:
        out[key(r)].append(r)
    return dict(sorted(out.items()))


def _harmonic(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return a if b is None else b
    return round(2 * a * b / (a + b), 2) if a + b else 0.0


def headline(spec: BenchSpec, rs: Sequence[ItemResult], f: Callable[[ItemResult], float] = _val) -> float | None:
    if not rs:
        return None
    kind = spec.headline
    if kind == "points":
        return float(sum(round(f(r)) for r in rs))
    if kind == "cycles_mean":
        per = [_acc(g, f) for g in _groups(rs, lambda r: str(r.meta.get("cycle", "0"))).values()]
        return round(mean(p for p in per if p is not None), 2)
    if kind == "versions_mean":
        per = [_acc(g, f) for g in _groups(rs, lambda r: r.category).values()]
        return round(mean(p for p in per if p is not None), 2)
    if kind == "split_harmonic":
        splits = _groups(rs, lambda r: r.category)
        return _harmonic(_acc(splits.get("unseen_question", []), f), _acc(splits.get("unseen_entity", []), f))
    if kind == "simplevqa_f1":
        correct = sum(f(r) for r in rs)
        tried = sum(1 for r in rs if r.attempted)
        is_correct, given = correct / len(rs), (correct / tried if tried else 0.0)
        return round(100 * 2 * is_correct * given / (is_correct + given), 2) if is_correct + given else 0.0
    return _acc(rs, f)


def _tool_use(rs: Sequence[ItemResult]) -> dict[str, Any]:
    calls = [sum(r.tool_calls.values()) for r in rs]
    by_tool: Counter[str] = Counter()
    for r in rs:
        by_tool.update(r.tool_calls)
    return {"items": len(rs), "mean_tool_calls": round(mean(calls), 3) if calls else 0.0,
            "share_with_tools": round(sum(1 for c in calls if c) / len(rs), 4) if rs else 0.0,
            "by_tool": dict(by_tool)}


def _breakdowns(spec: BenchSpec, rs: Sequence[ItemResult]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if spec.headline == "cycles_mean":
        out["cycle"] = {k: {"n": len(g), "accuracy": _acc(g)} for k, g in
                        _groups(rs, lambda r: str(r.meta.get("cycle", "0"))).items()}
    if spec.scorer == "mme":
        out["task"] = {k: {"n": len(g), "accuracy": _acc(g)} for k, g in
                       _groups(rs, lambda r: r.category.split("/")[0]).items()}
        out["l2"] = {k: {"n": len(g), "accuracy": _acc(g)} for k, g in
                     _groups([r for r in rs if r.meta.get("l2")], lambda r: str(r.meta["l2"])).items()}
    if spec.scorer == "ocrbench":
        out["group_points"] = {k: {"n": len(g), "points": sum(round(_val(r)) for r in g)} for k, g in
                               _groups(rs, lambda r: ocrbench_group(r.category)).items()}
    if spec.scorer == "mathvista":
        skills: dict[str, list[ItemResult]] = defaultdict(list)
        for r in rs:
            for s in r.meta.get("skills") or []:
                skills[str(s)].append(r)
        out["skill"] = {k: {"n": len(g), "accuracy": _acc(g)} for k, g in sorted(skills.items())}
    if spec.name == "realx":
        out["capability"] = {k: {"n": len(g), "accuracy": _acc(g)} for k in ("perception", "search", "reason")
                             if (g := [r for r in rs if k in (r.meta.get("flags") or [])])}
    if spec.scorer == "simplevqa":
        tried = [r for r in rs if r.attempted]
        out["simplevqa"] = {"all": {"n": len(rs), "is_correct": _acc(rs), "is_not_attempted":
                                    round(100 * (1 - len(tried) / len(rs)), 2) if rs else None,
                                    "accuracy_given_attempted": _acc(tried)}}
    return out


def summarize(spec: BenchSpec, results: Sequence[ItemResult], *, circular: bool = False) -> dict[str, Any]:
    """Everything the report shows, as JSON-ready values."""
    vanilla = [r for r in results if int(r.meta.get("rotation", 0)) == 0]
    scored = [r for r in vanilla if r.score is not None]
    value = headline(spec, vanilla)
    out: dict[str, Any] = {
        "benchmark": spec.name, "title": spec.title, "items": len(vanilla), "scored": len(scored),
        "unjudged": sum(1 for r in vanilla if r.decided_by == "unjudged"),
        "errors": sum(1 for r in vanilla if r.decided_by == "error"),
        "no_answer": sum(1 for r in vanilla if not r.answered and r.decided_by != "error"),
        "headline": {"value": value, "label": spec.headline_label, "definition": DEFINITIONS[spec.headline],
                     "scored_only": headline(spec, scored), "paper_deepeyesv2_7b": spec.paper,
                     "paper_note": spec.paper_note},
        "by_category": {k: {"n": len(g), "accuracy": _acc(g), "mean_score": round(mean(_val(r) for r in g), 4)}
                        for k, g in _groups(vanilla, lambda r: r.category).items()},
        "breakdowns": _breakdowns(spec, vanilla),
        "tool_use": {k: _tool_use(g) for k, g in _groups(vanilla, lambda r: r.category).items()},
        "turns": dict(sorted(Counter(r.turns for r in vanilla).items())),
        "end_reasons": dict(Counter(r.end_reason or "none" for r in vanilla).most_common()),
        "decided_by": dict(Counter(r.decided_by for r in vanilla).most_common()),
    }
    out["tool_use"]["all"] = _tool_use(vanilla)
    if circular:
        rounds = _groups(results, lambda r: r.base_id)
        complete = {k: g for k, g in rounds.items() if len(g) == int(g[0].meta.get("rotations", len(g)))}
        out["circular"] = {
            "questions": len(complete),
            "accuracy": _acc([g[0] for g in complete.values()],
                             lambda r: float(all(_val(x) >= 0.5 for x in complete[r.base_id]))),
            "vanilla_accuracy": _acc([next((x for x in g if int(x.meta.get("rotation", 0)) == 0), g[0])
                                      for g in complete.values()]),
            "definition": "a question counts only if every rotation of its options is answered correctly"}
    return out
