"""Real rollouts for the RL tests: the agent loop with the scripted token policy and the
real code tool over an in-process (unisolated, test-only) session that shows an image."""

from __future__ import annotations

import asyncio
import contextlib
import io
from typing import Any

from PIL import Image

from deepeyes_cli.agent.loop import AgentRuntime, run_trajectories
from deepeyes_cli.agent.records import Task
from deepeyes_cli.agent.trajectory import Sample
from deepeyes_cli.sandbox.base import CellResult
from deepeyes_cli.testing.rl_task import QUESTION, make_image, scripted_turn
from deepeyes_cli.tools.code import CodeTool
from deepeyes_cli.train.rl.rollout import ScriptedTokens


class Session:
    def __init__(self, images: list[Image.Image]) -> None:
        self.ns: dict[str, Any] = {f"image_{i}": im for i, im in enumerate(images, 1)}

    async def run(self, code: str, timeout: float | None = None) -> CellResult:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, self.ns)
        buf = io.BytesIO()
        self.ns["image_1"].crop((0, 0, 56, 84)).save(buf, format="PNG")  # a tool image for the trajectory
        return CellResult("ok", stdout=out.getvalue(), images=[buf.getvalue()])

    async def close(self) -> None:
        return None


def tasks(n: int, seed: int = 0) -> list[Task]:
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        count = 1 + i % 4
        out.append(Task(Sample(id=f"t{i}", question=QUESTION, answer=str(count + 1),
                               data_source="synthetic"), [make_image(count, rng)]))
    return out


def runtime(processor: Any, script: Any = None, agent: Any = None) -> AgentRuntime:
    from deepeyes_cli.agent.config import AgentConfig

    async def open_session(images: Any, sid: str) -> Session:
        return Session(list(images))

    cfg = agent or AgentConfig(max_turns=3, max_tokens_per_turn=256, max_context_tokens=4096)
    return AgentRuntime(ScriptedTokens(script or scripted_turn(1.0, 1.0), processor),
                        {"code": CodeTool()}, cfg, system_prompt=None, instruction="Answer in <answer></answer>.",
                        open_session=open_session, min_pixels=3136, max_pixels=200704)


def rollouts(processor: Any, n: int = 2, script: Any = None) -> list[Any]:
    return asyncio.run(run_trajectories(tasks(n), runtime(processor, script)))
