"""Samples to model inputs: image features, expanded pads, length-grouped micro-batches,
optional packing, and M-RoPE positions.

The epoch's micro-batch plan is a pure function of (lengths, seed, epoch, world size), so
a resumed run rebuilds the same plan and skips the micro-batches it already trained on
(the data cursor). Each rank gets the same number of micro-batches (ZeRO's forward is
collective). A DataLoader item is a whole collated micro-batch: image decoding, the image
processor and collation run in the workers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from deepeyes_cli.train.data.encode import DataError
from deepeyes_cli.train.data.index import IndexedSample

Plan = list[list[int]]  # micro-batches of sample indices, one rank's share


def plan_batches(lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int, world_size: int = 1,
                 rank: int = 0, group_by_length: bool = True, pack_tokens: int | None = None,
                 shuffle: bool = True) -> Plan:
    """One epoch's micro-batches for ``rank``. Length grouping sorts each shuffled window of
    50 micro-batches by length (less padding, same randomness across windows); packing
    fills micro-batches greedily up to ``pack_tokens`` tokens instead of ``batch_size`` rows."""
    order = list(range(len(lengths)))
    rng = random.Random(seed * 1_000_003 + epoch)
    if shuffle:
        rng.shuffle(order)
    if group_by_length:
        window = batch_size * world_size * 50
        order = [i for s in range(0, len(order), window)
                 for i in sorted(order[s:s + window], key=lambda i: -lengths[i])]
    batches: list[list[int]] = []
    if pack_tokens is None:
        batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    else:
        current: list[int] = []
        used = 0
        for i in order:
            if current and used + lengths[i] > pack_tokens:
                batches.append(current)
                current, used = [], 0
            current.append(i)
            used += lengths[i]
        if current:
            batches.append(current)
    if shuffle and group_by_length:
        rng.shuffle(batches)
    usable = len(batches) - len(batches) % world_size
    if usable == 0 and batches:
        raise DataError(f"{len(batches)} micro-batches cannot be shared by {world_size} ranks",
                        hint="add samples, or lower the world size")
    return batches[:usable][rank::world_size]


def _expand(ids: Sequence[int], mask: Sequence[int], image_tokens: Sequence[int], pad_id: int
            ) -> tuple[list[int], list[int], list[int]]:
    out, out_mask, types = [], [], []
    k = 0
    for token, m in zip(ids, mask, strict=True):
        if token == pad_id:
            n = image_tokens[k]
            k += 1
            out += [pad_id] * n
            out_mask += [0] * n
            types += [1] * n
        else:
            out.append(token)
            out_mask.append(m)
            types.append(0)
    return out, out_mask, types


def sample_features(sample: IndexedSample, processor: Any) -> dict[str, Any]:
    """One sample's tensors: expanded ids, loss mask, mm_token_type_ids, pixel_values, grids."""
    import torch

    enc = sample.encoded
    images = [src.load() for src in enc.images]
    out: dict[str, Any] = {}
    tokens = list(sample.image_tokens)
    if images:
        feats = processor.image_processor(images=images, return_tensors="pt")
        out["pixel_values"] = feats["pixel_values"]
        out["image_grid_thw"] = feats["image_grid_thw"]
        merge = int(processor.image_processor.merge_size)
        tokens = [int(t * h * w) // merge**2 for t, h, w in feats["image_grid_thw"].tolist()]
        if tokens != list(sample.image_tokens):
            raise DataError(f"{sample.origin}: image sizes changed since indexing ({tokens} != {sample.image_tokens})")
    ids, mask, types = _expand(enc.input_ids, enc.loss_mask, tokens, int(processor.image_token_id))
    out["input_ids"] = torch.tensor(ids, dtype=torch.long)
    out["loss_mask"] = torch.tensor(mask, dtype=torch.long)
    out["mm_token_type_ids"] = torch.tensor(types, dtype=torch.long)
    return out


def collate(features: Sequence[dict[str, Any]], pad_id: int, packed: bool = False) -> dict[str, Any]:
    """Right-padded rows with ``attention_mask``; or, ``packed``, one row holding every
    sample back to back with ``seq_lens`` (positions restart per sample; no attention mask,
    transformers derives the block-diagonal mask from the text positions)."""
    import torch

    batch: dict[str, Any] = {}
    pix = [f["pixel_values"] for f in features if "pixel_values" in f]
    if pix:
        batch["pixel_values"] = torch.cat(pix)
        batch["image_grid_thw"] = torch.cat([f["image_grid_thw"] for f in features if "image_grid_thw" in f])
    batch["image_counts"] = [len(f["image_grid_thw"]) if "image_grid_thw" in f else 0 for f in features]
    if packed:
        for key in ("input_ids", "loss_mask", "mm_token_type_ids"):
            batch[key] = torch.cat([f[key] for f in features])[None]
        batch["seq_lens"] = [len(f["input_ids"]) for f in features]
        return batch
    width = max(len(f["input_ids"]) for f in features)

    def pad(key: str, value: int) -> Any:
        return torch.stack([torch.nn.functional.pad(f[key], (0, width - len(f[key])), value=value)
                            for f in features])

    batch["input_ids"] = pad("input_ids", pad_id)
    batch["loss_mask"] = pad("loss_mask", 0)
    batch["mm_token_type_ids"] = pad("mm_token_type_ids", 0)
    batch["attention_mask"] = torch.stack([torch.nn.functional.pad(torch.ones(len(f["input_ids"]), dtype=torch.long),
                                                                   (0, width - len(f["input_ids"]))) for f in features])
    return batch


class BatchDataset:
    """A map-style dataset whose item ``i`` is the collated micro-batch ``plan[i]``."""

    def __init__(self, samples: Sequence[IndexedSample], plan: Plan, processor: Any, pad_id: int,
                 packed: bool = False) -> None:
        self.samples, self.plan, self.processor, self.pad_id, self.packed = samples, plan, processor, pad_id, packed

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return collate([sample_features(self.samples[j], self.processor) for j in self.plan[i]],
                       self.pad_id, self.packed)


def rope_positions(get_rope_index: Callable[..., Any], batch: dict[str, Any]) -> Any:
    """Position ids from the model's own ``get_rope_index`` (multi-image M-RoPE): (3, B, L)
    for padded rows, (4, 1, L) for a packed row (row 0: text positions restarting per sample,
    which is how transformers finds the sample boundaries)."""
    import torch

    grids = batch.get("image_grid_thw")
    if "seq_lens" not in batch:
        pos, _ = get_rope_index(batch["input_ids"], batch["mm_token_type_ids"], image_grid_thw=grids,
                                attention_mask=batch["attention_mask"])
        return pos
    parts, text, start, g = [], [], 0, 0
    for n, n_img in zip(batch["seq_lens"], batch["image_counts"], strict=True):
        ids = batch["input_ids"][:, start:start + n]
        types = batch["mm_token_type_ids"][:, start:start + n]
        pos, _ = get_rope_index(ids, types, image_grid_thw=grids[g:g + n_img] if n_img and grids is not None else None)
        parts.append(pos)
        text.append(torch.arange(n, device=ids.device))
        start, g = start + n, g + n_img
    return torch.cat([torch.cat(text)[None, None], torch.cat(parts, dim=2)], dim=0)


def model_inputs(batch: dict[str, Any], get_rope_index: Callable[..., Any], device: Any, dtype: Any
                 ) -> dict[str, Any]:
    """What the model's forward takes, on ``device``; positions computed explicitly (without
    them or ``mm_token_type_ids`` transformers silently falls back to 1-D positions)."""
    inputs: dict[str, Any] = {"input_ids": batch["input_ids"].to(device)}
    if "attention_mask" in batch:
        inputs["attention_mask"] = batch["attention_mask"].to(device)
    if "pixel_values" in batch:
        inputs["pixel_values"] = batch["pixel_values"].to(device, dtype)
        inputs["image_grid_thw"] = batch["image_grid_thw"].to(device)
    on_device = {**batch, **inputs, "mm_token_type_ids": batch["mm_token_type_ids"].to(device)}
    inputs["position_ids"] = rope_positions(get_rope_index, on_device)
    inputs["mm_token_type_ids"] = on_device["mm_token_type_ids"]
    return inputs
