"""The loop and `deepeyes ask` with the real tools: the code sandbox (bubblewrap) and web
search (the tiny recipe's offline BM25 index over the built-in demo corpus)."""

from __future__ import annotations

import asyncio
import json
import typing
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from deepeyes_cli.agent.ask import build_runtime
from deepeyes_cli.agent.loop import run_trajectory
from deepeyes_cli.agent.records import Task
from deepeyes_cli.agent.trajectory import EndReason, Sample, Trajectory
from deepeyes_cli.policy.base import Conversation
from deepeyes_cli.policy.scripted import ScriptedPolicy
from deepeyes_cli.recipe.loader import load_recipe
from deepeyes_cli.tools.registry import open_toolbox

PHOTO = Path(__file__).resolve().parents[2] / "data" / "street_sign.jpg"


needs_sandbox = pytest.mark.needs_bwrap  # the tiny recipe's sandbox is bubblewrap: fails without it in CI


def _code(src: str) -> str:
    return f"<think>run it</think>\n<code>\n```python\n{src}\n```\n</code>"


def _run(turns: Any, tools: list[str], *overrides: str) -> Trajectory:
    recipe = load_recipe("tiny", [f"agent.tools=[{','.join(tools)}]", *overrides]).recipe

    async def go() -> Trajectory:
        async with open_toolbox(recipe) as box:
            rt = build_runtime(recipe, ScriptedPolicy(turns), box)
            with Image.open(PHOTO) as im:
                task = Task(Sample(id="photo", question="What does the sign say?"), [im.convert("RGB")])
            return await run_trajectory(task, rt)

    return asyncio.run(go())


@needs_sandbox
def test_state_carries_across_code_turns_and_figures_reach_the_next_turn() -> None:
    seen: list[Conversation] = []

    def policy(conv: Conversation) -> str:
        seen.append(conv)
        turn = sum(1 for m in conv.messages if m.role == "assistant")
        return [_code("w, h = image_1.size\nprint(w, h)"),
                _code("import matplotlib.pyplot as plt\nprint(w * 2)\nplt.imshow(image_1.crop((400, 180, 480, 280)))\n"
                      "plt.show()"),
                "It says STOP.</think>\n<answer>STOP</answer>"][turn]

    traj = _run(policy, ["code"])
    assert traj.end_reason == "answered" and traj.final_answer == "STOP", traj.metadata
    assert "stdout:\n```\n640 480\n" in traj.messages[3].text
    assert "stdout:\n```\n1280\n" in traj.messages[5].text  # `w` survived between cells
    assert len(traj.messages[5].images) == 1 and traj.turns[1].images_out == 1
    last_user = seen[-1].messages[-1]
    assert last_user.role == "user" and any(isinstance(p, Image.Image) for p in last_user.content)
    assert traj.messages[5].text.rstrip().endswith("Images:")


@needs_sandbox
def test_errors_in_code_are_shown_and_the_trajectory_goes_on() -> None:
    traj = _run([_code("print(undefined_name)"), "ok</think><answer>x</answer>"], ["code"])
    assert traj.end_reason == "answered" and "NameError" in traj.messages[3].text


@needs_sandbox
@pytest.mark.parametrize(("overrides", "reason"), [
    (("agent.max_images=3",), "max_images"),
    (("agent.max_context_tokens=1500",), "context_limit"),
    (("agent.max_turns=2",), "max_turns"),
])
def test_limits_end_trajectories_with_the_right_reason(overrides: tuple[str, ...], reason: str) -> None:
    many_figures = _code("import matplotlib.pyplot as plt\nfor i in range(4):\n    plt.figure(); plt.plot([0, i])\n"
                         "    plt.show()\nprint('x' * 3000)")
    traj = _run([many_figures] * 3, ["code"], *overrides)
    assert traj.end_reason == reason


@needs_sandbox
def test_per_turn_image_cap() -> None:
    figures = _code("import matplotlib.pyplot as plt\nfor i in range(5):\n    plt.figure(); plt.plot([0, i])\n"
                    "    plt.show()")
    traj = _run([figures, "<answer>5</answer>"], ["code"], "agent.max_images_per_turn=2")
    assert traj.end_reason == "answered" and len(traj.messages[3].images) == 2
    assert traj.turns[0].images_dropped == 3


def test_search_result_comes_back_as_a_tool_response() -> None:
    call = '<think>look it up</think>\n<tool_call>\n{"name": "search", "arguments": {"query": "stop sign"}}\n</tool_call>'
    traj = _run([call, "ok</think><answer>STOP</answer>"], ["search"])
    assert traj.turns[0].tool == "search" and traj.messages[3].role == "user"
    text = traj.messages[3].text
    assert text.startswith("<tool_response>\n") and text.rstrip().endswith("</tool_response>"), text[:300]
    assert "[Stop sign](https://en.wikipedia.org/wiki/Stop_sign)" in text  # the demo corpus's best match
    assert traj.turns[0].tool_ok is True and traj.end_reason == "answered" and traj.final_answer == "STOP"


@needs_sandbox
def test_ask_tiny_end_to_end_with_real_tools(cli, tmp_path: Path) -> None:
    out = cli("ask", str(PHOTO), "What does the sign say?", "--recipe", "tiny", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["end_reason"] in typing.get_args(EndReason), record["end_reason"]
    assert {"code", "search"} <= set(record["metadata"]["tools"]) and record["backend"] == "transformers"
    # the random tiny model writes something; every turn it took is recorded with its tokens
    assert record["turns"] and all(t["completion_tokens"] for t in record["turns"])
    assert record["messages"][0]["role"] == "system" and record["messages"][-1]["role"] == "assistant"
    if record["end_reason"] == "answered":
        assert record["final_answer"] is not None
    assert out.stdout.count("\n") == 1  # nothing but the record on stdout


@needs_sandbox
def test_ask_scripted_code_turn_through_the_cli(cli, tmp_path: Path) -> None:
    script = tmp_path / "turns.json"
    script.write_text(json.dumps([
        _code("import matplotlib.pyplot as plt\nprint(image_1.size)\nplt.imshow(image_1); plt.show()\n1 / 0"),
        "a</think><code>no fence</code>", "ok</think><answer>640x480</answer>"]))
    out = cli("ask", str(PHOTO), "How big is it?", "--recipe", "tiny", "--backend", "scripted",
              f"policy.script={script}", "agent.tools=[code]", "--save", str(tmp_path / "t.jsonl"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "640x480" and "(640, 480)" in out.stderr
    # the stream reads as turns: labelled thinking and code, the cell's output without the template's fences
    assert "think run it" in out.stderr and "─ code ─" in out.stderr and "─ code result ─" in out.stderr
    assert "Code execution result" not in out.stderr and "stderr " in out.stderr and "ZeroDivisionError" in out.stderr
    assert "─ feedback" in out.stderr and "No ```python fenced block" in out.stderr
    shown = [line.split("image ", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("image ")]
    assert len(shown) == 1 and (tmp_path / shown[0]).is_file()


def test_ask_records_search_counters_in_the_trajectory(cli, tmp_path: Path) -> None:
    script = tmp_path / "turns.json"
    call = '<think>look it up</think>\n<tool_call>\n{"name": "search", "arguments": {"query": "stop sign"}}\n</tool_call>'
    script.write_text(json.dumps([call, "ok</think><answer>STOP</answer>"]))
    out = cli("ask", str(PHOTO), "What sign is it?", "--recipe", "tiny", "--backend", "scripted",
              f"policy.script={script}", "agent.tools=[search]", "--answer", " STOP ", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["final_answer"] == "STOP" and record["turns"][0]["tool"] == "search"
    assert record["sample"]["answer"] == "STOP"  # --answer is kept for `deepeyes judge`
    stats = record["metadata"]["tool_stats"]["search"]
    assert stats["calls"] == 1 and stats["misses"] + stats["hits"] == 1
    assert stats["run_id"].startswith("tiny-ask-")  # the run dir names the per-run budget


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for c in map(int, children):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def _wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@needs_sandbox
def test_ctrl_c_mid_cell_ends_ask_and_leaves_no_kernel_behind(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "turns.json"
    script.write_text(json.dumps([_code("import time\nprint('started', flush=True)\ntime.sleep(120)"),
                                  "<answer>never</answer>"]))
    err = tmp_path / "stderr.txt"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    with open(err, "w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deepeyes_cli", "ask", str(PHOTO), "q?", "--recipe", "tiny", "--backend",
             "scripted", f"policy.script={script}", "agent.tools=[code]"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err_file, start_new_session=True)
        try:
            kernels: set[int] = set()
            deadline = time.monotonic() + 120
            while not kernels and time.monotonic() < deadline and proc.poll() is None:  # until the cell runs
                time.sleep(0.1)
                if "turn 1" in err.read_text():
                    kernels = {p for p in _descendants(proc.pid) if b"ipykernel" in _cmdline(p)}
            assert kernels, err.read_text()
            while not any("nanosleep" in _wchan(p) for p in kernels):  # the cell is in its time.sleep
                assert time.monotonic() < deadline and proc.poll() is None, err.read_text()
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal delivers
            assert proc.wait(timeout=60) == 130
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in kernels):
        time.sleep(0.1)
    alive = [p for p in kernels if Path(f"/proc/{p}").exists()
             and Path(f"/proc/{p}/stat").read_text().split()[2] != "Z"]
    assert not alive, f"kernels left running: {alive}"
    assert "end: interrupted" in err.read_text()
