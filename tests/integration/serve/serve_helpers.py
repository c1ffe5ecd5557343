"""Helpers for the serve tests: real `deepeyes serve` processes on loopback, started through the CLI, for the API tests.

The scripted policy runs a code turn that sleeps ``(image_1.width - 32) / 100`` seconds in the real
bwrap sandbox, then answers 42: a request's image width sets how long it holds its slot and
its sandbox session (32 px, the smallest an image is: no wait; 332 px: 3 s).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
SLEEPY_SCRIPT = [
    "<think>look closer</think>\n<code>\n```python\nimport time\ntime.sleep(max(0, image_1.width - 32) / 100)\n"
    "print(image_1.size)\n```\n</code>",
    "the size is known</think>\n<answer>42</answer>",
]

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap is not installed (make sandbox-deps installs it)")


def data_url(width: int, height: int = 40, fmt: str = "PNG") -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def question(*urls: str, text: str = "What size is it?") -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


@dataclass
class Served:
    url: str
    key: str | None
    proc: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def openai(self, key: str | None = "", **kw: Any) -> Any:
        from openai import OpenAI

        return OpenAI(base_url=self.base_url, api_key=(self.key or "none") if key == "" else (key or "none"),
                      max_retries=0, timeout=kw.pop("timeout", 60), **kw)

    def async_openai(self, **kw: Any) -> Any:
        from openai import AsyncOpenAI

        return AsyncOpenAI(base_url=self.base_url, api_key=self.key or "none", max_retries=0, timeout=60, **kw)

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/health", timeout=10).json())

    def wait_for(self, check: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            h = self.health()
            if check(h):
                return h
            if time.monotonic() > deadline:
                raise AssertionError(f"health never matched: {h}\n" + "".join(self.log[-30:]))
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_server(tmp: Path, *overrides: str, key: str | None = None, timeout: float = 180) -> Served:
    """``deepeyes serve --port 0`` in a subprocess; returns once it says where it listens."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("DEEPEYES_API_KEY", None)
    if key:
        env["DEEPEYES_API_KEY"] = key
    cmd = [sys.executable, "-m", "deepeyes_cli", "serve", "-r", "tiny", "--port", "0", "--run-dir", str(tmp / "run"),
           *overrides]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=tmp)
    assert proc.stderr is not None
    lines: list[str] = []
    url = None
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        lines.append(line)
        found = re.search(r"^serving \S+ on (http://\S+)/v1", line)
        if found:
            url = found.group(1)
            break
        if time.monotonic() > deadline:
            break
    if url is None:
        proc.kill()
        raise RuntimeError("deepeyes serve did not start:\n" + "".join(lines))
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    return Served(url, key, proc, lines)


def scripted_overrides(tmp: Path, *extra: str) -> list[str]:
    script = tmp / "turns.json"
    script.write_text(json.dumps(SLEEPY_SCRIPT))
    return ["policy.backend=scripted", f"policy.script={script}", "agent.tools=[code]", "sandbox.isolation=bwrap",
            "sandbox.pool_size=1", "sandbox.memory_mb=1024", *extra]
