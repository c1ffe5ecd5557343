"""The training forward on the tiny model: positions, packing, the masked loss and its
gradients, and learning on a fixed batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepeyes_cli.train.data import (
    BatchDataset,
    ImageBudget,
    build_index,
    collate,
    model_inputs,
    sample_features,
)
from deepeyes_cli.train.data.sources import read_conversations
from deepeyes_cli.train.loss import masked_logprobs


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path):
    from deepeyes_cli.models.loading import load_model

    torch.manual_seed(0)
    return load_model(str(tiny_model_dir), dtype="float32", device="cpu", attn_implementation="sdpa")


@pytest.fixture(scope="module")
def index(traj_file: Path, processor):
    return build_index(read_conversations([str(traj_file)]), processor.tokenizer, ImageBudget.of(processor), 4096)


def _two_image_sample(tmp_path: Path, processor):
    import json

    from PIL import Image

    for i, size in enumerate([(224, 168), (112, 280)]):
        Image.new("RGB", size, (40 * i, 90, 200)).save(tmp_path / f"{i}.png")
    f = tmp_path / "two.json"
    f.write_text(json.dumps([{"messages": [{"role": "user", "content": "<image> and <image>: same colour?"},
                                           {"role": "assistant", "content": "<think>no</think><answer>no</answer>"}],
                              "images": ["0.png", "1.png"]}]))
    return build_index(read_conversations([str(f)]), processor.tokenizer, ImageBudget.of(processor), 4096).samples[0]


def test_multi_image_positions_are_the_models_own_mrope(model, processor, tmp_path: Path) -> None:
    sample = _two_image_sample(tmp_path, processor)
    batch = collate([sample_features(sample, processor)], pad_id=0)
    assert batch["image_grid_thw"].shape == (2, 3)
    inputs = model_inputs(batch, model.model.get_rope_index, "cpu", torch.float32)
    pos = inputs["position_ids"]
    assert pos.shape == (3, 1, batch["input_ids"].shape[1])
    # the model's own 3-D positions (what it computes from mm_token_type_ids)
    model.model.rope_deltas = None
    own = model.model.compute_3d_position_ids(batch["input_ids"], batch["image_grid_thw"], None, None,
                                              batch["attention_mask"], None, mm_token_type_ids=batch["mm_token_type_ids"])
    assert torch.equal(pos, own)
    # and not the 1-D fallback: image tokens share text positions across rows
    assert not torch.equal(pos[1], pos[2])
    assert int(pos.max()) + 1 < pos.shape[-1]


def test_masked_tokens_get_zero_gradient(model, index, processor) -> None:
    batch = collate([sample_features(s, processor) for s in index.samples[:2]], pad_id=0)
    inputs = model_inputs(batch, model.model.get_rope_index, "cpu", torch.float32)
    with torch.no_grad():
        hidden = model.model(**inputs, use_cache=False).last_hidden_state
    leaf = hidden.clone().requires_grad_(True)

    class Fixed(torch.nn.Module):  # the real LM head over a leaf we can inspect
        def __init__(self) -> None:
            super().__init__()
            self.lm_head = model.lm_head
            self.model = lambda **kw: type("Out", (), {"last_hidden_state": leaf})()

    lp = masked_logprobs(Fixed(), inputs, batch["loss_mask"], chunk=64)
    assert lp.shape[0] == int(batch["loss_mask"][:, 1:].sum())
    (-lp.sum()).backward()
    grad = leaf.grad.abs().sum(-1)  # (B, L): position t predicts token t+1
    predicts_trained = torch.zeros_like(batch["loss_mask"], dtype=torch.bool)
    predicts_trained[:, :-1] = batch["loss_mask"][:, 1:].bool()
    assert torch.all(grad[~predicts_trained] == 0)
    assert torch.all(grad[predicts_trained] > 0)


def test_packed_row_gives_the_same_logprobs_as_padded_rows(model, index, processor) -> None:
    feats = [sample_features(s, processor) for s in index.samples[:3]]
    padded = collate(feats, pad_id=0)
    packed = collate(feats, pad_id=0, packed=True)
    rope = model.model.get_rope_index
    with torch.no_grad():
        a = masked_logprobs(model, model_inputs(padded, rope, "cpu", torch.float32), padded["loss_mask"])
        b = masked_logprobs(model, model_inputs(packed, rope, "cpu", torch.float32), packed["loss_mask"])
    assert model_inputs(packed, rope, "cpu", torch.float32)["position_ids"].shape[0] == 4
    torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)


@pytest.mark.slow
def test_twenty_steps_on_a_fixed_batch_lower_the_loss(tiny_model_dir: Path, processor, tmp_path: Path) -> None:
    from deepeyes_cli.models.loading import load_model
    from deepeyes_cli.train.engine import DistInfo, EngineConfig, build_engine

    torch.manual_seed(0)
    m = load_model(str(tiny_model_dir), dtype="float32", device="cpu", attn_implementation="sdpa")
    engine = build_engine(m, EngineConfig(learning_rate=3e-3, lr_scheduler="constant", total_steps=20), DistInfo())
    sample = _two_image_sample(tmp_path, processor)  # short: the step costs little on a loaded machine
    batch = BatchDataset([sample], [[0]], processor, pad_id=0)[0]
    inputs = model_inputs(batch, m.model.get_rope_index, "cpu", torch.float32)
    n = int(batch["loss_mask"][:, 1:].sum())
    losses = []
    for _ in range(20):
        loss = -engine.logprobs(inputs, batch["loss_mask"]).sum() / n
        engine.backward(loss)
        engine.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
