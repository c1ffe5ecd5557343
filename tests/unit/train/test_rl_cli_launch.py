"""`deepeyes rl --dry-run` shows the launch the head node would make: torchrun by default
for the 7b recipe, an sbatch script (one srun task per node) with --slurm."""

from __future__ import annotations

import subprocess
import sys


def _dry_run(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "deepeyes_cli", "rl", "-r", "7b", "--dry-run", *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_rl_dry_run_uses_torchrun_on_every_node() -> None:
    out = _dry_run()
    assert "launcher torchrun" in out and "sbatch --parsable" not in out
    assert out.count("[node ") == 4  # 7b: 4 nodes x 8 GPUs, one torchrun per node


def test_rl_slurm_writes_and_submits_an_sbatch_script() -> None:
    out = _dry_run("--slurm")
    assert "launcher srun" in out
    assert "sbatch --parsable" in out and "rl-<UTC time>/sbatch.sh" in out
