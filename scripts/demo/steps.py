"""The demo's Python steps (called by scripts/demo.sh). Each writes JSON that the index
page reads back: no figure is typed in by hand.

    python scripts/demo/steps.py valid MODEL OUT.json [--n 32]     protocol-valid rate on held-out counting prompts
    python scripts/demo/steps.py count-sft OUT.jsonl [--n 96]      RL warm-start trajectories (benchmarks/rl_tiny_learning.py)
    python scripts/demo/steps.py count-bench OUT.parquet [--n 32]  a mini benchmark file of the counting task (veRL rows)
    python scripts/demo/steps.py ask URL IMAGE QUESTION OUT.json   one question through the official openai client
    python scripts/demo/steps.py index RUN_DIR                     RUN_DIR/index.html + headline JSON on stdout
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def valid(model: str, out: Path, n: int) -> dict[str, Any]:
    """MODEL on held-out prompts of the counting task, greedy, through the real agent loop and
    sandbox: the protocol-valid rate (benchmarks/sft_learns.py's rule), tool calls, accuracy."""
    from rl_tiny_learning import policy_stats  # benchmarks/rl_tiny_learning.py

    result = policy_stats(model, n, temperature=0.0, seed=99, work=out.parent)
    result["rate"], result["valid"] = result["protocol_valid"], round(result["protocol_valid"] * n)
    out.write_text(json.dumps(result, indent=2))
    return result


def count_sft(out: Path, n: int, p_tool: float) -> dict[str, Any]:
    """Trajectories of the RL counting task (scripted policy: the tool with probability
    ``p_tool``, else a guess; live sandbox)."""
    from rl_tiny_learning import sft_data  # benchmarks/rl_tiny_learning.py

    sft_data(out, n, p_tool=p_tool)
    return {"path": str(out), "trajectories": sum(1 for _ in out.open()), "p_tool": p_tool}


def count_bench(out: Path, n: int) -> dict[str, Any]:
    """Held-out counting questions as a veRL parquet (`deepeyes bench heldout --data`)."""
    from deepeyes_cli.curate.export import verl_row, write_verl
    from deepeyes_cli.testing.rl_task import write_dataset
    from deepeyes_cli.train.rl.prompts import load_prompts

    tasks = load_prompts([write_dataset(out.with_suffix(".jsonl"), n, seed=4321)])
    img_dir = out.with_suffix(".images")
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for t in tasks:
        refs = []
        for k, im in enumerate(t.images):
            name = f"{t.sample.id}-{k}.png"
            im.save(img_dir / name)
            refs.append(t.sample.images[k].model_copy(update={"path": name, "b64": None}))
        sample = t.sample.model_copy(update={"images": refs})
        rows.append(verl_row(sample, img_dir, system=None, instruction="", env_name="code", split="test"))
    write_verl(rows, out)
    return {"path": str(out), "items": len(rows)}


def ask(url: str, image: Path, question: str, out: Path) -> dict[str, Any]:
    """One question to `deepeyes serve` through the official openai client."""
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="demo", timeout=300, max_retries=0)
    data = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    t0 = time.perf_counter()
    reply = client.chat.completions.create(
        model="deepeyes", max_tokens=128, extra_body={"max_turns": 3, "include_reasoning": True},
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data}},
                                               {"type": "text", "text": question}]}])
    extra = reply.usage.model_extra if reply.usage else {}
    result = {"url": url, "question": question, "answer": reply.choices[0].message.content,
              "finish_reason": reply.choices[0].finish_reason,
              "reasoning": (getattr(reply.choices[0].message, "reasoning_content", None) or "")[:2000],
              "total_tokens": reply.usage.total_tokens if reply.usage else None,
              "tool_calls": (extra or {}).get("tool_calls"), "seconds": round(time.perf_counter() - t0, 1)}
    out.write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("valid")
    p.add_argument("model")
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=32)
    p = sub.add_parser("count-sft")
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=96)
    p.add_argument("--p-tool", type=float, default=0.5)
    p = sub.add_parser("count-bench")
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=32)
    p = sub.add_parser("ask")
    p.add_argument("url")
    p.add_argument("image", type=Path)
    p.add_argument("question")
    p.add_argument("out", type=Path)
    p = sub.add_parser("index")
    p.add_argument("run_dir", type=Path)
    a = ap.parse_args()
    if a.cmd == "valid":
        r = valid(a.model, a.out, a.n)
        print(f"protocol-valid: {r['valid']}/{r['n']} = {r['rate']:.0%}; tool calls in {r['tool_rate']:.0%}, "
              f"right {r['right']:.0%} ({r['seconds']} s)")
    elif a.cmd == "count-sft":
        print(json.dumps(count_sft(a.out, a.n, a.p_tool)))
    elif a.cmd == "count-bench":
        print(json.dumps(count_bench(a.out, a.n)))
    elif a.cmd == "ask":
        r = ask(a.url, a.image, a.question, a.out)
        print(f"Q: {r['question']}\nA: {r['answer']!r}  ({r['total_tokens']} tokens, {r['tool_calls']} tool calls, "
              f"{r['seconds']} s)")
    else:
        from demo_index import summary_rows, write_index  # scripts/demo/demo_index.py

        for label, text in summary_rows(write_index(a.run_dir)):
            print(f"{label:<45} {text}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
