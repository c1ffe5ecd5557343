"""Preflight: everything that can be checked before a GPU hour is spent. ``deepeyes sft
--preflight`` prints it as a table; ``deepeyes sft`` runs it before every launch, and
each node's first process runs the environment checks again where it actually runs.

Checks: the data (image tokens match images, images decode, lengths vs cutoff, by the
recipe's drop/fail rules), the model path or hub id, the output directory (writable, free
disk for the kept checkpoints and the export), devices and the memory estimate for the
ZeRO stage, and the distributed environment (rendezvous address, NCCL interface, the
DeepSpeed accelerator).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from deepeyes_cli.errors import DeepeyesError

if TYPE_CHECKING:
    from deepeyes_cli.recipe.schema import Recipe
    from deepeyes_cli.train.data.index import DataIndex

Status = Literal["ok", "warn", "fail"]
GIB = 1024**3


@dataclass
class Check:
    name: str
    status: Status
    detail: str


@dataclass
class PreflightReport:
    checks: list[Check] = field(default_factory=list)
    index: DataIndex | None = None

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def add(self, name: str, status: Status, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]


def param_counts(model_path: str) -> tuple[int, int]:
    """(vision tower + projector, language model) parameter counts, from the config alone."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    config = AutoConfig.from_pretrained(model_path)
    with init_empty_weights():
        model = Qwen2_5_VLForConditionalGeneration._from_config(config)
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    total = sum(p.numel() for p in model.parameters())
    return vision, total - vision


def memory_estimate(trainable: int, frozen: int, zero_stage: int, world: int, mixed: str) -> float:
    """Bytes per device for weights, gradients and AdamW states (activations not included):
    ZeRO-1 shards the optimizer states, ZeRO-2 also the gradients, ZeRO-3 also the weights."""
    w = 2 if mixed in ("bf16", "fp16") else 4
    master = 4 if mixed in ("bf16", "fp16") else 0
    weights = float((trainable + frozen) * w)
    grads = float(trainable * w)
    optim = float(trainable * (8 + master))
    if zero_stage >= 1:
        optim /= world
    if zero_stage >= 2:
        grads /= world
    if zero_stage >= 3:
        weights /= world
    return weights + grads + optim


def _data_checks(report: PreflightReport, recipe: Recipe, processor: Any,
                 on_progress: Callable[[int, int], None] | None) -> None:
    from deepeyes_cli.train.sft import index_data

    s = recipe.sft
    try:
        index = index_data(recipe, processor, verify_images=True, on_progress=on_progress)
    except DeepeyesError as e:
        report.add("data", "fail", e.message)
        return
    report.index = index
    by_kind: dict[str, list[Any]] = {}
    for p in index.problems:
        by_kind.setdefault(p.kind, []).append(p)
    summ = index.summary()
    report.add("data", "ok" if index.samples else "fail",
               f"{summ['read']} read, {summ['kept']} usable, {summ['images']} images, {summ['trained_tokens']} "
               f"trained of {summ['tokens']} tokens, longest {summ['max_length']}")
    for kind, label in (("image_tokens", "image tokens = images"), ("image_unreadable", "images readable"),
                        ("no_target", "assistant tokens to train on"), ("other", "samples parse")):
        found = by_kind.get(kind, [])
        status: Status = "ok" if not found else ("fail" if s.bad_samples == "fail" else "warn")
        report.add(label, status, "all samples" if not found else
                   f"{len(found)} bad; first {found[0].origin}: {found[0].message}"
                   + ("" if status == "fail" else " (dropped: sft.bad_samples=drop)"))
    long = by_kind.get("too_long", [])
    status = "ok" if not long else ("fail" if s.overlong == "fail" else "warn")
    report.add(f"lengths <= cutoff_len {s.cutoff_len}", status, "all samples" if not long else
               f"{len(long)} longer (first {long[0].origin}: {long[0].message})"
               + ("; dropped (sft.overlong=drop)" if status == "warn" else ""))


def _disk_checks(report: PreflightReport, recipe: Recipe, run_root: Path, params: int | None) -> None:
    existing = run_root.resolve()
    while not existing.exists():  # created at launch; preflight leaves nothing behind
        existing = existing.parent
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".preflight-"):
            pass
    except OSError as e:
        report.add("output directory", "fail", f"{existing} is not writable: {e.strerror}")
        return
    free = shutil.disk_usage(existing).free
    if params is None:
        report.add("output directory", "ok", f"{run_root} writable, {free / GIB:.1f} GiB free")
        return
    w = 2 if recipe.launch.mixed_precision in ("bf16", "fp16") else 4
    need = params * (w + 12) * recipe.sft.save_total_limit + params * w  # checkpoints (+ AdamW) and the export
    status: Status = "ok" if free > need else "fail"
    report.add("output directory", status, f"{run_root} writable; {free / GIB:.1f} GiB free, "
               f"~{need / GIB:.1f} GiB needed for {recipe.sft.save_total_limit} checkpoints + export")


def _device_checks(report: PreflightReport, recipe: Recipe, counts: tuple[int, int] | None,
                   device: str) -> None:
    import torch

    la = recipe.launch
    if counts is None:
        return
    vision, lm = counts
    frozen_vision = recipe.sft.freeze_vision_tower and recipe.sft.freeze_projector
    trainable, frozen = (lm, vision) if frozen_vision else (lm + vision, 0)
    est = memory_estimate(trainable, frozen, la.zero_stage, la.world_size, la.mixed_precision)
    where = f"ZeRO-{la.zero_stage} over {la.world_size} ranks: ~{est / GIB:.1f} GiB/device for states (+ activations)"
    if device == "cpu":
        import psutil

        avail = psutil.virtual_memory().available
        need = est * la.gpus_per_node
        report.add("memory (CPU)", "ok" if need < avail else "fail",
                   f"{where}; {avail / GIB:.1f} GiB RAM available for {la.gpus_per_node} processes")
        return
    n = torch.cuda.device_count()
    report.add("GPUs on this node", "ok" if n >= la.gpus_per_node else "fail",
               f"{n} visible, launch.gpus_per_node={la.gpus_per_node}")
    if n:
        total = min(torch.cuda.get_device_properties(i).total_memory for i in range(n))
        status: Status = "ok" if est < 0.8 * total else ("warn" if est < total else "fail")
        report.add("GPU memory", status, f"{where}; {total / GIB:.0f} GiB per GPU"
                   + ("" if status == "ok" else "; raise zero_stage, enable offload or add GPUs"))


def env_checks(recipe: Recipe, device: str, environ: Mapping[str, str] | None = None) -> list[Check]:
    """The distributed environment of this node."""
    env = dict(os.environ if environ is None else environ)
    la = recipe.launch
    out: list[Check] = []
    multi = la.world_size > 1
    if multi:
        addr = env.get("MASTER_ADDR", la.master_addr)
        if la.nnodes > 1 and addr in ("127.0.0.1", "localhost") and "SLURM_JOB_ID" not in env:
            out.append(Check("rendezvous address", "warn", f"{addr} with {la.nnodes} nodes: only works when every "
                             "node is this machine; set launch.master_addr to node 0's address"))
        try:
            socket.gethostbyname(addr)
            out.append(Check("rendezvous address", "ok", f"{addr}:{env.get('MASTER_PORT', la.master_port)} resolves"))
        except OSError:
            out.append(Check("rendezvous address", "fail", f"{addr} does not resolve (launch.master_addr)"))
    ifname = env.get("NCCL_SOCKET_IFNAME")
    if ifname and device != "cpu":
        names = [n.lstrip("^=") for n in ifname.split(",")]
        have = set(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else set()
        missing = [n for n in names if have and not any(h.startswith(n) for h in have)]
        out.append(Check("NCCL_SOCKET_IFNAME", "fail" if missing else "ok",
                         f"no interface {', '.join(missing)} (have {', '.join(sorted(have))})" if missing
                         else ifname))
    if la.zero_stage > 0:
        try:
            import deepspeed  # noqa: F401

            out.append(Check("deepspeed", "ok", "importable"))
        except ImportError as e:
            out.append(Check("deepspeed", "fail", f"zero_stage={la.zero_stage} needs deepspeed: {e}"))
        if device == "cpu" and env.get("DS_ACCELERATOR", "cpu") != "cpu":
            out.append(Check("DS_ACCELERATOR", "fail", f"{env['DS_ACCELERATOR']} on a CPU run; set it to cpu"))
    if la.mixed_precision == "bf16" and device != "cpu":
        import torch

        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            out.append(Check("bf16", "fail", "this GPU has no bf16; set launch.mixed_precision=fp16"))
    return out


def run_preflight(recipe: Recipe, run_root: Path, *, device: str,
                  on_progress: Callable[[int, int], None] | None = None) -> PreflightReport:
    from deepeyes_cli.models.loading import resolve_model_path
    from deepeyes_cli.train.sft import load_sft_processor

    report = PreflightReport()
    m = recipe.model
    try:
        path = resolve_model_path(m.path, cache_dir=recipe.run.cache_dir, revision=m.revision,
                                  local_files_only=m.local_files_only)
        processor = load_sft_processor(recipe, path)
        counts = param_counts(path)
        report.add("model", "ok", f"{m.path} → {path} ({(counts[0] + counts[1]) / 1e9:.3g} B parameters)")
    except DeepeyesError as e:
        report.add("model", "fail", e.message)
        counts, processor = None, None
    except (OSError, ValueError) as e:
        report.add("model", "fail", f"{m.path}: {str(e).splitlines()[0]}")
        counts, processor = None, None
    if processor is not None:
        _data_checks(report, recipe, processor, on_progress)
    if recipe.sft.image_max_pixels < m.max_pixels:  # the original's 7B setting (262144 vs 12845056)
        report.add("image budget", "warn", f"sft.image_max_pixels {recipe.sft.image_max_pixels} < model.max_pixels "
                   f"{m.max_pixels}: training sees fewer visual tokens per image than ask/bench/RL")
    _disk_checks(report, recipe, run_root, None if counts is None else sum(counts))
    _device_checks(report, recipe, counts, device)
    report.checks += env_checks(recipe, device)
    return report
