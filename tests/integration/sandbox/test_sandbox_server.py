"""The HTTP server as the original's client and ours see it: the v1 format, images, auth,
session end, expiry notes, health and metrics."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid
from typing import Any

import pytest
from PIL import Image

from deepeyes_cli.errors import SandboxError
from deepeyes_cli.sandbox.base import SandboxExecutor
from deepeyes_cli.sandbox.client import HttpExecutor
from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.factory import make_executor
from deepeyes_cli.testing.servers import BackgroundServer


def _png(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_original_client_request_and_response_shape(sandbox_server: Any) -> None:
    # What DeepEyesV2's env sends: session id, code, timeout; what it reads: status, output.*
    sid = uuid.uuid4().hex
    body = sandbox_server.cell("x = 41\nprint('hi')\nx + 1", sid)
    assert body["status"] == "success" and isinstance(body["execution_time"], float)
    assert body["output"]["stdout"] == "hi\n" and body["output"]["result"] == "42"
    assert body["output"]["stderr"] == "" and body["output"]["images"] == []
    body = sandbox_server.cell("1 / 0", sid)
    assert body["status"] == "success" and "ZeroDivisionError" in body["output"]["stderr"]
    assert body["output"]["result"] == "None"  # the original's way of saying "no value"
    assert "\x1b[" not in body["output"]["stderr"] and body["deepeyes"]["status"] == "error"
    resp = sandbox_server.client.post("/jupyter_sandbox", json={"session_id": sid, "code": "  "})
    assert resp.json() == {"output": "Error: No code provided", "status": "error", "execution_time": 0.0}
    # `curl -d '{…}'` labels its JSON as form data: it is read as JSON all the same.
    resp = sandbox_server.client.post("/jupyter_sandbox", content=json.dumps({"session_id": sid, "code": "x"}),
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200 and resp.json()["output"]["result"] == "41"
    resp = sandbox_server.client.post("/jupyter_sandbox", content=b"not json")
    assert resp.status_code == 422 and resp.json()["detail"][0]["type"] == "json_invalid"
    assert sandbox_server.client.post("/clear_session", json={"session_id": sid}).json()["status"] == "success"


def test_the_original_deepeyesv2_client_works_unchanged(sandbox_server: Any) -> None:
    """DeepEyesV2's env posts with `requests` to a configurable URL, sends an init cell that decodes
    the image from base64 into image_1, then cells with timeout 200, and reads status,
    execution_time and output.{result, stdout, stderr, images}. It sends no headers."""
    import requests

    url, sid = f"{sandbox_server.url}/jupyter_sandbox", uuid.uuid4().hex

    def post(address: str, code: str) -> requests.Response:
        return requests.post(address, json={"session_id": sid, "code": code, "timeout": 200}, timeout=240)

    assert post(url, "print(1)").status_code == 401  # this server has a token
    address = f"{url}?token={sandbox_server.token}"  # which that client can carry in its URL
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 128, 255)).save(buf, format="PNG")
    init = ("from PIL import Image\nimport base64\nfrom io import BytesIO\n"
            f"_data = '{base64.b64encode(buf.getvalue()).decode()}'\n"
            "image_1 = Image.open(BytesIO(base64.b64decode(_data)))\n")
    body = post(address, init).json()
    assert body["status"] == "success" and body["output"]["stderr"] == "", body
    body = post(address, "print(image_1.size)\nplt.imshow(image_1); plt.axis('off'); plt.show()").json()
    out = body["output"]
    assert body["status"] == "success" and isinstance(body["execution_time"], float)
    assert out["stdout"] == "(64, 48)\n" and out["stderr"] == "" and out["result"] == "None"
    assert len(out["images"]) == 1 and _png(out["images"][0]).size[0] > 64  # a figure, decoded as it does
    sandbox_server.end(sid)


def test_every_kind_of_image_is_captured_as_png(sandbox_server: Any) -> None:
    sid = uuid.uuid4().hex
    img = Image.new("RGB", (64, 48), (200, 10, 10))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    resp = sandbox_server.client.post("/sessions", json={"session_id": sid, "images": [
        base64.b64encode(buf.getvalue()).decode(), base64.b64encode(buf.getvalue()).decode()]})
    assert resp.status_code == 200, resp.text
    code = ("print(image_1.size, image_2.size)\ndisplay(image_1)\nimage_2.show()\n"
            "plt.plot([1, 2]); plt.show()\nfig = plt.figure(); plt.plot([3, 1])\nimage_1.crop((0, 0, 10, 10))")
    body = sandbox_server.cell(code, sid)
    out = body["output"]
    assert out["stdout"] == "(64, 48) (64, 48)\n"
    sizes = [_png(i).size for i in out["images"]]
    # display, Image.show, plt.show, the last expression, then the figure left open (shown at the end)
    assert len(sizes) == 5 and sizes[0] == sizes[1] == (64, 48) and sizes[3] == (10, 10)
    assert sizes[2][0] > 100 and sizes[4][0] > 100
    assert _png(out["images"][0]).getpixel((0, 0))[:3] == (200, 10, 10)
    assert out["result"].startswith("<PIL.Image.Image image mode=RGB size=10x10")
    # Larger than the pixel cap: scaled down, not dropped.
    big = sandbox_server.cell("from PIL import Image\nImage.new('L', (4096, 4096))", sid)["output"]["images"]
    w, h = _png(big[0]).size
    assert w * h <= 2048 * 2048 and w == h
    sandbox_server.end(sid)


def test_auth_health_metrics_and_session_end(sandbox_server: Any) -> None:
    import httpx

    anonymous = httpx.post(sandbox_server.url + "/jupyter_sandbox", json={"code": "print(1)"})
    assert anonymous.status_code == 401
    wrong = httpx.post(sandbox_server.url + "/jupyter_sandbox", json={"code": "print(1)"},
                       headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    health = httpx.get(sandbox_server.url + "/health").json()
    assert health["status"] == "ok" and health["isolation"] == "bwrap"
    sid = uuid.uuid4().hex
    sandbox_server.cell("v = 1", sid)
    assert sandbox_server.client.delete(f"/sessions/{sid}").status_code == 200
    assert sandbox_server.client.delete(f"/sessions/{sid}").status_code == 404
    body = sandbox_server.cell("print('v' in globals())", sid)  # the id is reused: a fresh session
    assert body["output"]["stdout"] == "False\n"
    metrics = sandbox_server.client.get("/metrics").text
    assert 'deepeyes_sandbox_cells_total{status="ok"}' in metrics
    assert "deepeyes_sandbox_ready_kernels" in metrics and "deepeyes_sandbox_cell_seconds_bucket" in metrics
    sandbox_server.end(sid)


def test_http_executor_from_the_factory(sandbox_server: Any) -> None:
    cfg = SandboxConfig(url=sandbox_server.url + "/jupyter_sandbox", token=sandbox_server.token)

    async def go() -> Any:
        async with make_executor(cfg) as executor:  # type: ignore[attr-defined]
            assert isinstance(executor, SandboxExecutor)
            session = await executor.open_session([Image.new("RGB", (30, 20), "blue")])
            first = await session.run("w, h = image_1.size\nprint(w * h)")
            crop = await session.run("image_1.crop((0, 0, 5, 5))")
            slow = await session.run("import time\ntime.sleep(5)", timeout=0.5)
            await session.close()
            return first, crop, slow

    first, crop, slow = asyncio.run(go())
    assert first.status == "ok" and first.stdout == "600\n"
    assert crop.images and Image.open(io.BytesIO(crop.images[0])).size == (5, 5)
    assert slow.status == "timeout" and "interrupted" in (slow.error or "")


def test_the_http_executor_ends_the_sessions_left_open_on_exit(sandbox_server: Any) -> None:
    async def go() -> str:
        async with HttpExecutor(sandbox_server.url, sandbox_server.token) as executor:
            session = await executor.open_session()
            await session.run("left_behind = 1")
            return session.id  # not closed: the executor's exit must end it on the server

    sid = asyncio.run(go())
    body = sandbox_server.cell("print('left_behind' in globals())", sid)  # the id now opens a fresh session
    assert body["output"]["stdout"] == "False\n"
    sandbox_server.end(sid)


def test_an_answer_that_is_not_json_is_a_clear_error() -> None:
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    proxy = FastAPI()

    @proxy.post("/sessions")
    @proxy.post("/jupyter_sandbox")
    async def login_page() -> HTMLResponse:
        return HTMLResponse("<html>please log in</html>")

    async def go() -> None:
        async with HttpExecutor(server.url) as executor:
            await executor.open_session()

    with BackgroundServer(proxy) as server, pytest.raises(SandboxError, match="not a JSON object") as err:
        asyncio.run(go())
    assert "please log in" in err.value.message and "sandbox.url" in (err.value.hint or "")


def test_output_of_threads_child_processes_and_forks_is_all_captured(sandbox_server: Any) -> None:
    # ipykernel's flushes are skipped when nothing was written (kernel_init.lighten): nothing may be lost.
    code = ("import multiprocessing, os, subprocess, sys, threading, time\n"
            "for i in range(3):\n    print(i, flush=i == 1); time.sleep(0.1)\n"
            "subprocess.run(['echo', 'child'])\nos.system('echo system 1>&2')\n"
            "t = threading.Thread(target=lambda: print('thread')); t.start(); t.join()\n"
            "p = multiprocessing.get_context('fork').Process(target=lambda: print('forked')); p.start(); p.join()\n"
            "print('err', file=sys.stderr); print('end')")
    out = sandbox_server.cell(code)["output"]
    lines = out["stdout"].splitlines()
    # Child processes write to the file descriptor, read back by a thread of ipykernel: order may vary.
    assert sorted(lines) == sorted(["0", "1", "2", "child", "thread", "forked", "end"]), out
    assert [x for x in lines if x in ("0", "1", "2", "thread", "end")] == ["0", "1", "2", "thread", "end"]
    assert sorted(out["stderr"].splitlines()) == ["err", "system"], out


def test_a_child_process_output_at_the_end_of_a_cell_is_not_lost(sandbox_server: Any) -> None:
    # ipykernel reads a child's output from a pipe on its own thread; without waiting for it, about
    # one cell in a hundred came back empty here.
    sid = uuid.uuid4().hex
    outputs = [sandbox_server.cell("import os\nos.system('echo x')", sid)["output"]["stdout"] for _ in range(100)]
    assert outputs == ["x\n"] * 100
    sandbox_server.end(sid)
