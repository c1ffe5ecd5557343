"""`deepeyes ask --backend vllm` as a user runs it: a real vLLM engine (the CPU build here) in
the CLI's process, the tiny model, one image. Its own module so no other engine is loaded
while this one starts (each takes a core and a 1 GiB KV cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# an engine start takes a minute or more on a loaded 2-core machine: beyond the suite's 300 s default
pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1200)]
PHOTO = Path(__file__).resolve().parents[1] / "data" / "street_sign.jpg"


def test_ask_with_the_vllm_backend(vllm_ready: None, cli, tmp_path: Path) -> None:
    out = cli("ask", str(PHOTO), "What does the sign say?", "--recipe", "tiny", "--backend", "vllm", "--json",
              "agent.tools=[]", "agent.max_turns=2", "agent.max_tokens_per_turn=24", "policy.vllm.max_model_len=4096",
              "policy.vllm.enforce_eager=true", "agent.image_max_pixels=50176", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    record = json.loads(out.stdout)
    assert record["backend"] == "vllm" and record["end_reason"] != "error", record.get("metadata")
    turn = record["turns"][0]
    assert turn["completion_ids"] and turn["prompt_tokens"] > 64  # the image's pads were expanded (≥ 64 here)
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "trajectories.jsonl").is_file()
