"""The trajectory page in headless Chromium: what it shows, and its filters (preset from
the URL, applied by the page's script)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from deepeyes_cli.agent.config import AgentConfig
from deepeyes_cli.agent.loop import AgentRuntime, run_trajectory
from deepeyes_cli.agent.records import Task
from deepeyes_cli.agent.trajectory import Sample, Trajectory, append_jsonl
from deepeyes_cli.agent.viewer import write_html
from deepeyes_cli.policy.scripted import ScriptedPolicy
from deepeyes_cli.tools.base import ToolContext, ToolResult

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")


class _Search:
    name = "search"
    description = "search"
    parameters: dict = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}

    async def __call__(self, args: dict, ctx: ToolContext) -> ToolResult:
        return ToolResult(text="1. <image>\n[A red sign]", images=[Image.new("RGB", (60, 60), "red")])


def _traj(turns: list[str], question: str) -> Trajectory:
    rt = AgentRuntime(ScriptedPolicy(turns), {"search": _Search()}, AgentConfig(), "SYS", "INSTR")
    task = Task(Sample(id=question, question=question), [Image.new("RGB", (80, 60), "blue")])
    return asyncio.run(run_trajectory(task, rt))


def _dump(page: Path, query: str, tmp_path: Path) -> str:
    profile = tmp_path / f"profile-{abs(hash(query))}"
    profile.mkdir()
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",  # type: ignore[list-item]
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--dump-dom", f"{page.as_uri()}{query}"],
        capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _visible_questions(dom: str) -> list[str]:
    shown = []
    for m in re.finditer(r'<details class="traj"[^>]*>.*?<b class="question">(.*?)</b>', dom, re.S):
        if " hidden" not in m.group(0).split(">", 1)[0]:
            shown.append(m.group(1))
    return shown


def test_page_in_headless_chromium(tmp_path: Path) -> None:
    call = '<think>look</think><tool_call>{"name": "search", "arguments": {"query": "sign"}}</tool_call>'
    trajs = [_traj([call, "x</think><answer>STOP</answer>"], "searched"),
             _traj(["no idea"], "silent"),
             _traj(['<tool_call>{"name": "nope"}</tool_call>', "<answer>B</answer>"], "malformed")]
    jsonl = tmp_path / "t.jsonl"
    append_jsonl(jsonl, trajs)
    page = tmp_path / "page.html"
    write_html([jsonl], page)

    dom = _dump(page, "", tmp_path)
    assert _visible_questions(dom) == ["searched", "silent", "malformed"]
    assert '<span id="shown-count" class="meta">3 of 3 shown</span>' in dom
    assert "STOP" in dom and "[A red sign]" in dom
    # the page's script puts each image in place from the one embedded copy (the inputs are identical)
    assert len(re.findall(r'<img data-sha="\w+"[^>]* src="data:image/png;base64,', dom)) == 3 + 1
    assert f"3 trajectories from {jsonl}" in dom
    assert "Error: Invalid tool call name" in dom and "invalid_tool_call" not in dom
    assert '<div class="role">feedback to the model</div>' in dom  # not dressed up as a tool result

    assert _visible_questions(_dump(page, "?outcome=answered", tmp_path)) == ["searched", "malformed"]
    assert _visible_questions(_dump(page, "?tool=search", tmp_path)) == ["searched"]
    dom = _dump(page, "?error=1", tmp_path)
    assert _visible_questions(dom) == ["malformed"] and "1 of 3 shown" in dom
