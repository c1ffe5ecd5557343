"""Build a tiny random-weight Qwen2.5-VL offline.

It has the real architecture (M-RoPE text decoder, windowed vision tower with 2x2 patch
merging), a byte-level BPE tokenizer of the real ``Qwen2Tokenizer`` class carrying
Qwen2.5-VL's special tokens in Qwen's order, Qwen2.5-VL's chat template and its image
processor, all saved with ``save_pretrained``. It loads with the same ``from_pretrained``
calls as Qwen2.5-VL-7B. Building takes about a second and is deterministic for a seed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock

# Bump when the architecture, tokenizer or corpus changes: cached builds are keyed by it.
TINY_VERSION = 3

# Qwen2.5-VL's added tokens, in Qwen's id order; the last eight are ordinary (special=False).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
PLAIN_ADDED_TOKENS = [
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
]

# Text head_dim is 64 / 2 = 32: vLLM's CPU attention supports head_dim 32, 64, 80 … but not 16.
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=32768, rms_norm_eps=1e-6,
            tie_word_embeddings=False)
ROPE = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]}  # head_dim 32 -> 16 pairs
VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
              spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1],
              in_channels=3)
VOCAB_SIZE = 1024
INIT_RANGE = 0.5  # larger than real init so greedy decoding wanders instead of repeating one token
# The text decoder's query and key projections start at a tenth of INIT_RANGE, so attention starts
# near uniform and can learn where to look. At 0.5 the logits are so spread that each query puts
# ~88 % of its weight on one random token (entropy 0.3 nats against 5.0 uniform over 100-200 keys),
# the softmax passes almost no gradient, and SFT formed the "copy what the tool printed" circuit of
# the RL task (testing/rl_task.py) only in some runs (right after a tool call 94 %, 64 %, 96 % on 3
# data seeds); at 0.05 in all (100 % on each; README "The tiny task"). The price: the base model's greedy
# text repeats one token more often ("tttt…", "____…") where it used to wander.
QK_INIT_SCALE = 0.1

_CORPUS = """\
<think> Let me look at the image carefully. The question asks about the color of the small sign.
I will crop the region and zoom in to read the text. </think>
<code>
```python
from PIL import Image
import numpy as np
w, h = image_1.size
crop = image_1.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4)).resize((512, 512))
print(crop.size, np.array(crop).mean(axis=(0, 1)))
display(crop)
```
</code>
Code execution result:
stdout:
```
(512, 512) [120.5 98.25 64.0]
```

stderr:
```

```

Images:
<think> The crop shows a red sign with white letters. I need to search for the landmark. </think>
{"name": "search", "arguments": {"query": "red sign white letters landmark"}}
{"name": "image_search"}
A Google search for 'red sign' found 5 results:

## Web Results
1. [Title of a page](https://example.org/page)
The first result describes the building, its history and the year 1921.
<answer> B </answer> <answer> red </answer> <answer> 42 </answer>
The answer is (A). Options: A. cat B. dog C. bird D. fish. Which one is correct?
What is the number on the jersey? How many people are in the picture? Where was this photo taken?
the of and to in is was for on that with as by at from this it are be an or which were
0 1 2 3 4 5 6 7 8 9 10 12 100 2024 3.14 1,000 50% km m cm kg
"""


def _tokenizer() -> Any:
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False, special_tokens=[])
    bpe.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, eos_token="<|endoftext|>",
                         pad_token="<|endoftext|>", unk_token=None, errors="replace", model_max_length=32768,
                         clean_up_tokenization_spaces=False)
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tok.add_tokens(PLAIN_ADDED_TOKENS)
    tok.eos_token = "<|im_end|>"  # set after adding, so ids follow Qwen's order
    return tok


def build_tiny_model(out_dir: str | Path, seed: int = 0) -> Path:
    """Build the tiny model into ``out_dir`` (created; must not exist or be empty)."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from deepeyes_cli.models.processor import ImageOnlyQwen2_5_VLProcessor

    out = Path(out_dir)
    tok = _tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    template = (Path(__file__).parent / "qwen2_5_vl_chat_template.jinja").read_text()
    tok.chat_template = template
    image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 16384)
    processor = ImageOnlyQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tok, chat_template=template)

    eos, pad = ids["<|im_end|>"], ids["<|endoftext|>"]
    config = Qwen2_5_VLConfig(
        text_config={**TEXT, "vocab_size": len(tok), "rope_parameters": ROPE, "bos_token_id": pad,
                     "eos_token_id": eos, "pad_token_id": pad, "initializer_range": INIT_RANGE},
        vision_config={**VISION, "initializer_range": INIT_RANGE},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=pad, eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=False,
        initializer_range=INIT_RANGE,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
        with torch.no_grad():
            for layer in model.model.language_model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj):
                    proj.weight.mul_(QK_INIT_SCALE)
                    if proj.bias is not None:
                        proj.bias.mul_(QK_INIT_SCALE)
    model.generation_config = GenerationConfig(bos_token_id=pad, eos_token_id=[eos, pad], pad_token_id=pad,
                                               do_sample=False)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    _write_video_processor_config(out, image_processor)
    (out / "deepeyes_tiny.json").write_text(json.dumps({"version": TINY_VERSION, "seed": seed}) + "\n")
    return out


def _write_video_processor_config(out: Path, image_processor: Any) -> None:
    """Qwen2.5-VL checkpoints carry a video processor config, and ``AutoProcessor`` and vLLM
    refuse a model directory without one. We never feed video, and instantiating
    ``Qwen2VLVideoProcessor`` needs torchvision, so the file is written as the released
    checkpoints have it: the same pixel bounds and normalisation as the image processor."""
    config = {
        "video_processor_type": "Qwen2VLVideoProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
        "do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True,
        "rescale_factor": 1 / 255,
        "image_mean": list(image_processor.image_mean), "image_std": list(image_processor.image_std),
        "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "min_pixels": image_processor.size["shortest_edge"], "max_pixels": image_processor.size["longest_edge"],
        "size": dict(image_processor.size),
        "resample": 3,
    }
    (out / "video_preprocessor_config.json").write_text(json.dumps(config, indent=2) + "\n")


def ensure_tiny_model(root: str | Path, seed: int = 0) -> Path:
    """Return the cached tiny model under ``root``, building it once (safe across processes)."""
    root = Path(root)
    target = root / f"tiny-v{TINY_VERSION}-seed{seed}"
    if (target / "deepeyes_tiny.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{target.name}.lock"), timeout=600):
        if (target / "deepeyes_tiny.json").is_file():
            return target
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{target.name}."))
        try:
            build_tiny_model(tmp, seed)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
