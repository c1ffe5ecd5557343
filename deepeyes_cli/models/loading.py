"""One loader for every Qwen2.5-VL checkpoint: a local directory, a hub id, or
``builtin:tiny`` (random weights built offline). Tests load the tiny model through exactly
the code that loads the 7B, so what passes here is the 7B code path.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import ModelError
from deepeyes_cli.models.config import ModelConfig

if TYPE_CHECKING:
    from deepeyes_cli.models.processor import ImageOnlyQwen2_5_VLProcessor

log = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = ("tiny",)


def default_cache_dir() -> Path:
    if os.environ.get("DEEPEYES_CACHE"):
        return Path(os.environ["DEEPEYES_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepeyes"


def _is_offline(local_files_only: bool) -> bool:
    return local_files_only or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def resolve_model_path(spec: str, *, cache_dir: str | Path | None = None, revision: str | None = None,
                       local_files_only: bool = False) -> str:
    """Turn ``model.path`` into something ``from_pretrained`` accepts, building builtins."""
    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX):]
        if name not in BUILTIN_MODELS:
            raise ModelError(f"unknown built-in model '{spec}'",
                             hint=f"built-in models: {', '.join(BUILTIN_PREFIX + n for n in BUILTIN_MODELS)}")
        from deepeyes_cli.testing.tiny import ensure_tiny_model

        root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        return str(ensure_tiny_model(root / "models"))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{spec} is a directory without config.json",
                             hint="point model.path at a Hugging Face checkpoint directory")
        return str(path)
    if spec.startswith((".", "/", "~")) or path.suffix in (".json", ".safetensors", ".bin"):
        raise ModelError(f"model directory not found: {spec}", hint="check model.path")
    if spec.count("/") != 1:
        raise ModelError(f"'{spec}' is neither a local directory nor a hub id like Qwen/Qwen2.5-VL-7B-Instruct",
                         hint="set model.path=/path/to/checkpoint, a hub id, or builtin:tiny")
    if _is_offline(local_files_only):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return snapshot_download(spec, revision=revision, local_files_only=True)
        except (LocalEntryNotFoundError, OSError, ValueError) as e:
            raise ModelError(f"{spec} is not in the local Hugging Face cache and the hub is off",
                             hint="download it first (`hf download …`) or set model.path to a local copy") from e
    return spec


def _torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        if device.startswith("cuda") and torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, name)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"model.device={name} but no CUDA device is visible",
                         hint="set model.device=cpu, or check CUDA_VISIBLE_DEVICES")
    return name


def load_processor(path: str, *, min_pixels: int | None = None, max_pixels: int | None = None,
                   revision: str | None = None, local_files_only: bool = False) -> ImageOnlyQwen2_5_VLProcessor:
    from deepeyes_cli.models.processor import ImageOnlyQwen2_5_VLProcessor

    kwargs: dict[str, Any] = {"backend": "pil", "revision": revision, "local_files_only": local_files_only}
    size: dict[str, int] = {}
    if min_pixels is not None:
        size["shortest_edge"] = min_pixels
    if max_pixels is not None:
        size["longest_edge"] = max_pixels
    if size:
        kwargs["size"] = size
    try:
        return ImageOnlyQwen2_5_VLProcessor.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the processor of {path}: {str(e).splitlines()[0]}",
                         hint="check model.path; offline machines need a local copy") from e


def load_model(path: str, *, dtype: str = "auto", device: str = "auto", attn_implementation: str | None = None,
               revision: str | None = None, local_files_only: bool = False) -> Any:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    dev = _device(device)
    if attn_implementation == "flash_attention_2" and not dev.startswith("cuda"):
        log.warning("flash_attention_2 needs CUDA; using sdpa on %s", dev)
        attn_implementation = "sdpa"
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype, dev), "revision": revision,
                              "local_files_only": local_files_only}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device == "auto" and dev == "cuda" and torch.cuda.device_count() > 1:
        kwargs["device_map"] = "auto"  # shard a large model over the visible GPUs
    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load model {path}: {str(e).splitlines()[0]}",
                         hint="check model.path; offline machines need a local copy") from e
    if "device_map" not in kwargs:
        model = model.to(dev)
    return model.eval()


def load_model_and_processor(cfg: ModelConfig, cache_dir: str | Path | None = None) -> tuple[Any, Any]:
    path = resolve_model_path(cfg.path, cache_dir=cache_dir, revision=cfg.revision,
                              local_files_only=cfg.local_files_only)
    processor = load_processor(path, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels,
                               revision=cfg.revision, local_files_only=cfg.local_files_only)
    model = load_model(path, dtype=cfg.dtype, device=cfg.device, attn_implementation=cfg.attn_implementation,
                       revision=cfg.revision, local_files_only=cfg.local_files_only)
    return model, processor
