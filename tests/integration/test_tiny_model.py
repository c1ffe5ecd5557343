"""The tiny model is built offline and loads through the same code as Qwen2.5-VL-7B."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from deepeyes_cli.models.loading import load_model, load_processor, resolve_model_path
from deepeyes_cli.testing.tiny import PLAIN_ADDED_TOKENS, SPECIAL_TOKENS, build_tiny_model


@pytest.fixture(scope="module")
def loaded(tiny_model_dir: Path):
    return load_model(str(tiny_model_dir), dtype="float32", device="cpu"), load_processor(str(tiny_model_dir))


def _image(w: int, h: int, color: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (w, h), color)


def test_saved_like_a_real_checkpoint(tiny_model_dir: Path) -> None:
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "processor_config.json", "chat_template.jinja", "generation_config.json"} <= names
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl" and config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    for name in ("processor_config.json", "tokenizer_config.json"):
        assert json.loads((tiny_model_dir / name).read_text())["processor_class"] == "Qwen2_5_VLProcessor"
    assert json.loads((tiny_model_dir / "tokenizer_config.json").read_text())["tokenizer_class"] == "Qwen2Tokenizer"


def test_tokenizer_has_qwen_special_tokens_in_order(loaded) -> None:
    _, processor = loaded
    tok = processor.tokenizer
    ids = tok.convert_tokens_to_ids(SPECIAL_TOKENS + PLAIN_ADDED_TOKENS)
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # contiguous, Qwen's order
    for t in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"):
        assert tok.tokenize(f"a{t}b") == ["a", t, "b"]
    assert tok.tokenize("<tool_call>")[0] == "<tool_call>"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    text = "Héllo wörld 你好 <think>x</think>\n```python\nprint(1)\n```"
    assert tok.decode(tok.encode(text)) == text


def test_chat_template_is_qwen2_5_vl(loaded) -> None:
    _, processor = loaded
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    "<|vision_start|><|image_pad|><|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\n")


def test_processor_expands_image_pads_to_the_grid(loaded) -> None:
    model, processor = loaded
    images = [_image(300, 200, (200, 10, 10)), _image(64, 500, (10, 10, 200))]
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "one"},
                                         {"type": "image"}, {"type": "text", "text": "two"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text.count("<|image_pad|>") == 2
    inputs = processor(text=[text], images=images, return_tensors="pt")
    grid = inputs["image_grid_thw"]
    merge = processor.image_processor.merge_size
    per_image = (grid.prod(-1) // merge**2).tolist()
    ids = inputs["input_ids"][0].tolist()
    pad = processor.image_token_id
    # Each <|vision_start|> is followed by exactly its image's number of pads.
    start = processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    runs = []
    for i, t in enumerate(ids):
        if t == start:
            n = 0
            while ids[i + 1 + n] == pad:
                n += 1
            runs.append(n)
    assert runs == per_image
    assert inputs["pixel_values"].shape[0] == int(grid.prod(-1).sum())
    assert (inputs["mm_token_type_ids"][0] == 1).sum() == sum(per_image)
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape[:2] == inputs["input_ids"].shape


def test_multi_image_inputs_get_mrope_positions(loaded) -> None:
    model, processor = loaded
    images = [_image(280, 140, (1, 2, 3)), _image(140, 280, (3, 2, 1))]
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "a"}]},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "c"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=images, return_tensors="pt")
    pos, deltas = model.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                            image_grid_thw=inputs["image_grid_thw"])
    assert pos.shape == (3, 1, inputs["input_ids"].shape[1])
    image_pos = pos[:, 0, inputs["mm_token_type_ids"][0] == 1]
    assert not torch.equal(image_pos[1], image_pos[2])  # height and width axes differ on image tokens
    assert int(deltas[0]) < 0  # images take fewer positions than tokens: not 1-D positions
    # What generate() uses internally matches the processor-driven rope index.
    computed = model.model.compute_3d_position_ids(
        input_ids=inputs["input_ids"], image_grid_thw=inputs["image_grid_thw"],
        video_grid_thw=None, inputs_embeds=None, attention_mask=inputs["attention_mask"], past_key_values=None,
        mm_token_type_ids=inputs["mm_token_type_ids"])
    assert computed is not None and torch.equal(computed[..., : pos.shape[-1]], pos)


def _greedy_by_hand(model, inputs: dict, steps: int) -> list[int]:
    """Greedy decoding by full forward passes (no KV cache): the argmax after each prefix."""
    ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["mm_token_type_ids"]
    out: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=ids, attention_mask=mask, mm_token_type_ids=types,
                           pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"]).logits
            nxt = int(logits[0, -1].argmax())
            out.append(nxt)
            one = torch.ones((1, 1), dtype=ids.dtype)
            ids, mask, types = torch.cat([ids, one * nxt], 1), torch.cat([mask, one], 1), torch.cat([types, one * 0], 1)
    return out


def test_generates_what_its_logits_say_and_sees_the_image(loaded) -> None:
    model, processor = loaded
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[_image(224, 224, (9, 9, 9))], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    n = inputs["input_ids"].shape[1]
    assert torch.equal(out[0, :n], inputs["input_ids"][0])  # the prompt comes back unchanged
    generated = out[0, n:].tolist()
    # generate() with its cache and M-RoPE positions picks exactly the argmax of a plain forward pass
    assert generated == _greedy_by_hand(model, dict(inputs), 8)
    again = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert again[0, n:].tolist() == generated  # greedy is deterministic
    # the image reaches the logits: another image gives other next-token scores
    other = processor(text=[text], images=[_image(224, 224, (250, 30, 200))], return_tensors="pt")
    with torch.no_grad():
        a = model(**inputs).logits[0, -1]
        b = model(**other).logits[0, -1]
    assert not torch.allclose(a, b)


def test_build_is_deterministic_per_seed(tmp_path: Path, tiny_model_dir: Path) -> None:
    from safetensors.torch import load_file

    a = load_file(str(build_tiny_model(tmp_path / "a", seed=0) / "model.safetensors"))
    ref = load_file(str(tiny_model_dir / "model.safetensors"))
    c = load_file(str(build_tiny_model(tmp_path / "c", seed=1) / "model.safetensors"))
    assert a.keys() == ref.keys()
    assert all(torch.equal(a[k], ref[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert (tmp_path / "a" / "tokenizer.json").read_text() == (tiny_model_dir / "tokenizer.json").read_text()


def test_builtin_is_cached(tiny_model_dir: Path) -> None:
    assert Path(resolve_model_path("builtin:tiny")) == tiny_model_dir


def test_bad_model_paths_are_clear_errors(tmp_path: Path) -> None:
    from deepeyes_cli.errors import ModelError

    with pytest.raises(ModelError, match="unknown built-in"):
        resolve_model_path("builtin:huge")
    with pytest.raises(ModelError, match="not found"):
        resolve_model_path(str(tmp_path / "nope"))
    with pytest.raises(ModelError, match=r"without config\.json"):
        resolve_model_path(str(tmp_path))
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        resolve_model_path("Qwen/Qwen2.5-VL-7B-Instruct", local_files_only=True)


def test_attention_starts_near_uniform_so_it_can_learn(tiny_model_dir: Path) -> None:
    # With the query/key projections at INIT_RANGE the softmax saturates (one random key takes
    # ~88 % of each query's weight) and SFT formed the RL task's copy circuit only in some runs.
    model = load_model(str(tiny_model_dir), dtype="float32", device="cpu", attn_implementation="eager")
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab - len(SPECIAL_TOKENS) - len(PLAIN_ADDED_TOKENS), (1, 160),
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        attentions = model(input_ids=ids, output_attentions=True).attentions
    for weights in attentions:
        late = weights[0, :, 80:]  # queries that see 81..160 keys
        assert late.max(-1).values.mean() < 0.1
