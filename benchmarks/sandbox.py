"""Speed of a code sandbox server speaking the original `/jupyter_sandbox` API (ours or the original).

    python benchmarks/sandbox.py                      # starts `deepeyes sandbox serve` (bwrap) and measures it
    python benchmarks/sandbox.py --url http://127.0.0.1:8000   # any server speaking the API

Measures, over HTTP like a trainer would (keep-alive connections, a lean h11 client):
  new_session_first_cell  a fresh session id's first `print(1)` (our server: a pre-started kernel)
  warm_round_trip         `print(1)` on a warm session
  warm_round_trip_httpx   the same through httpx (what HttpExecutor uses): its client overhead included
  crop_cell               crop 512x512 out of a 1024x1024 `image_1` and return it as an image
  throughput              cells/s from 8 sessions at once, each running `print(1)` back to back
  back_to_back            new sessions arriving at --rate per second (open loop, as an RL step opens
                          them): first-cell p50/p90, each session ended after its cell
  kernel_start_cpu_s      CPU seconds one new session costs the machine (the server's process tree:
                          server, template, kernels; only for a server started here)
  never_ended             --never-ended distinct session ids x 2 cells from 8 workers, never ended (as
                          DeepEyesV2's client does): wall time, errors, cell p50/p99, evictions, server
                          memory (PSS of its process tree) before/after, CPU of the server's tree
                          per open idle session over 5 s; then warm_round_trip and throughput again with those
                          sessions left open (`*_after_never_ended`)
Prints one JSON object (milliseconds; targets from the issue; `meets` per target).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
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
from urllib.parse import urlsplit

import h11  # HTTP/1.1 framing; installed with httpx and uvicorn
import httpx

TARGETS = {"new_session_first_cell_p50_ms": 50.0, "warm_round_trip_p50_ms": 5.0, "crop_cell_p50_ms": 60.0,
           "throughput_cells_per_s": 150.0, "back_to_back_first_cell_p50_ms": 50.0}
CROP = {"expr": "image_1.crop((256, 256, 768, 768))",
        "plt": "plt.imshow(image_1.crop((256, 256, 768, 768))); plt.axis('off'); plt.show()"}


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {"p50_ms": round(statistics.median(ms), 2), "p90_ms": round(ms[int(len(ms) * 0.9) - 1], 2),
            "min_ms": round(ms[0], 2), "n": len(ms)}


class Connection:
    """One keep-alive HTTP/1.1 connection framed by h11. The benchmark's client must not be
    what it measures: httpx spends about a millisecond of Python per request here, a fifth
    of the warm-cell budget (its figure is reported too, as `warm_round_trip_httpx`)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = [("Host", parts.netloc), ("Content-Type", "application/json"), *headers.items()]
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.conn = h11.Connection(h11.CLIENT)

    async def post(self, path: str, body: dict) -> tuple[int, bytes]:
        if self.writer is None or self.conn.our_state is h11.MUST_CLOSE:
            # asyncio turns Nagle off on TCP connections it opens.
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.conn = h11.Connection(h11.CLIENT)
        elif self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        assert self.reader is not None
        data = json.dumps(body).encode()
        request = h11.Request(method="POST", target=path, headers=[*self.headers, ("Content-Length", str(len(data)))])
        self.writer.write(self.conn.send(request) + self.conn.send(h11.Data(data=data)) +
                          self.conn.send(h11.EndOfMessage()))
        status, chunks = 0, []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.reader.read(1 << 16))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, b"".join(chunks)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


class Bench:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.connections: list[Connection] = []

    def connection(self) -> Connection:
        conn = Connection(self.url, self.headers)
        self.connections.append(conn)
        return conn

    async def cell(self, sid: str, code: str, conn: Connection | None = None) -> dict:
        status, raw = await (conn or self.connection()).post("/jupyter_sandbox",
                                                            {"session_id": sid, "code": code, "timeout": 60})
        body = json.loads(raw)
        if status != 200 or body.get("status") != "success":
            raise RuntimeError(f"cell failed ({status}): {body}")
        return body

    async def end(self, sid: str, conn: Connection) -> None:
        await conn.post("/clear_session", {"session_id": sid})

    async def new_sessions(self, n: int, interval: float) -> list[float]:
        conn = self.connection()
        times = []
        for _ in range(n):
            sid = uuid.uuid4().hex
            start = time.perf_counter()
            await self.cell(sid, "print(1)", conn)
            times.append(time.perf_counter() - start)
            await self.end(sid, conn)
            await asyncio.sleep(interval)
        return times

    async def warm(self, n: int) -> list[float]:
        conn = self.connection()
        sid = uuid.uuid4().hex
        for _ in range(10):
            await self.cell(sid, "print(1)", conn)
        times = []
        for _ in range(n):
            start = time.perf_counter()
            await self.cell(sid, "print(1)", conn)
            times.append(time.perf_counter() - start)
        await self.end(sid, conn)
        return times

    async def warm_httpx(self, n: int) -> list[float]:
        """The same round trip through httpx (what `HttpExecutor` uses): client overhead included."""
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=120) as client:
            sid = uuid.uuid4().hex
            body = {"session_id": sid, "code": "print(1)", "timeout": 60}
            for _ in range(10):
                (await client.post("/jupyter_sandbox", json=body)).raise_for_status()
            times = []
            for _ in range(n):
                start = time.perf_counter()
                (await client.post("/jupyter_sandbox", json=body)).raise_for_status()
                times.append(time.perf_counter() - start)
            await client.post("/clear_session", json={"session_id": sid})
        return times

    async def crop(self, n: int, mode: str) -> tuple[list[float], int]:
        from PIL import Image

        conn = self.connection()
        sid = uuid.uuid4().hex
        img = Image.effect_mandelbrot((1024, 1024), (-2.0, -1.5, 1.0, 1.5), 100).convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        data = base64.b64encode(buf.getvalue()).decode()
        await self.cell(sid, f"import base64, io\nfrom PIL import Image\nimage_1 = Image.open(io.BytesIO("
                             f"base64.b64decode('{data}'))).convert('RGB')", conn)
        for _ in range(3):
            await self.cell(sid, CROP[mode], conn)
        times, returned = [], 0
        for _ in range(n):
            start = time.perf_counter()
            body = await self.cell(sid, CROP[mode], conn)
            times.append(time.perf_counter() - start)
            returned = len(body["output"].get("images") or [])
        await self.end(sid, conn)
        return times, returned

    async def throughput(self, sessions: int, seconds: float) -> float:
        sids = {uuid.uuid4().hex: self.connection() for _ in range(sessions)}
        await asyncio.gather(*(self.cell(s, "print(1)", c) for s, c in sids.items()))
        count = 0
        stop = time.perf_counter() + seconds

        async def loop(sid: str, conn: Connection) -> None:
            nonlocal count
            while time.perf_counter() < stop:
                await self.cell(sid, "print(1)", conn)
                count += 1

        start = time.perf_counter()
        await asyncio.gather(*(loop(s, c) for s, c in sids.items()))
        elapsed = time.perf_counter() - start
        await asyncio.gather(*(self.end(s, c) for s, c in sids.items()))
        return count / elapsed

    async def back_to_back(self, n: int, rate: float) -> dict:
        """``n`` new sessions, one every 1/rate s whether or not the earlier ones are done."""
        errors: list[str] = []

        async def one(delay: float) -> float | None:
            await asyncio.sleep(delay)
            conn = Connection(self.url, self.headers)
            sid = uuid.uuid4().hex
            try:
                start = time.perf_counter()
                await self.cell(sid, "print(1)", conn)
                took = time.perf_counter() - start
                await self.end(sid, conn)
                return took
            except (RuntimeError, OSError, ValueError) as e:  # e.g. 503: no kernel became ready in time
                errors.append(str(e)[:200])
                return None
            finally:
                await conn.close()

        times = [t for t in await asyncio.gather(*(one(i / rate) for i in range(n))) if t is not None]
        return {**(_summary(times) if times else {"n": 0}), "rate_per_s": rate, "errors": len(errors),
                "first_errors": errors[:2]}

    async def never_ended(self, n: int, workers: int) -> dict:
        """``n`` distinct session ids, 2 cells each, never ended, from ``workers`` at once."""
        ids = iter(range(n))
        times: list[float] = []
        errors: list[str] = []
        notes = 0

        async def worker() -> None:
            nonlocal notes
            conn = Connection(self.url, self.headers)
            try:
                for i in ids:
                    sid = f"never-ended-{uuid.uuid4().hex[:8]}-{i}"
                    for code in (f"x = {i}", "print(x)"):
                        start = time.perf_counter()
                        try:
                            body = await self.cell(sid, code, conn)
                        except (RuntimeError, OSError, ValueError) as e:
                            errors.append(str(e)[:200])
                            continue
                        times.append(time.perf_counter() - start)
                        notes += bool(body.get("deepeyes", {}).get("notes"))
                        if code == "print(x)" and body["output"]["stdout"] != f"{i}\n":
                            errors.append(f"session {sid} lost its variable: {body['output']}")
            finally:
                await conn.close()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        wall = time.perf_counter() - start
        ms = sorted(t * 1000 for t in times) or [0.0]
        return {"sessions": n, "cells": len(times), "workers": workers, "wall_s": round(wall, 1),
                "errors": len(errors), "first_errors": errors[:3], "cells_with_notes": notes,
                "cell_p50_ms": round(statistics.median(ms), 1), "cell_p99_ms": round(ms[int(len(ms) * 0.99) - 1], 1)}

    async def health(self) -> dict:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            return dict((await client.get("/health")).json())

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.connections))


def tree(pid: int) -> tuple[float, float]:
    """CPU seconds of ``pid`` and its descendants (their own, not that of children already gone)
    and their proportional set size in MiB (shared pages, such as a template's, counted once)."""
    ticks = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        procs[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)  # utime + stime
    members, grew = {pid}, True
    while grew:
        grew = False
        for p, (parent, _) in procs.items():
            if parent in members and p not in members:
                members.add(p)
                grew = True
    pss = 0
    for p in members:
        with contextlib.suppress(OSError), open(f"/proc/{p}/smaps_rollup") as f:
            pss += next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
    return sum(procs[p][1] for p in members if p in procs), pss / 1024


async def settled(bench: Bench, timeout: float = 120.0) -> None:
    """Wait until the pool has its kernels ready and none is starting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = await bench.health()
        if h.get("starting_kernels", 0) == 0 and h.get("ready_kernels", 0) >= 1:
            return
        await asyncio.sleep(0.5)


async def kernel_start_cpu(bench: Bench, pid: int, n: int) -> float:
    """CPU seconds one new session costs: ``n`` sessions opened one at a time (one cell each) and
    kept open, so that every process that did the work (the server, the template, the kernels
    started to refill the pool) is still alive when the CPU of the server's tree is read again."""
    await settled(bench)
    before, _ = tree(pid)
    conn = bench.connection()
    sids = [uuid.uuid4().hex for _ in range(n)]
    for sid in sids:
        await bench.cell(sid, "print(1)", conn)
        await asyncio.sleep(0.3)
    await settled(bench)
    after, _ = tree(pid)
    for sid in sids:
        await bench.end(sid, conn)
    return (after - before) / n


def start_server(isolation: str, pool_size: int, kernel_start: str) -> tuple[subprocess.Popen[str], str]:
    """Our server, with default settings but for the pool size and how kernels start."""
    repo = Path(__file__).resolve().parent.parent
    run_dir = tempfile.mkdtemp(prefix="bench-sandbox-")
    cmd = [sys.executable, "-m", "deepeyes_cli", "sandbox", "serve", "--port", "0", "--isolation", isolation,
           "--run-dir", run_dir, f"sandbox.pool_size={pool_size}", f"sandbox.kernel_start={kernel_start}"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=run_dir)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on" in line:
            return proc, line.strip().rsplit(" ", 1)[-1]
    raise SystemExit(f"the server did not start (exit {proc.wait()})")


async def measure(args: argparse.Namespace, url: str, pid: int | None) -> dict:
    bench = Bench(url, args.token)
    await asyncio.sleep(args.warmup)  # let the pool fill
    out: dict = {"url": url}
    out["new_session_first_cell"] = _summary(await bench.new_sessions(args.sessions, args.session_interval))
    out["warm_round_trip"] = _summary(await bench.warm(args.n))
    out["warm_round_trip_httpx"] = _summary(await bench.warm_httpx(args.n))
    times, returned = await bench.crop(max(10, args.n // 4), args.crop_return)
    out["crop_cell"] = {**_summary(times), "images_returned": returned, "returned_as": args.crop_return}
    out["throughput_cells_per_s"] = round(await bench.throughput(args.concurrency, args.seconds), 1)
    if args.rate > 0:
        await asyncio.sleep(args.warmup)
        out["back_to_back"] = await bench.back_to_back(args.arrivals, args.rate)
    if pid is not None and args.cpu_sessions > 0:
        out["kernel_start_cpu_s"] = round(await kernel_start_cpu(bench, pid, args.cpu_sessions), 3)
    if args.never_ended > 0:
        rss_before = tree(pid)[1] if pid is not None else None
        out["never_ended"] = await bench.never_ended(args.never_ended, args.concurrency)
        health = await bench.health()
        out["never_ended"].update(evicted=health.get("sessions_evicted"), open_after=health.get("sessions"),
                                  server_tree_pss_mib_before=round(rss_before, 1) if rss_before else None,
                                  server_tree_pss_mib_after=round(tree(pid)[1], 1) if pid is not None else None)
        if pid is not None:  # what the idle sessions left open cost while nothing runs
            await settled(bench)
            cpu0, began = tree(pid)[0], time.perf_counter()
            await asyncio.sleep(5.0)
            idle_cpu = (tree(pid)[0] - cpu0) / (time.perf_counter() - began)
            out["never_ended"]["idle_cpu_ms_per_s_per_open_session"] = round(
                1000 * idle_cpu / max(1, health.get("sessions", 1)), 3)
        out["warm_round_trip_after_never_ended"] = _summary(await bench.warm(args.n))
        out["throughput_after_never_ended_cells_per_s"] = round(
            await bench.throughput(args.concurrency, args.seconds), 1)
    await bench.close()
    measured = {"new_session_first_cell_p50_ms": out["new_session_first_cell"]["p50_ms"],
                "warm_round_trip_p50_ms": out["warm_round_trip"]["p50_ms"],
                "crop_cell_p50_ms": out["crop_cell"]["p50_ms"], "throughput_cells_per_s": out["throughput_cells_per_s"]}
    if "back_to_back" in out:
        b2b = out["back_to_back"]
        measured["back_to_back_first_cell_p50_ms"] = b2b["p50_ms"] if b2b["n"] and not b2b["errors"] else float("inf")
    out["targets"] = TARGETS
    out["meets"] = {k: (measured[k] >= v if k.startswith("throughput") else measured[k] <= v)
                    for k, v in TARGETS.items() if k in measured}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="A running server; default: start `deepeyes sandbox serve` here.")
    p.add_argument("--token")
    p.add_argument("--isolation", default="bwrap", choices=["bwrap", "docker", "none"],
                   help="For the server we start (docker: the engine at DOCKER_HOST, sandbox.docker_image).")
    p.add_argument("--pool-size", type=int, default=4, help="For the server we start.")
    p.add_argument("--n", type=int, default=200, help="Warm round trips.")
    p.add_argument("--sessions", type=int, default=20, help="New sessions.")
    p.add_argument("--session-interval", type=float, default=0.5,
                   help="Seconds between new sessions (time for the pool to start a replacement).")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rate", type=float, default=8.0, help="New sessions per second for back_to_back (0: skip).")
    p.add_argument("--arrivals", type=int, default=40, help="New sessions for back_to_back.")
    p.add_argument("--cpu-sessions", type=int, default=10, help="New sessions for kernel_start_cpu_s (0: skip).")
    p.add_argument("--never-ended", type=int, default=200, help="Never-ended sessions (0: skip).")
    p.add_argument("--kernel-start", default="auto", choices=["auto", "fork", "exec"], help="For the server we start.")
    p.add_argument("--crop-return", choices=sorted(CROP), default="expr",
                   help="expr: the crop as the last expression; plt: plt.imshow + plt.show (the original captures only this)")
    args = p.parse_args()
    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(args.isolation, args.pool_size, args.kernel_start)
    try:
        result = asyncio.run(measure(args, url, proc.pid if proc is not None else None))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    result["machine"] = {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
                         "isolation": args.isolation if args.url is None else "unknown (external server)",
                         "kernel_start": args.kernel_start if args.url is None else "unknown"}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
