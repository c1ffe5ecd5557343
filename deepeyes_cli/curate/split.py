"""`curate split`: questions to RL, to cold-start SFT, or dropped, as the paper did.

- too easy (difficulty: more than ``max_correct`` of k right): dropped;
- hard and solved with tools at least ``rl_min_tool_accuracy`` of the time (tool-benefit's
  accuracy with tools, else difficulty's pass rate): RL;
- hard, not solved, with a kept synthesized trajectory: SFT (a share ``unsolved_to_rl`` of
  the unsolved goes to RL instead);
- hard, not solved, no kept trajectory: dropped.

Then each side is cut to its target mix per ``data_source`` (the largest set with exactly
those shares that the data allows; sources outside the mix are dropped), and RL gives
``val_fraction`` of each source to validation. Every choice orders questions by a hash of
(seed, id), so the split is stratified and the same for the same seed and inputs.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from deepeyes_cli.curate.store import DataDir, digest_of
from deepeyes_cli.curate.synthesize import read_kept


def _rank(seed: int, sid: str, salt: str = "") -> str:
    return hashlib.sha256(f"{seed}\0{salt}\0{sid}".encode()).hexdigest()


def apply_mix(rows: list[dict[str, Any]], mix: dict[str, float], seed: int, salt: str) -> tuple[
        list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, cut): the largest subset whose data_source shares match ``mix`` (as closely as
    whole numbers allow)."""
    if not mix:
        return rows, []
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["data_source"], []).append(r)
    total = sum(mix.values())
    shares = {k: v / total for k, v in mix.items() if v > 0}
    n = min((len(by.get(k, [])) / s for k, s in shares.items()), default=0.0)
    kept, cut = [], []
    for src, items in by.items():
        items = sorted(items, key=lambda r: _rank(seed, r["id"], salt))
        take = round(n * shares[src]) if src in shares else 0
        kept += items[:take]
        cut += items[take:]
    return kept, cut


def split(recipe: Any, data: DataDir, force: bool = False) -> dict[str, Any]:
    cfg = recipe.curate.split
    samples = data.load_samples()
    diff = {r["id"]: r for r in data.read_jsonl(data.path / "difficulty" / "questions.jsonl")}
    tb = {r["id"]: r for r in data.read_jsonl(data.path / "tool_benefit" / "questions.jsonl")}
    kept = read_kept(data)
    with_traj = Counter(t.sample.id for t in kept)
    max_correct = recipe.curate.difficulty.max_correct
    digest = digest_of("split", data.samples_digest(), cfg.model_dump(mode="json"), sorted(diff.items()),
                       sorted(tb.items()), sorted(with_traj.items()), max_correct)
    done = data.done("split", digest)
    if done is not None and not force:
        return {**done, "skipped": True}
    rl, sft, dropped = [], [], []
    for s in samples:
        row: dict[str, Any] = {"id": s.id, "data_source": s.data_source,
               "capability": str(s.metadata.get("capability") or s.data_source)}
        d, t = diff.get(s.id), tb.get(s.id)
        if d is not None and d["correct"] > max_correct:
            dropped.append({**row, "reason": "too easy"})
            continue
        tool_acc = t["acc_tools"] if t is not None else (d["pass_rate"] if d is not None else 0.0) or 0.0
        row["tool_accuracy"] = tool_acc
        row["trajectories"] = with_traj.get(s.id, 0)
        if tool_acc > 0 and tool_acc >= cfg.rl_min_tool_accuracy:
            rl.append({**row, "reason": "solved with tools"})
        elif int(_rank(cfg.seed, s.id, "unsolved")[:8], 16) / 16**8 < cfg.unsolved_to_rl:
            rl.append({**row, "reason": "unsolved, sent to RL (split.unsolved_to_rl)"})
        elif with_traj.get(s.id):
            sft.append({**row, "reason": "unsolved, has a synthesized trajectory"})
        else:
            dropped.append({**row, "reason": "unsolved, no synthesized trajectory"})
    rl, cut_rl = apply_mix(rl, cfg.rl_mix, cfg.seed, "rl")
    sft, cut_sft = apply_mix(sft, cfg.sft_mix, cfg.seed, "sft")
    dropped += [{**r, "reason": "outside the RL mix"} for r in cut_rl]
    dropped += [{**r, "reason": "outside the SFT mix"} for r in cut_sft]
    val: list[dict[str, Any]] = []
    if cfg.val_fraction:
        by: dict[str, list[dict[str, Any]]] = {}
        for r in rl:
            by.setdefault(r["data_source"], []).append(r)
        rl = []
        for items in by.values():
            items = sorted(items, key=lambda r: _rank(cfg.seed, r["id"], "val"))
            n_val = round(len(items) * cfg.val_fraction)
            val += items[:n_val]
            rl += items[n_val:]
    order = {s.id: i for i, s in enumerate(samples)}
    stage = data.stage("split")
    for name, rows in (("rl", rl), ("sft", sft), ("val", val), ("dropped", dropped)):
        data.write_jsonl(stage / f"{name}.jsonl", sorted(rows, key=lambda r: order[r["id"]]))
    summary = {name: {"total": len(rows), "by_source": dict(Counter(r["data_source"] for r in rows)),
                      "by_capability": dict(Counter(r["capability"] for r in rows))}
               for name, rows in (("rl", rl), ("sft", sft), ("val", val))}
    summary["dropped"] = dict(Counter(r["reason"] for r in dropped))
    data.finish("split", digest, summary)
    return summary
