"""Rollouts to training tensors on the tiny model: the loss mask token by token, the pad
round trip, M-RoPE positions, masked tokens without gradient, the per-turn pad check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rl_helpers import rollouts

from deepeyes_cli.models.loading import load_model, load_processor
from deepeyes_cli.protocol import tags
from deepeyes_cli.train.loss import masked_logprobs
from deepeyes_cli.train.rl.batch import collate, encode_trajectory


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    torch.manual_seed(0)
    return load_model(str(tiny_model_dir), dtype="float32", device="cpu"), load_processor(str(tiny_model_dir))


@pytest.fixture(scope="module")
def trajs(tiny):
    out = rollouts(tiny[1], n=2)
    assert all(t.end_reason == "answered" and len(t.turns) == 2 for t in out)
    return out


def test_loss_mask_token_by_token(tiny, trajs) -> None:
    _, proc = tiny
    tok = proc.tokenizer
    traj = trajs[0]
    enc = encode_trajectory(traj, proc)
    assert enc.error is None
    generated = [i for t in traj.turns for i in t.completion_ids]
    # the mask-1 tokens are exactly the generated ids, in order, nothing else
    assert [i for i, m in zip(enc.ids, enc.mask, strict=True) if m] == generated
    # walk the sequence: every generated span sits right after "<|im_start|>assistant\n{prefill}"
    spans, cur = [], []
    for i, m in zip(enc.ids, enc.mask, strict=True):
        if m:
            cur.append(i)
        elif cur:
            spans.append(cur)
            cur = []
    spans.append(cur) if cur else None
    assert spans == [t.completion_ids for t in traj.turns]
    text0 = tok.decode([i for i, m in zip(enc.ids, enc.mask, strict=True) if not m], skip_special_tokens=False)
    assert "Code execution result" in text0 and "How many colours" in text0  # observations: masked
    pad = proc.image_token_id
    assert all(m == 0 for i, m in zip(enc.ids, enc.mask, strict=True) if i == pad)
    assert enc.mm_types == [int(i == pad) for i in enc.ids]
    assert len(enc.images) == 2  # the input image and the tool's image
    assert enc.rollout_logprobs is None  # the scripted backend has none


def test_collapse_expand_round_trip(tiny, trajs) -> None:
    from deepeyes_cli.policy.tokens import expand_image_pads, trajectory_tokens

    _, proc = tiny
    collapsed, _, images = trajectory_tokens(trajs[0], proc.tokenizer)
    grids = proc.image_processor(images=images, return_tensors="pt")["image_grid_thw"].tolist()
    expanded, _ = expand_image_pads(collapsed, grids, proc.merge_size, proc.image_token_id)
    pad = proc.image_token_id
    again = [t for k, t in enumerate(expanded) if not (t == pad and k and expanded[k - 1] == pad)]
    assert again == collapsed
    assert expanded.count(pad) == sum(t * h * w // 4 for t, h, w in grids)
    assert encode_trajectory(trajs[0], proc).ids == expanded


def test_position_ids_equal_hf_get_rope_index(tiny, trajs) -> None:
    model, proc = tiny
    encs = [encode_trajectory(t, proc) for t in trajs]
    mb = collate(encs, proc, pad_id=proc.tokenizer.convert_tokens_to_ids(tags.ENDOFTEXT))
    seen = {}

    def grab(module, args, kwargs):
        seen["pos"] = kwargs["position_ids"]

    h = model.model.language_model.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            masked_logprobs(model, mb.inputs, mb.target_mask)
    finally:
        h.remove()
    want, _ = model.model.get_rope_index(mb.inputs["input_ids"], mm_token_type_ids=mb.inputs["mm_token_type_ids"],
                                         image_grid_thw=mb.inputs["image_grid_thw"],
                                         attention_mask=mb.inputs["attention_mask"])
    got = seen["pos"]
    assert got.shape[-2:] == want.shape[-2:]
    att = mb.inputs["attention_mask"].bool()
    assert torch.equal(got[-3:][:, att], want[:, att])  # 3-D M-RoPE, not the 1-D fallback
    assert not torch.equal(want[0], want[1])  # images make the rows differ


def test_masked_tokens_get_zero_gradient(tiny, trajs) -> None:
    model, proc = tiny
    enc = encode_trajectory(trajs[1], proc)
    mb = collate([enc], proc, pad_id=proc.tokenizer.convert_tokens_to_ids(tags.ENDOFTEXT))
    store = {}

    def keep(module, args, out):
        out.last_hidden_state.retain_grad()
        store["h"] = out.last_hidden_state

    h = model.model.register_forward_hook(keep)
    try:
        logp = masked_logprobs(model, mb.inputs, mb.target_mask, chunk=16)
        logp.sum().backward()
    finally:
        h.remove()
        model.zero_grad(set_to_none=True)
    g = store["h"].grad[0].abs().sum(-1)  # (L,) gradient at each state
    predicts_target = mb.target_mask[0, 1:].bool()
    assert torch.all(g[:-1][~predicts_target] == 0) and g[-1] == 0
    assert torch.all(g[:-1][predicts_target] > 0)
    assert logp.numel() == enc.n_targets


def test_pad_mismatch_is_an_error_not_a_crash(tiny, trajs) -> None:
    _, proc = tiny
    traj = trajs[0].model_copy(deep=True)
    traj.turns[1].prompt_tokens += 1  # what a re-expanded prompt (engine vs trainer resize) looks like
    enc = encode_trajectory(traj, proc)
    assert enc.error is not None and "image-pad mismatch at turn 1" in enc.error


def test_hf_to_vllm_names_cover_every_parameter(tiny) -> None:
    from deepeyes_cli.train.rl.weight_sync import is_vision, vllm_name, weight_groups

    model, _ = tiny
    names = [n for n, _ in model.named_parameters()]
    targets = [vllm_name(n) for n in names]  # raises for a name no rule covers
    assert len(set(targets)) == len(targets)  # no two HF tensors land in the same vLLM slot
    fused = {}
    for name, shard in targets:
        if shard is not None:
            fused.setdefault(name, set()).add(shard)
    assert fused and all(s in ({"q", "k", "v"}, {0, 1}) for s in fused.values())  # every fused piece present
    assert all(t.startswith(("language_model.", "visual.")) for t, _ in targets)
    grouped = [n for g in weight_groups(model) for n, _ in g]
    assert sorted(grouped) == sorted(n for n in names if not is_vision(n))  # the sync skips only the frozen tower
    layers = model.config.text_config.num_hidden_layers
    assert len(weight_groups(model)) == layers + 3  # a group per decoder layer, embeddings, final norm, lm_head
