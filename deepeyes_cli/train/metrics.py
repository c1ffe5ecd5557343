"""Training metrics: ``metrics.jsonl`` in the run directory (always), TensorBoard (default),
Weights & Biases when configured (``WANDB_MODE=offline`` works without an account), and the
loss-curve report. Only rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import InputError

log = logging.getLogger(__name__)


class MetricsLogger:
    def __init__(self, run_dir: str | Path, *, report_to: Sequence[str] = ("tensorboard",), enabled: bool = True,
                 every: int = 1, wandb_project: str = "deepeyes", wandb_mode: str | None = None,
                 run_name: str | None = None, config: dict[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.every = max(1, every)
        self.path = self.run_dir / "metrics.jsonl"
        self._tb: Any = None
        self._wandb: Any = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if "tensorboard" in report_to:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise InputError("sft.report_to has tensorboard but the tensorboard package is missing",
                                 hint="pip install tensorboard, or set sft.report_to=[]") from e
            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        if "wandb" in report_to:
            try:
                import wandb
            except ImportError as e:
                raise InputError("sft.report_to has wandb but the wandb package is missing",
                                 hint="pip install wandb (WANDB_MODE=offline needs no account)") from e
            self._wandb = wandb.init(project=wandb_project, name=run_name or self.run_dir.name, mode=wandb_mode,
                                     dir=str(self.run_dir), config=config or {}, resume="allow",
                                     id=self.run_dir.name.replace("/", "-")[:64])

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                for k, v in values.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if step % self.every:
            return
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(f"train/{k}", v, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl``, one per step (a step logged again after a resume: the last wins)."""
    rows: dict[int, dict[str, Any]] = {}
    p = Path(path)
    if not p.is_file():
        return []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # torn last line
        rows[int(row["step"])] = row
    return [rows[k] for k in sorted(rows)]


def loss_curve(run_dir: str | Path) -> Path | None:
    """``loss_curve.png`` (loss and learning rate per step) from ``metrics.jsonl``."""
    rows = read_metrics(Path(run_dir) / "metrics.jsonl")
    rows = [r for r in rows if r.get("loss") is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["loss"] for r in rows], label="loss", color="tab:blue")
    if len(rows) >= 10:
        k = max(2, len(rows) // 20)
        smooth = [sum(r["loss"] for r in rows[max(0, i - k + 1):i + 1]) / len(rows[max(0, i - k + 1):i + 1])
                  for i in range(len(rows))]
        ax.plot(steps, smooth, label=f"loss (mean of {k})", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("token-mean loss")
    ax.grid(alpha=0.3)
    if any("lr" in r for r in rows):
        ax2 = ax.twinx()
        ax2.plot(steps, [r.get("lr", 0.0) for r in rows], color="tab:green", alpha=0.5, label="lr")
        ax2.set_ylabel("learning rate")
    ax.legend(loc="upper right")
    fig.tight_layout()
    out = Path(run_dir) / "loss_curve.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
