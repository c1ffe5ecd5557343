"""Server overhead and throughput of `deepeyes serve`, as JSON.

A real server process (uvicorn on loopback) runs a scripted policy that takes a fixed
``--latency`` per model call and the real sandbox (bwrap kernels): each request is a code
turn (one cell in its own sandbox session) and an answer turn. An async openai client
sends ``--requests`` requests at each concurrency level, each level starting with the
sandbox's ``--kernels`` kernels ready (a session per request; kernel start-up is the
sandbox's cost, not the server's), then ``--top`` requests all at once. Goals:
  - server overhead (request time beyond model generation, tool calls and queueing) <= 5 ms p50,
    measured by the server (``deepeyes.timing.overhead_s``) and from the client's side; also
    the server process's CPU time per request (its ``process_cpu_seconds_total``), which other
    processes on a shared machine do not inflate (it includes the sandbox pool's bookkeeping);
  - no errors at 64 concurrent requests;
  - throughput grows with concurrency up to the server's limit (``serve.max_concurrency``).
A control run without tools gives the server's own cost; ``--sandbox-server`` puts the kernels
in a `deepeyes sandbox serve` of their own (``sandbox.url``), as a deployment would.
Usage: python benchmarks/serve.py [--levels 1,4,16] [--requests 16] [--top 64] [--latency 0.05]
                                  [--sandbox-server]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TURNS = ["<think>Measure it.</think>\n<code>\n```python\nprint(image_1.size)\n```\n</code>",
         "Done.</think>\n<answer>64</answer>"]


def child(args: argparse.Namespace) -> None:
    """The server process: the scripted policy with a fixed latency, behind `serve`."""
    from deepeyes_cli.policy.scripted import ScriptedPolicy
    from deepeyes_cli.recipe.loader import load_recipe
    from deepeyes_cli.serve.server import serve

    tools = "[]" if args.no_tools else "[code]"
    remote = [f"sandbox.url={args.sandbox_url}"] if args.sandbox_url else []
    recipe = load_recipe("tiny", [f"agent.tools={tools}", "sandbox.isolation=bwrap", *remote,
                                  f"sandbox.pool_size={args.kernels}", f"sandbox.max_sessions={args.kernels}",
                                  "sandbox.memory_mb=1024", "serve.port=0", f"serve.max_concurrency={args.limit}",
                                  "serve.max_queue=1024", "run.log_level=warning"]).recipe
    policy = ScriptedPolicy(TURNS[1:] if args.no_tools else TURNS, delay_s=args.latency)
    serve(recipe, policy, on_ready=lambda url: print(url, flush=True))


def _image() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 140, 200)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _cpu_seconds(url: str) -> float:
    """The server process's CPU time (its /metrics): unlike wall time, not inflated by other
    processes competing for the cores."""
    import httpx

    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("process_cpu_seconds_total "):
            return float(line.split()[1])
    return float("nan")


async def level(base_url: str, concurrency: int, n: int) -> dict[str, Any]:
    from openai import AsyncOpenAI

    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": _image()}},
                                             {"type": "text", "text": "How big is it?"}]}]
    gate = asyncio.Semaphore(concurrency)
    rows: list[dict[str, float]] = []
    errors: list[str] = []

    async with AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=300) as client:
        async def one() -> None:
            async with gate:
                t0 = time.perf_counter()
                try:
                    out = await client.chat.completions.create(model="deepeyes", messages=messages)  # type: ignore[arg-type]
                except Exception as e:
                    errors.append(f"{type(e).__name__}: {e}")
                    return
                latency = time.perf_counter() - t0
                if out.choices[0].message.content != "64":
                    errors.append(f"answer {out.choices[0].message.content!r}")
                u = out.usage.model_extra if out.usage else {}
                timing = (out.model_extra or {})["deepeyes"]["timing"]
                work = u["generation_seconds"] + u["tool_seconds"]
                work += timing["sandbox_close_s"]
                rows.append({"latency": latency, "server": timing["overhead_s"], "queue": timing["queue_s"],
                             "client": latency - work - timing["queue_s"], "tool": u["tool_seconds"]})

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        wall = time.perf_counter() - t0

    def p(key: str, q: float) -> float:
        values = sorted(r[key] for r in rows)
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2) if values else float("nan")

    return {"concurrency": concurrency, "requests": n, "errors": len(errors), "first_errors": errors[:3],
            "wall_s": round(wall, 3), "throughput_rps": round(len(rows) / wall, 2),
            "latency_p50_ms": p("latency", 0.5), "tool_p50_ms": p("tool", 0.5),
            "server_overhead_p50_ms": p("server", 0.5), "server_overhead_p90_ms": p("server", 0.9),
            "client_overhead_p50_ms": p("client", 0.5), "client_overhead_p90_ms": p("client", 0.9),
            "queue_p50_ms": p("queue", 0.5)}


@contextlib.contextmanager
def _sandbox_server(args: argparse.Namespace) -> Iterator[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "deepeyes_cli", "sandbox", "serve", "-r", "tiny", "--port", "0",
           f"sandbox.pool_size={args.kernels}", f"sandbox.max_sessions={args.kernels}", "sandbox.memory_mb=1024",
           "run.log_level=warning"]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=tmp)
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "listening on" in line:
                    break
            else:
                raise SystemExit("the sandbox server did not start")
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            yield line.strip().rsplit(" ", 1)[-1]
        finally:
            proc.terminate()
            proc.wait(60)


def _kernels_ready(url: str, n: int, timeout: float = 300) -> None:
    import httpx

    def ready() -> int:
        body = httpx.get(url + "/health", timeout=30).json()
        return int(body.get("sandbox", body).get("ready_kernels", 0))

    deadline = time.monotonic() + timeout
    while ready() < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"the sandbox did not get {n} kernels ready in {timeout:g} s")
        time.sleep(0.5)


@contextlib.contextmanager
def _server(args: argparse.Namespace, no_tools: bool = False) -> Iterator[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, __file__, "--child", "--latency", str(args.latency), "--limit", str(args.limit),
           "--kernels", str(args.kernels), *(["--no-tools"] if no_tools else []),
           *(["--sandbox-url", args.sandbox_url] if args.sandbox_url else [])]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp)
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            if not url.startswith("http"):
                raise SystemExit("the server did not start")
            yield url
        finally:
            proc.terminate()
            proc.wait(60)


def _with_cpu(url: str, run: Any) -> dict[str, Any]:
    before = _cpu_seconds(url)
    row: dict[str, Any] = run()
    row["server_cpu_per_request_ms"] = round((_cpu_seconds(url) - before) / row["requests"] * 1000, 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--requests", type=int, default=16, help="requests per level")
    ap.add_argument("--top", type=int, default=64, help="then this many requests at once")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per scripted model call")
    ap.add_argument("--limit", type=int, default=16, help="serve.max_concurrency (the rest queue)")
    ap.add_argument("--kernels", type=int, default=16, help="sandbox pool size and max sessions")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-tools", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sandbox-server", action="store_true",
                    help="kernels in a `deepeyes sandbox serve` process of their own (sandbox.url), not in-process")
    ap.add_argument("--sandbox-url", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    steps = [int(c) for c in args.levels.split(",")]
    with _server(args, no_tools=True) as url:  # the control: no sandbox, the server's own cost
        asyncio.run(level(url + "/v1", 4, 8))
        control = [_with_cpu(url, lambda c=c: asyncio.run(level(url + "/v1", c, args.requests))) for c in steps]
        control.append(_with_cpu(url, lambda: asyncio.run(level(url + "/v1", args.top, args.top))))
    with contextlib.ExitStack() as stack:
        if args.sandbox_server:
            args.sandbox_url = stack.enter_context(_sandbox_server(args))
        url = stack.enter_context(_server(args))
        kernels = args.sandbox_url or url  # whose /health counts the ready kernels
        asyncio.run(level(url + "/v1", 4, 8))  # warm-up: imports, first kernels
        levels = []
        for c in steps:
            _kernels_ready(kernels, min(args.kernels, args.requests))
            levels.append(_with_cpu(url, lambda c=c: asyncio.run(level(url + "/v1", c, args.requests))))
        _kernels_ready(kernels, args.kernels)
        top = _with_cpu(url, lambda: asyncio.run(level(url + "/v1", args.top, args.top)))

    def grows(rows: list[dict[str, Any]]) -> bool:
        rows = [r for r in rows if r["concurrency"] <= args.limit]
        return all(b["throughput_rps"] > a["throughput_rps"] for a, b in itertools.pairwise(rows))

    result = {"benchmark": "serve", "latency_per_model_call_s": args.latency, "server_max_concurrency": args.limit,
              "sandbox_kernels": args.kernels,
              "sandbox": "sandbox serve (sandbox.url)" if args.sandbox_server else "in-process pool", "cpus": os.cpu_count(), "load_average": os.getloadavg(),
              "levels": levels, "all_at_once": top, "control_without_tools": control,
              "goals": {"server_overhead_p50_ms<=5": statistics.median(
                  [r["server_overhead_p50_ms"] for r in [*levels, top]]) <= 5,
                        f"no_errors_at_{args.top}_concurrent": top["errors"] == 0 and control[-1]["errors"] == 0,
                        "throughput_grows_with_concurrency": grows(levels),
                        "throughput_grows_with_concurrency_without_tools": grows(control)}}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
