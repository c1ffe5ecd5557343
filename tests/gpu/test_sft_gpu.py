"""SFT on GPUs: bf16 ZeRO-3 over NCCL with flash-attention 2 (the 7B recipe's path) on the
tiny model, then the exported checkpoint loading back. Skipped without CUDA (and without
flash-attn for the flash-attention run)."""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path

import pytest


def _cuda() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_cuda() == 0, reason="needs a CUDA GPU")]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("attn", ["sdpa", "flash_attention_2"])
def test_bf16_zero3_nccl(cli, tmp_path: Path, attn: str) -> None:
    if attn == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        pytest.skip("flash-attn is not installed")
    from deepeyes_cli.testing.sft_data import write_short_sharegpt

    data = write_short_sharegpt(tmp_path / "data", 8)
    gpus = min(2, _cuda())
    run = tmp_path / "run"
    res = cli("sft", "-r", "tiny", f"sft.datasets=[{data}]", "model.device=cuda", f"model.attn_implementation={attn}",
              "launch.launcher=torchrun", f"launch.gpus_per_node={gpus}", "launch.zero_stage=3",
              "launch.mixed_precision=bf16", "launch.gradient_checkpointing=true", f"launch.master_port={_port()}",
              "sft.max_steps=3", "sft.save_steps=2", "sft.report_to=[]", "--run-dir", str(run), cwd=tmp_path,
              timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["loss"] == r["loss"] for r in rows)
    from transformers import Qwen2_5_VLForConditionalGeneration

    Qwen2_5_VLForConditionalGeneration.from_pretrained(run / "export")
