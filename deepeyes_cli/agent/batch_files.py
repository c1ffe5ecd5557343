"""The files of a batch directory (see ``agent/batch.py``): shards, manifest, images, and
the records read back; plus the summary type and cost helpers the runner reports with."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from deepeyes_cli.agent.trajectory import Trajectory, read_jsonl
from deepeyes_cli.errors import InputError
from deepeyes_cli.fileio import atomic_write

MANIFEST = "manifest.json"
IMAGES = "images"
SHARD_SIZE = 5000
TIMING_FIELDS = ("created_at", "wall_s")
TURN_TIMING_FIELDS = ("generation_s", "tool_s")
METADATA_TIMING_FIELDS = ("sandbox_close_s",)  # the loop's own clock readings kept in metadata

ProgressFn = Callable[[int, int, float], None]
CostFn = Callable[[Trajectory], float]


@dataclass
class BatchSummary:
    out_dir: Path
    total: int = 0  # (sample, attempt) pairs in the plan
    done: int = 0  # pairs with a record, now
    resumed: int = 0  # of those, found from an earlier run
    ran: int = 0  # run by this call
    errors: int = 0  # records of this call that ended with end_reason "error"
    correct: int = 0  # scored records (all, resumed included) with accuracy 1
    cost_usd: float = 0.0  # of this call (cost_of)
    prompt_tokens: int = 0  # of this call
    completion_tokens: int = 0
    stopped: str | None = None  # why new pairs stopped starting (should_stop), None when complete
    elapsed_s: float = 0.0
    concurrency: int = 1
    mean_in_flight: float = 0.0  # time-averaged trajectories in flight while pairs were pending

    @property
    def complete(self) -> bool:
        return self.done >= self.total

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["out_dir"] = str(self.out_dir)
        out["complete"] = self.complete
        return out


def trajectory_tokens(traj: Trajectory) -> tuple[int, int]:
    """Prompt and completion tokens of a trajectory's model calls."""
    return (sum(t.prompt_tokens or 0 for t in traj.turns), sum(t.completion_tokens or 0 for t in traj.turns))


def trajectory_cost(traj: Trajectory, input_per_mtok: float, output_per_mtok: float) -> float:
    """USD for a trajectory's model calls at the given prices (per million tokens)."""
    p, c = trajectory_tokens(traj)
    return (p * input_per_mtok + c * output_per_mtok) / 1e6


def pair_key(index: int, sample_id: str, attempt: int) -> str:
    return f"{index}:{sample_id}:{attempt}"


def attempt_seed(seed: int, sample_id: str, attempt: int) -> int:
    h = hashlib.sha256(f"{seed}\0{sample_id}\0{attempt}".encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def trajectory_id(tag: str, seed: int | None, sample_id: str, attempt: int) -> str:
    return hashlib.sha256(f"{tag}\0{seed}\0{sample_id}\0{attempt}".encode()).hexdigest()[:24]


def plan_digest(ids: Sequence[str], k: int, seed: int | None, tag: str) -> str:
    h = hashlib.sha256(json.dumps({"k": k, "seed": seed, "tag": tag, "n": len(ids)}).encode())
    for sid in ids:
        h.update(sid.encode() + b"\0")
    return h.hexdigest()[:16]


def shard_paths(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob("shard-*.jsonl"))


def iter_records(out_dir: Path) -> Iterator[Trajectory]:
    for shard in shard_paths(out_dir):
        try:
            yield from read_jsonl(shard)
        except ValueError as e:
            raise InputError(str(e), hint=f"the batch directory {out_dir} is damaged; delete the bad shard "
                                          "to run its pairs again") from e


def read_batch(out_dir: str | Path) -> list[Trajectory]:
    """Every record of a batch directory once, sorted by (sample index, attempt); a pair run
    again (``retry_failed``) gives its latest record. Image paths are relative to ``out_dir``
    (load them with ``ref.load(out_dir)``)."""
    seen: dict[tuple[int, int], Trajectory] = {}
    for traj in iter_records(Path(out_dir)):
        b = traj.metadata.get("batch") or {}
        seen[(int(b.get("index", -1)), int(b.get("attempt", 0)))] = traj
    return [seen[k] for k in sorted(seen)]


def canonical(traj: Trajectory) -> dict[str, Any]:
    """A record without its timing fields: what two runs of a deterministic backend share."""
    data = traj.model_dump(mode="json")
    for f in TIMING_FIELDS:
        data.pop(f, None)
    for f in METADATA_TIMING_FIELDS:
        (data.get("metadata") or {}).pop(f, None)
    for turn in data.get("turns", []):
        for f in TURN_TIMING_FIELDS:
            turn.pop(f, None)
    return data


class ShardWriter:
    """Appends records to this run's own shards (never to an earlier run's, whose last line may be torn)."""

    def __init__(self, out_dir: Path, shard_size: int) -> None:
        self.out_dir, self.shard_size = out_dir, shard_size
        existing = shard_paths(out_dir)
        self.next_index = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        self.f: IO[str] | None = None
        self.count = 0

    def write(self, line: str) -> None:
        if self.f is None or self.count >= self.shard_size:
            self.close()
            path = self.out_dir / f"shard-{self.next_index:05d}.jsonl"
            self.next_index += 1
            self.f, self.count = open(path, "a", encoding="utf-8"), 0  # noqa: SIM115 (kept open across writes)
        self.f.write(line + "\n")
        self.f.flush()  # in the OS's hands: survives kill -9
        self.count += 1

    def close(self) -> None:
        if self.f is not None:
            os.fsync(self.f.fileno())
            self.f.close()
            self.f = None


def store_images(traj: Trajectory, out_dir: Path, base_dir: Path | None) -> str:
    """The record as one JSON line, inline images moved to ``out_dir/images`` and relative paths
    of the input images re-based on ``out_dir``. Works on the dumped dict: the trajectory itself
    is left as it is (attempts of a sample share their Sample and image refs)."""
    data = traj.model_dump(mode="json")
    refs = list(data["sample"]["images"])
    refs += [p["image"] for m in data["messages"] for p in m["content"] if p.get("type") == "image"]
    for ref in refs:
        if ref.get("b64") is not None:
            target = out_dir / IMAGES / f"{ref['sha256']}.png"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, base64.b64decode(ref["b64"]))
            ref["path"], ref["b64"] = f"{IMAGES}/{ref['sha256']}.png", None
        elif ref.get("path") and base_dir is not None and not os.path.isabs(ref["path"]) \
                and not ref["path"].startswith(f"{IMAGES}/"):
            ref["path"] = os.path.relpath(base_dir / ref["path"], out_dir)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def check_manifest(out_dir: Path, digest: str, plan: dict[str, Any]) -> None:
    path = out_dir / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise InputError(f"{path} is damaged: {e}", hint="delete the directory to start the batch again") from e
        if old.get("plan_digest") != digest:
            raise InputError(f"{out_dir} holds another batch (other samples, k, seed or settings)",
                             hint="write to a new directory, or delete this one to start again")
        return
    atomic_write(path, json.dumps({"plan_digest": digest, **plan, "complete": False}, indent=2) + "\n")
