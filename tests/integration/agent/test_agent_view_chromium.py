"""The trajectory page in headless Chromium (Debian's `chromium`, installed by `make test`'s
set-up where apt works): what it shows — turns, code, tool results, images, the reward as
labelled fields — its filters (preset from the URL, applied by the page's script), and a
screenshot whose pixels show the images really rendered. Without Chromium it skips, and
fails instead in CI where apt could have installed it."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
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
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if CHROMIUM is None:
        from deepeyes_cli.testing.ci import skip_or_fail

        # CI with apt: make test's set-up (scripts/ensure-chromium.sh) should have installed it
        skip_or_fail("Chromium is not installed (make browser-deps, or apt-get install -y chromium)",
                     fail_in_ci=shutil.which("apt-get") is not None)


class _Code:
    name = "code"
    description = "code"
    parameters: dict = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}

    async def __call__(self, args: dict, ctx: ToolContext) -> ToolResult:
        from deepeyes_cli.protocol import tags

        return ToolResult(text=tags.format_code_result("(80, 60)\n", "", 1),
                          images=[Image.new("RGB", (120, 120), (0, 200, 0))])


class _Search:
    name = "search"
    description = "search"
    parameters: dict = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}

    async def __call__(self, args: dict, ctx: ToolContext) -> ToolResult:
        return ToolResult(text="1. <image>\n[A red sign]", images=[Image.new("RGB", (60, 60), "red")])


def _traj(turns: list[str], question: str) -> Trajectory:
    rt = AgentRuntime(ScriptedPolicy(turns), {"search": _Search(), "code": _Code()}, AgentConfig(), "SYS", "INSTR")
    task = Task(Sample(id=question, question=question), [Image.new("RGB", (80, 60), "blue")])
    return asyncio.run(run_trajectory(task, rt))


def _chromium_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="profile-", dir=tmp_path)  # a fresh profile every time
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],  # type: ignore[list-item]
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def _dump(page: Path, query: str, tmp_path: Path) -> str:
    return _chromium_run(tmp_path, "--dump-dom", f"{page.as_uri()}{query}").stdout


def screenshot(page: Path, out: Path, tmp_path: Path, size: tuple[int, int] = (1100, 1400)) -> Image.Image:
    _chromium_run(tmp_path, f"--window-size={size[0]},{size[1]}", f"--screenshot={out}", page.as_uri())
    return Image.open(out).convert("RGB")


def sample_page(tmp_path: Path) -> tuple[Path, Path]:
    """Three trajectories (a code turn and a search turn, one without any action, one with a
    malformed call), the first scored; the page and its JSONL."""
    code = "<think>measure it</think>\n<code>\n```python\nprint(image_1.size)\n```\n</code>"
    call = '<think>look</think><tool_call>{"name": "search", "arguments": {"query": "sign"}}</tool_call>'
    trajs = [_traj([code, call, "x</think><answer>STOP</answer>"], "searched"),
             _traj(["no idea"], "silent"),
             _traj(['<tool_call>{"name": "nope"}</tool_call>', "<answer>B</answer>"], "malformed")]
    trajs[0].reward = {"version": 1, "score": 0.9, "accuracy": 1.0, "format": 1.0, "penalties": {"search": 0.1},
                       "decided_by": "judge", "rule": "alternatives_unsure", "judge_model": "judge-m",
                       "judge_cached": True, "prompt_version": "v1/answer-1a2b3c4d", "violations": [],
                       "warnings": [], "prediction": "STOP", "data_source": "search", "source_rule": "default"}
    trajs[2].reward = {"version": 1, "score": 0.0, "accuracy": 0.0, "format": 0.0, "decided_by": "rule",
                       "rule": "choice", "violations": [{"rule": "think_missing", "detail": "no </think> in the response"}],
                       "prediction": "B", "data_source": "unknown", "source_rule": "default"}
    jsonl = tmp_path / "t.jsonl"
    append_jsonl(jsonl, trajs)
    page = tmp_path / "page.html"
    write_html([jsonl], page)
    return page, jsonl


def _visible_questions(dom: str) -> list[str]:
    shown = []
    for m in re.finditer(r'<details class="traj"[^>]*>.*?<b class="question">(.*?)</b>', dom, re.S):
        if " hidden" not in m.group(0).split(">", 1)[0]:
            shown.append(m.group(1))
    return shown


def test_page_in_headless_chromium(tmp_path: Path) -> None:
    page, jsonl = sample_page(tmp_path)
    dom = _dump(page, "", tmp_path)
    assert _visible_questions(dom) == ["searched", "silent", "malformed"]
    assert '<span id="shown-count" class="meta">3 of 3 shown</span>' in dom
    assert "STOP" in dom and "[A red sign]" in dom
    # the page's script puts each image in place from the one embedded copy (the inputs are identical)
    assert len(re.findall(r'<img data-sha="\w+"[^>]* src="data:image/png;base64,', dom)) == 3 + 1 + 1
    # turns: the code turn's code and its result, then the search call and its result
    assert '<pre class="code">' in dom and "print(image_1.size)" in dom and "(80, 60)" in dom
    assert '<div class="role">code result</div>' in dom and '<div class="role">search result</div>' in dom
    assert '<b class="action">code</b>' in dom and '<b class="action">search</b>' in dom
    # the reward as labelled fields, never the raw dict
    assert "{'version'" not in dom and "&#39;version&#39;" not in dom
    assert '<dt>score</dt><dd>0.9</dd>' in dom and '<dt>accuracy</dt><dd>1</dd>' in dom
    assert '<dt>format</dt><dd>1</dd>' in dom and '<dt>penalties</dt><dd>search 0.1</dd>' in dom
    assert ('<dt>decided by</dt><dd>judge judge-m (cached verdict), prompt v1/answer-1a2b3c4d</dd>' in dom)
    assert '<dt>violations</dt><dd>none</dd>' in dom
    assert '<dt>decided by</dt><dd>rule: choice</dd>' in dom
    assert '<ul class="violations"><li>think_missing: no &lt;/think&gt; in the response</li></ul>' in dom
    assert 'score <b class="score">0.9</b>' in dom
    assert f"3 trajectories from {jsonl}" in dom
    assert "Error: Invalid tool call name" in dom and "invalid_tool_call" not in dom
    assert '<div class="role">feedback to the model</div>' in dom  # not dressed up as a tool result

    assert _visible_questions(_dump(page, "?outcome=answered", tmp_path)) == ["searched", "malformed"]
    assert _visible_questions(_dump(page, "?tool=search", tmp_path)) == ["searched"]
    dom = _dump(page, "?error=1", tmp_path)
    assert _visible_questions(dom) == ["malformed"] and "1 of 3 shown" in dom


def _share(img: Image.Image, color: tuple[int, int, int], tol: int = 12) -> float:
    """The share of the screenshot's pixels within ``tol`` of ``color``."""
    import numpy as np

    px = np.asarray(img, dtype=np.int16)
    return float((np.abs(px - np.array(color, dtype=np.int16)) <= tol).all(axis=-1).mean())


@pytest.mark.slow
def test_screenshot_shows_the_images_rendered(tmp_path: Path) -> None:
    page, _ = sample_page(tmp_path)
    shot = screenshot(page, tmp_path / "page.png", tmp_path)
    assert shot.size == (1100, 1400)
    # the input photo (blue), the code figure (green) and the search thumbnail (red) are painted
    for color, least in (((0, 0, 255), 80 * 60), ((0, 200, 0), 120 * 120), ((255, 0, 0), 60 * 60)):
        assert _share(shot, color) * shot.size[0] * shot.size[1] >= least * 0.9, color


@pytest.mark.slow
def test_a_filter_hides_what_it_rules_out_on_screen(tmp_path: Path) -> None:
    """?outcome=no_action leaves only the trajectory without any action, now at the top: its
    blue photo is on screen, the code figure (green) and search thumbnail (red) are gone."""
    page, _ = sample_page(tmp_path)
    full = screenshot(page, tmp_path / "a.png", tmp_path)
    assert _share(full, (0, 200, 0)) > 0 and _share(full, (255, 0, 0)) > 0
    preset = tmp_path / "preset.html"  # --screenshot takes no query string: preset the filter in a copy
    preset.write_text(page.read_text().replace('var q = new URLSearchParams(location.search);',
                                               'var q = new URLSearchParams("?outcome=no_action");'))
    shot = screenshot(preset, tmp_path / "f.png", tmp_path)
    assert _share(shot, (0, 0, 255)) * shot.size[0] * shot.size[1] >= 80 * 60 * 0.9
    assert _share(shot, (0, 200, 0)) == 0 and _share(shot, (255, 0, 0)) == 0
