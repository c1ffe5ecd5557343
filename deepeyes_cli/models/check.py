"""Smoke test for a checkpoint: load through the one loader, process one image, generate."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import InputError

log = logging.getLogger(__name__)


def demo_image(width: int = 448, height: int = 336) -> Any:
    """A deterministic test image (coloured quadrants and a label) for smoke tests and demos."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    colors = ["#d62728", "#2ca02c", "#1f77b4", "#ff7f0e"]
    for i, c in enumerate(colors):
        x, y = (i % 2) * width // 2, (i // 2) * height // 2
        draw.rectangle([x, y, x + width // 2 - 1, y + height // 2 - 1], fill=c)
    draw.text((10, 10), "deepeyes", fill="white")
    return img


def open_image(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise InputError(f"image not found: {path}", hint="check the path") from e
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{path} is not a readable image", hint="use a JPEG, PNG or WebP file") from e


def smoke_test(recipe: Any, image: Path | None = None, question: str = "What is in this image?",
               max_new_tokens: int = 20) -> dict[str, Any]:
    import torch

    from deepeyes_cli.models.loading import load_model, load_processor, resolve_model_path

    cfg = recipe.model
    img = open_image(image) if image else demo_image()
    t0 = time.perf_counter()
    path = resolve_model_path(cfg.path, cache_dir=recipe.run.cache_dir, revision=cfg.revision,
                              local_files_only=cfg.local_files_only)
    processor = load_processor(path, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels,
                               revision=cfg.revision, local_files_only=cfg.local_files_only)
    model = load_model(path, dtype=cfg.dtype, device=cfg.device, attn_implementation=cfg.attn_implementation,
                       revision=cfg.revision, local_files_only=cfg.local_files_only)
    load_s = time.perf_counter() - t0
    log.info("loaded %s in %.2fs", path, load_s)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[img], return_tensors="pt").to(model.device)
    n_pad = int((inputs["input_ids"] == processor.image_token_id).sum())
    expected = int(inputs["image_grid_thw"].prod(-1).sum()) // processor.image_processor.merge_size ** 2
    if n_pad != expected:  # the "image features and image tokens do not match" crash, caught early
        raise InputError(f"processor produced {n_pad} image tokens for a grid of {expected}",
                         hint="the checkpoint's processor config is inconsistent")
    t1 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    gen_s = time.perf_counter() - t1
    new = out[0, inputs["input_ids"].shape[1]:]
    return {
        "model": path,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "device": str(model.device),
        "image_size": f"{img.width}x{img.height}",
        "image_grid_thw": inputs["image_grid_thw"][0].tolist(),
        "image_tokens": n_pad,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "new_tokens": len(new),
        "load_s": round(load_s, 3),
        "generate_s": round(gen_s, 3),
        "output": processor.decode(new, skip_special_tokens=True),
    }
