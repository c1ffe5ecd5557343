"""Rollouts to training tensors, token-exact.

A trajectory becomes the ids its turns were generated from and with (collapsed, generated
ids verbatim, never re-tokenized: ``policy.tokens.trajectory_tokens``), then each image pad
is expanded to its grid (``policy.tokens.expand_image_pads``, the one expansion) with every
image, inputs and tool outputs, in ``pixel_values``. The loss mask is 1 on generated tokens
only; tool observations are attended but masked.

The pad check: for every turn, the expanded length of everything before its generated ids
must equal the prompt length the rollout engine reported for that turn. A mismatch means
the engine saw other image tokens than the trainer will (a resize disagreement, a stray
pad): the trajectory is flagged ``infra_error`` and left out, the step goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepeyes_cli.errors import BackendError


@dataclass
class Encoded:
    """One trajectory, ready to collate."""

    ids: list[int]  # expanded
    mask: list[int]  # 1 on generated tokens
    mm_types: list[int]  # 1 on image tokens
    images: list[Any]
    rollout_logprobs: list[float] | None  # one per mask-1 token, from the rollout engine
    advantage: float = 0.0
    error: str | None = None  # why it cannot be trained on (the pad check)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_targets(self) -> int:
        return sum(self.mask[1:])

    def __len__(self) -> int:
        return len(self.ids)


def _grids(processor: Any, images: Sequence[Any]) -> list[list[int]]:
    if not images:
        return []
    return processor.image_processor(images=list(images), return_tensors="pt")["image_grid_thw"].tolist()


def check_pad_counts(traj: Any, collapsed: Sequence[int], mask: Sequence[int], expanded_len_before: Sequence[int]
                     ) -> str | None:
    """Compare each turn's reported prompt length with our expansion; a message on mismatch."""
    starts = [i for i in range(len(mask)) if mask[i] == 1 and (i == 0 or mask[i - 1] == 0)]
    turns = [t for t in traj.turns if t.completion_ids]
    if len(starts) != len(turns):
        return f"{len(starts)} generated spans for {len(turns)} turns with ids"
    for start, turn in zip(starts, turns, strict=True):
        want = turn.prompt_tokens
        if want is not None and want != expanded_len_before[start]:
            return (f"image-pad mismatch at turn {turn.index}: the engine saw {want} prompt tokens, "
                    f"the trainer builds {expanded_len_before[start]}")
    return None


def encode_trajectory(traj: Any, processor: Any, base_dir: str | Path | None = None) -> Encoded:
    """Expanded ids, loss mask, M-RoPE token types and images of one trajectory."""
    from deepeyes_cli.policy.tokens import expand_image_pads, trajectory_tokens

    tok = processor.tokenizer
    collapsed, cmask, images = trajectory_tokens(traj, tok, base_dir)
    pad = processor.image_token_id
    try:
        grids = _grids(processor, images)
        ids, types = expand_image_pads(collapsed, grids, processor.merge_size, pad)
    except BackendError as e:
        return Encoded(collapsed, [0] * len(collapsed), [0] * len(collapsed), [], None, error=e.message)
    counts = iter([int(t) * int(h) * int(w) // processor.merge_size ** 2 for t, h, w in grids])
    mask: list[int] = []
    before: list[int] = []  # expanded length before each collapsed position
    n = 0
    for token, m in zip(collapsed, cmask, strict=True):
        before.append(n)
        k = next(counts) if token == pad else 1
        mask += [m] * k if token != pad else [0] * k
        n += k
    error = check_pad_counts(traj, collapsed, cmask, before)
    logps = [lp for t in traj.turns if t.completion_ids for lp in (t.logprobs or [])]
    n_gen = sum(cmask)
    rollout = logps if len(logps) == n_gen else None
    if mask and mask[0] == 1:  # nothing predicts position 0
        mask[0] = 0
        rollout = rollout[1:] if rollout is not None else None
    return Encoded(ids, mask, types, images, rollout, error=error)


def dummy(processor: Any, like: Encoded | None = None) -> Encoded:
    """A zero-mask sequence for a rank with nothing left to train on this micro-batch: it
    still runs the forward and backward that ZeRO-3's collectives wait for."""
    tok = processor.tokenizer
    ids = tok("<|im_start|>user\nnothing<|im_end|>\n", add_special_tokens=False)["input_ids"]
    return Encoded(list(ids), [0] * len(ids), [0] * len(ids), [], [])


@dataclass
class MicroBatch:
    inputs: dict[str, Any]  # model kwargs
    target_mask: Any  # (B, L)
    advantages: Any  # (N,) one per target token
    rollout_logprobs: Any | None  # (N,) or None when some item lacks them
    n_targets: int
    n_sequences: int


def collate(items: Sequence[Encoded], processor: Any, pad_id: int, device: Any = "cpu",
            dtype: Any = None) -> MicroBatch:
    """Right-padded batch: ids, attention mask, ``mm_token_type_ids`` (so the model builds
    M-RoPE positions), all images' ``pixel_values`` in pad order and their grids."""
    import torch

    width = max(len(e) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(items), width), dtype=torch.long)
    types = torch.zeros((len(items), width), dtype=torch.long)
    tmask = torch.zeros((len(items), width), dtype=torch.long)
    for i, e in enumerate(items):
        n = len(e)
        ids[i, :n] = torch.tensor(e.ids)
        att[i, :n] = 1
        types[i, :n] = torch.tensor(e.mm_types)
        tmask[i, :n] = torch.tensor(e.mask)
    inputs: dict[str, Any] = {"input_ids": ids.to(device), "attention_mask": att.to(device),
                              "mm_token_type_ids": types.to(device)}
    images = [im for e in items for im in e.images]
    if images:
        feats = processor.image_processor(images=images, return_tensors="pt")
        inputs["pixel_values"] = feats["pixel_values"].to(device, dtype) if dtype else feats["pixel_values"].to(device)
        inputs["image_grid_thw"] = feats["image_grid_thw"].to(device)
    adv = torch.tensor([e.advantage for e in items for _ in range(e.n_targets)], dtype=torch.float32)
    have = all(e.rollout_logprobs is not None and len(e.rollout_logprobs) == e.n_targets for e in items)
    roll = (torch.tensor([lp for e in items for lp in (e.rollout_logprobs or [])], dtype=torch.float32)
            if have else None)
    return MicroBatch(inputs, tmask.to(device), adv.to(device), roll.to(device) if roll is not None else None,
                      int(tmask[:, 1:].sum()), len(items))
