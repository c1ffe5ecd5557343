"""The demo's Python steps (called by scripts/demo.sh). Each writes JSON that the index
page reads back: no figure is typed in by hand.

    python scripts/demo/steps.py valid MODEL OUT.json [--n 20]     protocol-valid rate (benchmarks/sft_learns.py)
    python scripts/demo/steps.py count-sft OUT.jsonl [--n 96]      RL warm-start trajectories (benchmarks/rl_tiny_learning.py)
    python scripts/demo/steps.py syn-sft OUT.jsonl [--n 48]        colour-question trajectories (testing/sft_data.py)
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
    """The protocol-valid rate of MODEL on held-out prompts, measured by the sft benchmark's function."""
    from sft_learns import evaluate  # benchmarks/sft_learns.py

    from deepeyes_cli.recipe.loader import load_recipe

    recipe = load_recipe("tiny").recipe
    result = {"model": model, **evaluate(recipe, model, n, seed=99)}
    out.write_text(json.dumps(result, indent=2))
    return result


def count_sft(out: Path, n: int) -> dict[str, Any]:
    """Trajectories of the RL counting task (scripted policy, tool half of the time, live sandbox)."""
    from rl_tiny_learning import sft_data  # benchmarks/rl_tiny_learning.py

    sft_data(out, n)
    return {"path": str(out), "trajectories": sum(1 for _ in out.open())}


def syn_sft(out: Path, n: int) -> dict[str, Any]:
    """Trajectories of the protocol-valid benchmark's task (colour questions, the search tool)."""
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.testing.sft_data import write_sft_trajectories

    write_sft_trajectories(load_recipe("tiny").recipe, out, n, seed=1)  # held-out prompts use seed 99
    return {"path": str(out), "trajectories": sum(1 for _ in out.open())}


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
    p.add_argument("--n", type=int, default=20)
    p = sub.add_parser("count-sft")
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=96)
    p = sub.add_parser("syn-sft")
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=48)
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
        print(f"protocol-valid: {r['valid']}/{r['n']} = {r['rate']:.0%} ({r['seconds']} s; ends: {r['end_reasons']})")
    elif a.cmd == "count-sft":
        print(json.dumps(count_sft(a.out, a.n)))
    elif a.cmd == "syn-sft":
        print(json.dumps(syn_sft(a.out, a.n)))
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
