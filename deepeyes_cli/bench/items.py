"""A benchmark item: one question as a benchmark defines it, before it becomes a trajectory.

Images stay undecoded (base64 text, bytes or a path) until the item runs, so a 1,000-row
HR-Bench 8K file does not sit in memory as 1,000 decoded 8K images.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import InputError

if TYPE_CHECKING:
    from PIL.Image import Image

# One image as a file gives it: encoded bytes, base64 text, a path, or an already decoded PIL image.
ImageSource = bytes | str | Path | Any


@dataclass
class BenchItem:
    id: str  # unique within the benchmark (rotations of one question get "@c1", "@c2" …)
    question: str  # the prompt text the model sees (the benchmark's own prompt, options included)
    answer: str | None  # ground truth: a letter for multiple choice, else the reference text
    images: list[ImageSource] = field(default_factory=list)
    choices: list[str] | None = None  # option texts, A first (multiple choice)
    category: str = "all"  # what the report breaks accuracy down by
    answers: list[str] = field(default_factory=list)  # every acceptable answer (OCRBench, MMSearch, FVQA …)
    meta: dict[str, Any] = field(default_factory=dict)  # the benchmark's own fields its scorer reads

    @property
    def base_id(self) -> str:
        """The question this item asks (one id for all its option rotations)."""
        return self.id.split("@c", 1)[0]


def decode_image(src: ImageSource, base_dir: Path | None = None) -> Image:
    """An item's image as PIL: base64 text (with or without a data-URL prefix), encoded
    bytes, an HF image struct ``{bytes, path}``, a path (relative to ``base_dir``) or PIL."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if isinstance(src, PILImage.Image):
        return src.convert("RGB")
    if isinstance(src, dict):
        if src.get("bytes"):
            return decode_image(src["bytes"], base_dir)
        if src.get("path"):
            return decode_image(Path(src["path"]), base_dir)
        raise InputError("an image field holds neither bytes nor a path")
    data: bytes
    if isinstance(src, Path):
        p = src if src.is_absolute() or base_dir is None else base_dir / src
        try:
            data = p.read_bytes()
        except OSError as e:
            raise InputError(f"cannot read image {p}: {e.strerror}",
                             hint="is the image folder next to the annotation file?") from e
    elif isinstance(src, str):
        text = src.split(",", 1)[1] if src.startswith("data:") else src
        try:
            data = base64.b64decode(text, validate=False)
        except ValueError as e:
            raise InputError(f"an image field is not base64: {e}") from e
    else:
        data = bytes(src)
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"an image cannot be decoded: {e}") from e
