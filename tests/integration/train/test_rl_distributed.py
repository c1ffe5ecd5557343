"""Two gloo ranks on the CPU: the token-mean gradient over uneven lengths equals the
single-process full-batch gradient, exactly as scaled by the updater."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from deepeyes_cli.train.rl.batch import Encoded

pytestmark = [pytest.mark.multiproc, pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("DEEPEYES_MULTIPROC") != "1",
                                 reason="multi-process training: `make test-train` (DEEPEYES_MULTIPROC=1)")]


def _items(tok_len: int = 600) -> list[Encoded]:
    rng = random.Random(0)
    out = []
    for n in (7, 31, 12, 48, 5, 22, 40):  # uneven, and rank shares differ in count and tokens
        ids = [rng.randrange(20, tok_len) for _ in range(n)]
        mask = [0] * 3 + [int(rng.random() < 0.7) for _ in range(n - 3)]
        out.append(Encoded(ids, mask, [0] * n, [], None, advantage=rng.uniform(-1, 1)))
    return out


def _rl_cfg():
    from deepeyes_cli.train.config import RLConfig

    return RLConfig(micro_batch_size_per_gpu=1, logprob_chunk_tokens=16)


def _grads(model) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in model.parameters()
                      if p.requires_grad])


def _old(model, mbs):
    from deepeyes_cli.train.rl.loss import old_logprobs_and_entropy

    # a stale policy: shift old logprobs so ratios differ from 1 (the clip stays inactive)
    return [old_logprobs_and_entropy(model, mb.inputs, mb.target_mask, 16)[0] - 0.05 for mb in mbs]


def _worker(rank: int, world: int, init: str, model_dir: str, out: str) -> None:
    import torch.distributed as dist

    from deepeyes_cli.models.loading import load_model, load_processor
    from deepeyes_cli.train.engine import DistInfo, EngineConfig, build_engine
    from deepeyes_cli.train.rl.update import StepStats, Updater

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.set_num_threads(1)
    model, proc = load_model(model_dir, dtype="float32", device="cpu"), load_processor(model_dir)
    model.train()
    items = _items()
    mine = items[rank::world]
    engine = build_engine(model, EngineConfig(kind="torch"), DistInfo(rank, world, rank, "cpu", "gloo"))
    up = Updater(engine, proc, _rl_cfg())
    plan, mbs = up.prepare(mine)
    stats = StepStats()
    assert up.accumulate(plan, mbs, _old(model, mbs), stats)
    for p in model.parameters():  # what the torch engine's step does first: sum over ranks
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
    counts = [None] * world
    dist.all_gather_object(counts, len(plan))
    if rank == 0:
        torch.save({"grad": _grads(model), "counts": counts, "dummies": stats.dummies}, out)
    dist.barrier()
    dist.destroy_process_group()


def test_token_mean_on_two_gloo_ranks_equals_full_batch_gradient(tmp_path: Path, tiny_model_dir: Path) -> None:
    from deepeyes_cli.models.loading import load_model, load_processor
    from deepeyes_cli.protocol import tags
    from deepeyes_cli.train.loss import masked_logprobs
    from deepeyes_cli.train.rl.batch import collate
    from deepeyes_cli.train.rl.loss import policy_loss

    out = tmp_path / "rank0.pt"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'store'}", str(tiny_model_dir), str(out)), nprocs=2, join=True)
    got = torch.load(out)
    assert got["counts"][0] == got["counts"][1]  # equal micro-batch counts after rebalancing

    model, proc = load_model(str(tiny_model_dir), dtype="float32", device="cpu"), load_processor(str(tiny_model_dir))
    model.train()
    items = _items()
    mb = collate(items, proc, proc.tokenizer.convert_tokens_to_ids(tags.ENDOFTEXT))
    old = _old(model, [mb])[0]
    lp = masked_logprobs(model, mb.inputs, mb.target_mask, 16)
    total, _ = policy_loss(lp, old, mb.advantages, clip_low=0.2, clip_high=0.2, dual_clip_c=3.0)
    (total / mb.n_targets).backward()  # the token mean over the whole batch, one process
    want = _grads(model)
    rel = float((got["grad"] - want).norm() / want.norm())
    assert rel < 1e-4, rel  # fp32 rounding of padded vs unpadded batches only
    # the seq-mean a naive per-rank mean would give differs: the check can fail
    assert want.abs().sum() > 0
