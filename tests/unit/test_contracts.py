"""The seams between packages: trajectory records and the tool wrapper."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image

from deepeyes_cli.agent.trajectory import (
    ImagePart,
    ImageRef,
    Message,
    Sample,
    TextPart,
    Trajectory,
    TurnRecord,
    append_jsonl,
    read_jsonl,
)
from deepeyes_cli.errors import SearchError
from deepeyes_cli.tools.base import ToolContext, ToolResult, call_tool


def _traj(i: int) -> Trajectory:
    img = Image.new("RGB", (32 + i, 16), (i, 0, 0))
    ref = ImageRef.from_pil(img, inline=True)
    return Trajectory(
        id=f"t{i}", sample=Sample(id=f"s{i}", question="q?", answer="B", images=[ref]),
        messages=[Message(role="user", content=[ImagePart(image=ref), TextPart(text="q?")]),
                  Message(role="assistant", content=[TextPart(text="<think>x</think><answer>B</answer>")])],
        turns=[TurnRecord(index=0, action="answer", completion_ids=[1, 2, 3])], final_answer="B",
        end_reason="answered")


def test_jsonl_round_trip_with_image_files(tmp_path: Path) -> None:
    path = tmp_path / "out" / "traj.jsonl"
    assert append_jsonl(path, [_traj(1), _traj(2)]) == 2
    back = list(read_jsonl(path))
    assert [t.id for t in back] == ["t1", "t2"]
    ref = back[0].sample.images[0]
    assert ref.b64 is None and ref.path and (path.parent / ref.path).is_file()
    assert ref.load(path.parent).size == (33, 16)
    assert back[0].response_text == "<think>x</think><answer>B</answer>"
    assert back[0].turns[0].completion_ids == [1, 2, 3]


def test_torn_last_line_is_skipped_but_corruption_is_not(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    append_jsonl(path, [_traj(1)], inline_images=True)
    with open(path, "a") as f:
        f.write('{"id": "half')
    assert [t.id for t in read_jsonl(path)] == ["t1"]
    path.write_text("not json\n" + path.read_text())
    with pytest.raises(ValueError, match="t.jsonl:1"):
        list(read_jsonl(path))


def test_unknown_fields_survive_a_round_trip() -> None:
    data = _traj(1).model_dump()
    data["future_field"] = {"x": 1}
    again = Trajectory.model_validate(data)
    assert again.model_dump()["future_field"] == {"x": 1}


class _Boom:
    name = "boom"
    description = "fails"
    parameters: dict = {}

    def __init__(self, exc: Exception | None = None, delay: float = 0.0) -> None:
        self.exc, self.delay = exc, delay

    async def __call__(self, args: dict, ctx: ToolContext) -> ToolResult:
        await asyncio.sleep(self.delay)
        if self.exc:
            raise self.exc
        return ToolResult(text="fine")


def test_call_tool_never_raises() -> None:
    ctx = ToolContext(trajectory_id="t")
    r = asyncio.run(call_tool(_Boom(ZeroDivisionError("x")), {}, ctx))
    assert not r.ok and r.error and "ZeroDivisionError" in r.error
    r = asyncio.run(call_tool(_Boom(SearchError("budget spent")), {}, ctx))
    assert r.error == "boom unavailable: budget spent"
    r = asyncio.run(call_tool(_Boom(delay=1.0), {}, ctx, timeout=0.05))
    assert r.error and "timed out" in r.error
    r = asyncio.run(call_tool(_Boom(), {}, ctx))
    assert r.ok and r.text == "fine" and r.metadata["tool_s"] >= 0


def test_context_without_sandbox_says_how_to_configure() -> None:
    from deepeyes_cli.errors import DeepeyesError

    with pytest.raises(DeepeyesError, match="no code sandbox"):
        asyncio.run(ToolContext(trajectory_id="t").session())
