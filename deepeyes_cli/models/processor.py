"""The Qwen2.5-VL processor we use everywhere: image processor + tokenizer, no video.

transformers' ``Qwen2_5_VLProcessor`` insists on a video processor, which needs
torchvision (a CUDA-sized dependency, and one that does not import beside the CPU torch
wheel). We never feed video, so this subclass keeps only the image processor (PIL backend,
identical on every machine) and the tokenizer. It inherits the parent's ``__call__``,
which expands each ``<|image_pad|>`` to the image's grid and returns ``mm_token_type_ids``.
The same class loads the tiny test model and the real 7B/32B checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

UPSTREAM_CLASS = "Qwen2_5_VLProcessor"


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without its video processor."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                         chat_template=chat_template, **kwargs)

    @property
    def merge_size(self) -> int:
        return int(self.image_processor.merge_size)

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> Any:
        """Save as upstream's class name, so the files load with ``AutoProcessor`` too."""
        out = super().save_pretrained(save_directory, *args, **kwargs)
        for name in ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json"):
            p = Path(save_directory) / name
            if p.is_file():
                data = json.loads(p.read_text())
                if data.get("processor_class") == type(self).__name__:
                    data["processor_class"] = UPSTREAM_CLASS
                    p.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return out
