"""The tool registry (names, missing packages) and the HTML viewer's page."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from agent_test_helpers import EchoSearch
from PIL import Image

from deepeyes_cli.agent.loop import AgentRuntime, run_trajectory
from deepeyes_cli.agent.records import Task
from deepeyes_cli.agent.trajectory import Sample, Trajectory, append_jsonl
from deepeyes_cli.agent.viewer import render_html, write_html
from deepeyes_cli.errors import InputError, ToolError
from deepeyes_cli.policy.scripted import ScriptedPolicy
from deepeyes_cli.recipe.loader import load_recipe
from deepeyes_cli.tools.registry import open_toolbox


def _open(names: list[str]) -> dict:
    async def go() -> dict:
        async with open_toolbox(load_recipe("tiny").recipe, names) as box:
            return dict(box.tools)

    return asyncio.run(go())


def test_unknown_tool_names_suggest_the_right_one() -> None:
    with pytest.raises(ToolError, match="unknown tool 'serch'") as e:
        _open(["serch"])
    assert e.value.hint and "did you mean 'search'" in e.value.hint
    assert _open([]) == {}


def test_missing_sandbox_or_search_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "deepeyes_cli.sandbox.factory", None)  # as if it were not installed
    with pytest.raises(ToolError, match="code sandbox is not available") as e:
        _open(["code", "search"])
    assert e.value.hint == "run without it: agent.tools=[search]"
    monkeypatch.setitem(sys.modules, "deepeyes_cli.tools.search", None)
    with pytest.raises(ToolError, match="web search is not available") as e:
        _open(["search", "image_search"])
    assert e.value.hint == "run without it: agent.tools=[]"


def _trajectories() -> list[Trajectory]:
    from deepeyes_cli.agent.config import AgentConfig

    def run(turns: list[str], **search: object) -> Trajectory:
        rt = AgentRuntime(ScriptedPolicy(turns), {"search": EchoSearch(**search)}, AgentConfig(), "SYS", "INSTR")  # type: ignore[arg-type]
        task = Task(Sample(id="s", question="Is <b>this</b> red?", answer="yes"), [Image.new("RGB", (40, 40), "red")])
        return asyncio.run(run_trajectory(task, rt))

    call = '<think>t</think><tool_call>{"name": "search", "arguments": {"query": "q"}}</tool_call>'
    return [run([call, "x</think><answer><script>alert(1)</script></answer>"], images=1),
            run(["no idea"]),
            run([call, "<answer>n</answer>"], fail="quota")]


def test_page_shows_turns_images_and_escapes_model_text(tmp_path: Path) -> None:
    trajs = _trajectories()
    html = render_html([(trajs, tmp_path)])
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Is &lt;b&gt;this&lt;/b&gt; red?" in html
    assert html.count("<img data-sha=") == 3 + 1  # one input image each, one search result image
    assert html.count("data:image/png;base64,") == 1 + 1  # the three share their input image: embedded once
    assert html.count('<div class="role">search result</div>') == 2  # what a tool result is labelled
    assert "raw text" in html and "&lt;tool_call&gt;" in html  # the assistant's text as written, tags and all
    assert 'data-outcome="answered"' in html and 'data-outcome="no_action"' in html
    assert 'data-tools=" search "' in html and 'data-error="1"' in html
    assert '<option value="no_action">' in html and '<option value="search">' in html
    assert 'class="tool_call"' in html and 'class="think"' in html and 'class="answer"' in html


def test_write_html_reads_image_files_and_reports_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    append_jsonl(path, _trajectories())
    out = tmp_path / "page.html"
    assert write_html([path], out) == 3
    html = out.read_text()
    assert "data:image/png;base64," in html and "[missing image" not in html
    for f in (tmp_path / "t.images").iterdir():
        f.unlink()
    write_html([path], out)
    assert "[missing image 40x40]" in out.read_text()
    copy = tmp_path / "copy.jsonl"  # ask --save keeps a second copy of each record
    copy.write_text(path.read_text())
    append_jsonl(copy, _trajectories()[:1])
    assert write_html([path, copy], out) == 4
    html = out.read_text()
    assert html.count('<details class="traj"') == 4 and f"4 trajectories from {path}, {copy}" in html
    assert html.count(f"· {copy}") == 1  # each record once, under the file it was first found in
    with pytest.raises(InputError, match="not found"):
        write_html([tmp_path / "nope.jsonl"], out)
    (tmp_path / "bad.jsonl").write_text("{}\n")
    with pytest.raises(InputError, match="not a trajectory record: id: Field required; sample: Field required$"):
        write_html([tmp_path / "bad.jsonl"], out)  # one line, not pydantic's page
    (tmp_path / "photo.jsonl").write_bytes(b"\xff\xd8\xff\xe0 not text")
    with pytest.raises(InputError, match="photo.jsonl: not UTF-8 text"):
        write_html([tmp_path / "photo.jsonl"], out)
    with pytest.raises(InputError, match="cannot write") as e:
        write_html([path], tmp_path)  # a directory
    assert e.value.hint
