"""Synthetic SFT trajectories for the tiny model, made by the real agent loop.

Each sample is a generated image (a coloured shape on a background) and a question about
it. The scripted policy plays a protocol-perfect agent: on some samples it searches first
(a ``<tool_call>`` answered by the offline local search index, so the record holds a real
observation and the ``<think>`` prefill after it), then answers in ``<answer>`` tags. The
records are exactly what ``ask`` / ``bench`` / curate write, so ``deepeyes sft`` trains on
them as it would on curated trajectories.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

    from deepeyes_cli.agent.records import Task
    from deepeyes_cli.policy.base import Conversation

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40),
          "purple": (140, 60, 180), "orange": (240, 140, 30), "black": (20, 20, 20), "white": (245, 245, 245)}
SHAPES = ("square", "circle", "triangle")
TOOLS = ["search"]


def make_image(color: str, shape: str, rng: random.Random) -> Image:
    from PIL import Image as PILImage
    from PIL import ImageDraw

    w, h = rng.choice([(224, 224), (280, 196), (196, 280), (336, 224)])
    bg = tuple(rng.randint(90, 160) for _ in range(3))
    im = PILImage.new("RGB", (w, h), bg)  # type: ignore[arg-type]
    d = ImageDraw.Draw(im)
    s = min(w, h) // 3
    x, y = rng.randint(0, w - s), rng.randint(0, h - s)
    fill = COLORS[color]
    if shape == "square":
        d.rectangle((x, y, x + s, y + s), fill=fill)
    elif shape == "circle":
        d.ellipse((x, y, x + s, y + s), fill=fill)
    else:
        d.polygon([(x, y + s), (x + s, y + s), (x + s // 2, y)], fill=fill)
    return im


def make_tasks(n: int, seed: int = 0, prefix: str = "syn") -> list[Task]:
    from deepeyes_cli.agent.records import Task
    from deepeyes_cli.agent.trajectory import Sample

    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        color, shape = rng.choice(sorted(COLORS)), rng.choice(SHAPES)
        question = f"What color is the {shape} in the image?"
        sample = Sample(id=f"{prefix}-{seed}-{i}", question=question, answer=color, data_source="perception",
                        metadata={"search": rng.random() < 0.5, "shape": shape})
        tasks.append(Task(sample, [make_image(color, shape, rng)]))
    return tasks


def scripted_turn(conv: Conversation, answers: dict[str, tuple[str, str, bool]]) -> str:
    """The perfect agent's next turn for this conversation."""
    first_user = next(m for m in conv.messages if m.role == "user")
    key = "".join(p for p in first_user.content if isinstance(p, str))
    color, shape, search = answers[key]
    done = sum(1 for m in conv.messages if m.role == "assistant")
    if search and done == 0:
        return (f"<think>I need to check what a {shape} looks like.</think>\n<tool_call>\n"
                f'{{"name": "search", "arguments": {{"query": "{shape}"}}}}\n</tool_call>')
    if search:
        return f" The {shape} is {color}.</think>\n<answer>{color}</answer>"
    return f"<think>The {shape} is {color}.</think>\n<answer>{color}</answer>"


async def _run(recipe: Any, tasks: list[Task]) -> list[Any]:
    from deepeyes_cli.agent.ask import build_runtime
    from deepeyes_cli.agent.loop import run_trajectories
    from deepeyes_cli.policy.scripted import ScriptedPolicy
    from deepeyes_cli.protocol.observation import initial_messages
    from deepeyes_cli.protocol.prompts import system_prompt, user_instruction
    from deepeyes_cli.tools.registry import open_toolbox

    async with open_toolbox(recipe, TOOLS) as toolbox:
        tools = list(toolbox.tools.values())
        instruction = user_instruction(recipe.agent, tools)
        answers: dict[str, tuple[str, str, bool]] = {}
        for t in tasks:
            msgs = initial_messages(system_prompt(recipe.agent, tools, toolbox.code_timeout_s), t.sample.question,
                                    t.images, instruction)
            key = "".join(p for p in msgs[-1].content if isinstance(p, str))
            answers[key] = (str(t.sample.answer), t.sample.metadata["shape"], bool(t.sample.metadata["search"]))
        policy = ScriptedPolicy(lambda conv: scripted_turn(conv, answers))
        runtime = build_runtime(recipe, policy, toolbox)
        return await run_trajectories(tasks, runtime)


def write_sft_trajectories(recipe: Any, out: str | Path, n: int, seed: int = 0) -> Path:
    """Run ``n`` synthetic tasks through the loop; write the records (images as files)."""
    from deepeyes_cli.agent.trajectory import append_jsonl

    recipe = recipe.model_copy(deep=True)
    recipe.agent.tools = TOOLS
    out = Path(out)
    if out.exists():
        out.unlink()
    trajectories = asyncio.run(_run(recipe, make_tasks(n, seed)))
    append_jsonl(out, trajectories)
    return out


def write_short_sharegpt(out_dir: str | Path, n: int, seed: int = 0) -> Path:
    """``n`` short single-turn samples in LLaMA-Factory sharegpt format (``data.json`` and
    its images): cheap training steps for tests of the training machinery itself."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in make_tasks(n, seed, prefix="short"):
        name = f"{task.sample.id}.png"
        task.images[0].resize((112, 112)).save(out / name)
        shape = task.sample.metadata["shape"]
        rows.append({"messages": [
            {"role": "user", "content": f"<image>What color is the {shape}?"},
            {"role": "assistant", "content": f"<think>The {shape} is {task.sample.answer}.</think>\n"
                                             f"<answer>{task.sample.answer}</answer>"}],
            "images": [name]})
    path = out / "data.json"
    path.write_text(json.dumps(rows, indent=1) + "\n")
    return path
