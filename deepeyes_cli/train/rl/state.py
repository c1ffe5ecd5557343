"""RL checkpoints: model, optimizer, per-rank RNG and the client state (step, sampler
cursor, alarm EMAs), written atomically; ``latest`` points at the newest complete one,
the last K are kept, and each holds an HF export (``hf/``) that ``ask``, ``bench`` and
vLLM load.

Layout: ``checkpoints/step_000004/{engine.pt, rng_rank0.pt …, client.json, hf/}`` and
``checkpoints/latest`` (a text file naming the directory). A directory is built under a
temporary name and renamed when complete, so a kill -9 leaves the previous one intact.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

from deepeyes_cli.fileio import atomic_write


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    out: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(s: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def latest(ckpt_dir: Path) -> Path | None:
    pointer = Path(ckpt_dir) / "latest"
    if not pointer.is_file():
        return None
    target = Path(ckpt_dir) / pointer.read_text().strip()
    return target if (target / "client.json").is_file() else None


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def save(ckpt_dir: Path, step: int, engine: Any, client: dict[str, Any], *, rank: int = 0, world: int = 1,
         keep: int = 2, processor: Any = None) -> Path:
    import torch

    ckpt_dir = Path(ckpt_dir)
    name = f"step_{step:06d}"
    tmp = ckpt_dir / f".{name}.tmp"
    final = ckpt_dir / name
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier(world)
    torch.save(rng_state(), tmp / f"rng_rank{rank}.pt")
    if rank == 0:  # replicas are identical (torch engine): rank 0 writes model and optimizer
        torch.save(engine.state_dict(), tmp / "engine.pt")
        engine.model.save_pretrained(tmp / "hf", safe_serialization=True)
        if processor is not None:
            processor.save_pretrained(tmp / "hf")
        atomic_write(tmp / "client.json", json.dumps(client, indent=1, default=str) + "\n")
    _barrier(world)
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        atomic_write(ckpt_dir / "latest", name + "\n")
        done = sorted(p for p in ckpt_dir.glob("step_*") if p.is_dir())
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier(world)
    return final


def load(ckpt_dir: Path, engine: Any, *, rank: int = 0) -> dict[str, Any]:
    import torch

    path = latest(ckpt_dir)
    assert path is not None
    engine.load_state_dict(torch.load(path / "engine.pt", weights_only=False))
    rng = path / f"rng_rank{rank}.pt"
    if rng.is_file():
        set_rng_state(torch.load(rng, weights_only=False))
    client: dict[str, Any] = json.loads((path / "client.json").read_text())
    return client
