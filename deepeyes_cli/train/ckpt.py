"""Checkpoints: atomic, resumable, pruned; and the Hugging Face export.

Layout under a run directory::

    checkpoints/step-000050/engine/        model + optimizer + scheduler (torch_state.pt or DeepSpeed shards)
    checkpoints/step-000050/rng-rank{R}.pt per-rank python / numpy / torch / CUDA RNG
    checkpoints/step-000050/client_state.json   step, epoch, data cursor, recipe digest, … (the trainer's)
    checkpoints/latest                      name of the newest complete checkpoint
    export/                                 save_pretrained weights + processor + chat template

A checkpoint is written into ``.tmp-step-…`` by every rank, then rank 0 renames it and
rewrites ``latest`` (via a temporary file and ``os.replace``): a kill at any moment leaves
either the previous checkpoint or the new one, never half of one. Only the last
``keep`` are kept. Every rank must call :meth:`Checkpointer.save` (DeepSpeed saves are
collective); the run directory is on a filesystem every node sees.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import RunDirError
from deepeyes_cli.fileio import atomic_write
from deepeyes_cli.train.engine import DistInfo, barrier

LATEST = "latest"
_AUX_FILES = ("video_preprocessor_config.json", "generation_config.json")


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    def __init__(self, root: str | Path, dist: DistInfo, keep: int = 2) -> None:
        self.root = Path(root)
        self.dist = dist
        self.keep = max(1, keep)

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step-*") if (p / "client_state.json").is_file())

    def latest(self) -> Path | None:
        pointer = self.root / LATEST
        if pointer.is_file():
            p = self.root / pointer.read_text().strip()
            if (p / "client_state.json").is_file():
                return p
        done = self.complete()  # pointer lost (or points at a pruned dir): newest complete one
        return done[-1] if done else None

    def save(self, engine: Any, step: int, client_state: dict[str, Any]) -> Path:
        import torch

        final = self.root / step_name(step)
        tmp = self.root / f".tmp-{step_name(step)}"
        if self.dist.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)  # left by a killed save
            tmp.mkdir()
        barrier(self.dist)
        engine.save(tmp / "engine")
        torch.save(rng_state(), tmp / f"rng-rank{self.dist.rank}.pt")
        barrier(self.dist)
        if self.dist.is_main:
            state = {**client_state, "step": step, "world_size": self.dist.world_size}
            atomic_write(tmp / "client_state.json", json.dumps(state, indent=2, default=str) + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            atomic_write(self.root / LATEST, final.name + "\n")
            for old in self.complete()[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        barrier(self.dist)
        return final

    def load(self, engine: Any, path: Path) -> dict[str, Any]:
        """Restore engine state and this rank's RNG; returns the client state."""
        import torch

        try:
            state = dict(json.loads((path / "client_state.json").read_text()))
        except (OSError, ValueError) as e:
            raise RunDirError(f"checkpoint {path} is unreadable: {e}", hint="delete it to resume from the one before") from e
        engine.load(path / "engine")
        rng = path / f"rng-rank{self.dist.rank}.pt"
        if rng.is_file():
            set_rng_state(torch.load(rng, weights_only=False))
        return state


def export_hf(engine: Any, processor: Any, out_dir: str | Path, dist: DistInfo,
              source_dir: str | Path | None = None) -> Path:
    """Full weights (``save_pretrained``, safetensors) with the processor and its chat
    template, loadable by ``deepeyes ask --model DIR``, transformers and vLLM. Collective
    (ZeRO-3 gathers); rank 0 writes, atomically."""
    out = Path(out_dir)
    state = engine.full_state_dict()
    if dist.is_main:
        tmp = out.with_name(f".tmp-{out.name}")
        if tmp.exists():
            shutil.rmtree(tmp)
        engine.module.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        processor.save_pretrained(tmp)
        if source_dir is not None:  # files the processor does not write (vLLM asks for a video config)
            for name in _AUX_FILES:
                src = Path(source_dir) / name
                if src.is_file() and not (tmp / name).exists():
                    shutil.copy2(src, tmp / name)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    barrier(dist)
    return out
