"""Speed of a code sandbox server speaking the original `/jupyter_sandbox` API (ours or the original).

    python benchmarks/sandbox.py                      # starts `deepeyes sandbox serve` (bwrap) and measures it
    python benchmarks/sandbox.py --url http://127.0.0.1:8000   # any server speaking the API

Measures, over HTTP like a trainer would:
  new_session_first_cell  a fresh session id's first `print(1)` (our server: a pre-started kernel)
  warm_round_trip         `print(1)` on a warm session
  crop_cell               crop 512x512 out of a 1024x1024 `image_1` and return it as an image
  throughput              cells/s from 8 sessions at once, each running `print(1)` back to back
Prints one JSON object (milliseconds; targets from the issue; `meets` per target).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

TARGETS = {"new_session_first_cell_p50_ms": 50.0, "warm_round_trip_p50_ms": 5.0, "crop_cell_p50_ms": 60.0,
           "throughput_cells_per_s": 150.0}
CROP = {"expr": "image_1.crop((256, 256, 768, 768))",
        "plt": "plt.imshow(image_1.crop((256, 256, 768, 768))); plt.axis('off'); plt.show()"}


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {"p50_ms": round(statistics.median(ms), 2), "p90_ms": round(ms[int(len(ms) * 0.9) - 1], 2),
            "min_ms": round(ms[0], 2), "n": len(ms)}


class Bench:
    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=120,
                                        limits=httpx.Limits(max_connections=64))

    async def cell(self, sid: str, code: str) -> dict:
        resp = await self.client.post("/jupyter_sandbox", json={"session_id": sid, "code": code, "timeout": 60})
        resp.raise_for_status()
        body = resp.json()
        if body.get("status") != "success":
            raise RuntimeError(f"cell failed: {body}")
        return body

    async def end(self, sid: str) -> None:
        await self.client.post("/clear_session", json={"session_id": sid})

    async def new_sessions(self, n: int, interval: float) -> list[float]:
        times = []
        for _ in range(n):
            sid = uuid.uuid4().hex
            start = time.perf_counter()
            await self.cell(sid, "print(1)")
            times.append(time.perf_counter() - start)
            await self.end(sid)
            await asyncio.sleep(interval)
        return times

    async def warm(self, n: int) -> list[float]:
        sid = uuid.uuid4().hex
        for _ in range(10):
            await self.cell(sid, "print(1)")
        times = []
        for _ in range(n):
            start = time.perf_counter()
            await self.cell(sid, "print(1)")
            times.append(time.perf_counter() - start)
        await self.end(sid)
        return times

    async def crop(self, n: int, mode: str) -> tuple[list[float], int]:
        from PIL import Image

        sid = uuid.uuid4().hex
        img = Image.effect_mandelbrot((1024, 1024), (-2.0, -1.5, 1.0, 1.5), 100).convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        data = base64.b64encode(buf.getvalue()).decode()
        await self.cell(sid, f"import base64, io\nfrom PIL import Image\nimage_1 = Image.open(io.BytesIO("
                             f"base64.b64decode('{data}'))).convert('RGB')")
        for _ in range(3):
            await self.cell(sid, CROP[mode])
        times, returned = [], 0
        for _ in range(n):
            start = time.perf_counter()
            body = await self.cell(sid, CROP[mode])
            times.append(time.perf_counter() - start)
            returned = len(body["output"].get("images") or [])
        await self.end(sid)
        return times, returned

    async def throughput(self, sessions: int, seconds: float) -> float:
        sids = [uuid.uuid4().hex for _ in range(sessions)]
        await asyncio.gather(*(self.cell(s, "print(1)") for s in sids))
        count = 0
        stop = time.perf_counter() + seconds

        async def loop(sid: str) -> None:
            nonlocal count
            while time.perf_counter() < stop:
                await self.cell(sid, "print(1)")
                count += 1

        start = time.perf_counter()
        await asyncio.gather(*(loop(s) for s in sids))
        elapsed = time.perf_counter() - start
        await asyncio.gather(*(self.end(s) for s in sids))
        return count / elapsed


def start_server(isolation: str, pool_size: int) -> tuple[subprocess.Popen[str], str]:
    repo = Path(__file__).resolve().parent.parent
    run_dir = tempfile.mkdtemp(prefix="bench-sandbox-")
    cmd = [sys.executable, "-m", "deepeyes_cli", "sandbox", "serve", "--port", "0", "--isolation", isolation,
           "--run-dir", run_dir, f"sandbox.pool_size={pool_size}", "sandbox.max_sessions=64"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=run_dir)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on" in line:
            return proc, line.strip().rsplit(" ", 1)[-1]
    raise SystemExit(f"the server did not start (exit {proc.wait()})")


async def measure(args: argparse.Namespace, url: str) -> dict:
    bench = Bench(url, args.token)
    await asyncio.sleep(args.warmup)  # let the pool fill
    out: dict = {"url": url}
    out["new_session_first_cell"] = _summary(await bench.new_sessions(args.sessions, args.session_interval))
    out["warm_round_trip"] = _summary(await bench.warm(args.n))
    times, returned = await bench.crop(max(10, args.n // 4), args.crop_return)
    out["crop_cell"] = {**_summary(times), "images_returned": returned, "returned_as": args.crop_return}
    out["throughput_cells_per_s"] = round(await bench.throughput(args.concurrency, args.seconds), 1)
    await bench.client.aclose()
    measured = {"new_session_first_cell_p50_ms": out["new_session_first_cell"]["p50_ms"],
                "warm_round_trip_p50_ms": out["warm_round_trip"]["p50_ms"],
                "crop_cell_p50_ms": out["crop_cell"]["p50_ms"], "throughput_cells_per_s": out["throughput_cells_per_s"]}
    out["targets"] = TARGETS
    out["meets"] = {k: (measured[k] >= v if k.startswith("throughput") else measured[k] <= v)
                    for k, v in TARGETS.items()}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="A running server; default: start `deepeyes sandbox serve` here.")
    p.add_argument("--token")
    p.add_argument("--isolation", default="bwrap", choices=["bwrap", "none"], help="For the server we start.")
    p.add_argument("--pool-size", type=int, default=4, help="For the server we start.")
    p.add_argument("--n", type=int, default=200, help="Warm round trips.")
    p.add_argument("--sessions", type=int, default=20, help="New sessions.")
    p.add_argument("--session-interval", type=float, default=0.5,
                   help="Seconds between new sessions (time for the pool to start a replacement).")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--crop-return", choices=sorted(CROP), default="expr",
                   help="expr: the crop as the last expression; plt: plt.imshow + plt.show (the original captures only this)")
    args = p.parse_args()
    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(args.isolation, args.pool_size)
    try:
        result = asyncio.run(measure(args, url))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    result["machine"] = {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
                         "isolation": args.isolation if args.url is None else "unknown (external server)"}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
