"""One question, end to end: what ``deepeyes ask`` runs (and what ``serve`` and ``bench``
can reuse to build a runtime from a recipe)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.agent.loop import AgentRuntime, run_trajectory
from deepeyes_cli.agent.records import LoopEvent, Observer, Task, sample_id
from deepeyes_cli.agent.trajectory import Sample, Trajectory, externalize_images
from deepeyes_cli.errors import BackendError, DeepeyesError, InputError, ToolError
from deepeyes_cli.protocol.prompts import system_prompt, user_instruction

if TYPE_CHECKING:
    from PIL.Image import Image

    from deepeyes_cli.policy.base import Policy
    from deepeyes_cli.tools.registry import Toolbox


def build_runtime(recipe: Any, policy: Policy, toolbox: Toolbox, recipe_digest: str | None = None) -> AgentRuntime:
    tools = list(toolbox.tools.values())
    return AgentRuntime(
        policy=policy, tools=dict(toolbox.tools), cfg=recipe.agent,
        system_prompt=system_prompt(recipe.agent, tools, toolbox.code_timeout_s),
        instruction=user_instruction(recipe.agent, tools),
        open_session=toolbox.open_session if toolbox.has_sandbox else None,
        min_pixels=recipe.model.min_pixels, max_pixels=recipe.model.max_pixels, recipe_digest=recipe_digest)


def load_question(image_paths: Sequence[str | Path], question: str, max_pixels: int, max_images: int = 50,
                  answer: str | None = None) -> Task:
    """Check the question and load the images (clear errors, huge images downscaled).
    ``answer`` is the expected answer, recorded so `deepeyes judge` can score the run."""
    from deepeyes_cli.protocol.images import load_image

    if not question or not question.strip():
        raise InputError("the question is empty", hint='put the question last, e.g. deepeyes ask photo.jpg "What is it?"')
    if len(image_paths) > max_images:
        raise InputError(f"{len(image_paths)} images given; a trajectory holds at most {max_images}",
                         hint="give fewer images, or raise agent.max_images")
    images: list[Image] = [load_image(p, max_pixels) for p in image_paths]
    sample = Sample(id=sample_id(question.strip(), images), question=question.strip(), data_source="ask",
                    answer=answer.strip() if answer and answer.strip() else None,
                    metadata={"images": [str(p) for p in image_paths]})
    return Task(sample, images)


async def ask_async(recipe: Any, task: Task, policy: Policy, *, observer: Observer | None = None,
                    recipe_digest: str | None = None) -> Trajectory:
    from deepeyes_cli.tools.registry import open_toolbox

    async with AsyncExitStack() as stack:
        stack.push_async_callback(policy.aclose)
        toolbox = await stack.enter_async_context(open_toolbox(recipe))
        runtime = build_runtime(recipe, policy, toolbox, recipe_digest)
        traj = await run_trajectory(task, runtime, observer)
        tools = toolbox.summary()
        if tools:
            traj.metadata["tool_stats"] = tools
        return traj


def ask(recipe: Any, task: Task, policy: Policy, *, observer: Observer | None = None,
        recipe_digest: str | None = None) -> Trajectory:
    """Open the recipe's tools, run one trajectory with ``policy``, close everything
    (the policy included), also on Ctrl-C."""
    return asyncio.run(ask_async(recipe, task, policy, observer=observer, recipe_digest=recipe_digest))


def save_event_images(event: LoopEvent, out_dir: Path) -> list[Path]:
    """Write the images an event shows to ``out_dir`` (turn-numbered PNGs)."""
    paths = []
    turn = event.turn.index if event.turn is not None else 0
    for k, image in enumerate(event.images, 1):
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{event.trajectory.id[:8]}-turn{turn + 1}-{k}.png"
        image.save(path, format="PNG")
        paths.append(path)
    return paths


def record_for_stdout(traj: Trajectory, jsonl: Path) -> dict[str, Any]:
    """The record as JSON, images as files next to ``jsonl`` given by absolute path."""
    out = externalize_images(traj.model_copy(deep=True), jsonl)
    for ref in out.image_refs():
        if ref.path and not Path(ref.path).is_absolute():
            ref.path = str((jsonl.parent / ref.path).resolve())
    return out.model_dump(mode="json")


def run_failure(traj: Trajectory, recipe: Any, saved: Path) -> DeepeyesError | None:
    """The error to report when a trajectory ended because the backend or a tool failed
    (not the model's doing: a refused connection, a time-out, a broken sandbox)."""
    error = traj.metadata.get("error") or "unknown error"
    kept = f"the trajectory is saved in {saved}"
    if traj.end_reason == "error":
        if "timed out" in error:
            hint = "raise agent.generation_timeout_s (and policy.request_timeout_s for a server)"
        elif "cannot connect" in error:
            hint = f"is the server at {recipe.policy.url} running? (--url)"
        elif "HTTP 400" in error or "HTTP 422" in error:
            hint = ("the server rejected the request; a vLLM server needs room for the images of a whole "
                    f"trajectory: --limit-mm-per-prompt '{{\"image\": {recipe.agent.max_images}}}'")
        else:
            hint = "see the log in the run directory"
        return BackendError(f"the {recipe.policy.backend} backend failed: {error}", hint=f"{hint}; {kept}")
    if traj.end_reason == "tool_fatal":
        return ToolError(f"a tool failed: {error}",
                         hint=f"check the sandbox (deepeyes sandbox check) or run without code: "
                              f"agent.tools=[search,image_search]; {kept}")
    return None
