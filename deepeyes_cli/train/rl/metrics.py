"""What each RL step leaves in the run directory: ``metrics.jsonl`` (one line a step,
alarms included), TensorBoard events under ``tb/``, the rollouts as trajectory records
(``rollouts/step_N.jsonl``, open with ``deepeyes view``), and at the end ``report.md``
with reward, tool-use and length curves (``curves.png``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deepeyes_cli.agent.trajectory import Trajectory
    from deepeyes_cli.train.rl.alarms import Alarm

log = logging.getLogger(__name__)

CURVES = [("rollout/reward", "reward"), ("rollout/tool_calls", "tool calls / trajectory"),
          ("rollout/response_tokens", "response tokens"), ("actor/entropy", "entropy")]


class MetricsWriter:
    """The training floor's :class:`~deepeyes_cli.train.metrics.MetricsLogger` (metrics.jsonl,
    TensorBoard, W&B) plus the alarm names of each step, rollout dumps and the report."""

    def __init__(self, run_dir: Path, enabled: bool = True, report_to: Sequence[str] = ("tensorboard",)) -> None:
        from deepeyes_cli.train.metrics import MetricsLogger

        self.run_dir, self.enabled = Path(run_dir), enabled
        self.path = self.run_dir / "metrics.jsonl"
        self._logger = MetricsLogger(self.run_dir, report_to=report_to, enabled=enabled)

    def log(self, step: int, metrics: dict[str, float], alarms: Sequence[Alarm] = ()) -> None:
        for al in alarms:
            log.warning("step %d alarm %s", step, al.as_text())
        # a step re-run after kill -9 is logged again: readers keep the last line of a step
        self._logger.log(step, {**metrics, "alarms": [al.name for al in alarms]})  # type: ignore[dict-item]

    def dump_rollouts(self, step: int, trajs: Sequence[Trajectory], rank: int = 0, prefix: str = "step") -> Path:
        from deepeyes_cli.agent.trajectory import append_jsonl

        name = f"{prefix}_{step:06d}" + ("" if rank == 0 else f".rank{rank}")
        path = self.run_dir / "rollouts" / f"{name}.jsonl"
        path.unlink(missing_ok=True)  # a re-run step replaces its dump
        append_jsonl(path, trajs)
        return path

    def close(self) -> None:
        self._logger.close()

    def report(self) -> Path | None:
        return write_report(self.run_dir)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    by_step: dict[int, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a torn last line
                by_step[int(rec["step"])] = rec
    return [by_step[k] for k in sorted(by_step)]


def write_report(run_dir: Path) -> Path | None:
    rows = read_metrics(Path(run_dir) / "metrics.jsonl")
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3))
    steps = [r["step"] for r in rows]
    for ax, (key, title) in zip(axes, CURVES, strict=True):
        ax.plot(steps, [r.get(key) if r.get(key) is not None else float("nan") for r in rows], marker=".")
        ax.set_title(title)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(Path(run_dir) / "curves.png", dpi=100)
    plt.close(fig)
    first, last = rows[0], rows[-1]
    keys = ["rollout/reward", "rollout/accuracy", "rollout/tool_calls", "rollout/response_tokens",
            "actor/entropy", "actor/clip_fraction", "actor/grad_norm", "time/step_s"]
    lines = [f"# RL run report: {Path(run_dir).name}", "", f"{len(rows)} steps. ![curves](curves.png)", "",
             "| metric | first step | last step |", "|---|---|---|"]
    for k in keys:
        a, b = first.get(k), last.get(k)
        lines.append(f"| {k} | {'—' if a is None else f'{a:.4g}'} | {'—' if b is None else f'{b:.4g}'} |")
    alarms = sorted({a for r in rows for a in r.get("alarms", [])})
    lines += ["", f"Alarms fired: {', '.join(alarms) if alarms else 'none'}."]
    times = [k for k in last if k.startswith("time/")]
    lines += ["", "Step time (last step): " + ", ".join(f"{k[5:]} {last[k]:.2f}" for k in sorted(times) if last[k] is not None)]
    out = Path(run_dir) / "report.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
