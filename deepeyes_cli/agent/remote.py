"""One question asked of a ``deepeyes serve`` server: the loop runs there (its model, its
sandbox, its search), the turns stream back here as loop events, and the trajectory record
comes back whole (images included), so ``ask --url`` saves the same record a local run does.

A plain OpenAI-compatible server (vLLM, a hosted API) is driven by the local loop instead;
:func:`served_agent` tells the two apart by what ``/v1/models`` says.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from deepeyes_cli.agent.records import LoopEvent, Observer, Task
from deepeyes_cli.agent.trajectory import Message, TextPart, Trajectory, TurnRecord, encode_png
from deepeyes_cli.errors import BackendError, InputError

if TYPE_CHECKING:
    from openai import OpenAI


def _client(url: str, api_key: str | None, timeout_s: float = 600.0) -> OpenAI:
    from openai import OpenAI

    return OpenAI(base_url=url, api_key=api_key or "EMPTY", timeout=timeout_s, max_retries=2)


def served_agent(url: str, api_key: str | None) -> str | None:
    """The model id when ``url`` is a deepeyes server (its models are owned by ``deepeyes``),
    else None (also when it cannot be reached: the local path then reports that)."""
    import openai

    try:
        with _client(url, api_key, timeout_s=10) as client:
            listed = client.models.list().data
    except openai.OpenAIError:
        return None
    for m in listed:
        if getattr(m, "owned_by", None) == "deepeyes":
            return str(m.id)
    return None


def _event(kind: Any, data: dict[str, Any], traj: Trajectory) -> LoopEvent:
    turn = data.get("turn") or {}
    record = TurnRecord(index=turn.get("index", 0), action=turn.get("action") or "none", tool=turn.get("tool"))
    role = "assistant" if kind == "assistant" else "user"
    return LoopEvent(kind, traj, record, Message(role=role, content=[TextPart(text=data.get("text", ""))]))


def ask_remote(url: str, api_key: str | None, task: Task, *, model: str, max_turns: int | None = None,
               observer: Observer | None = None, timeout_s: float = 600.0) -> Trajectory:
    """Run ``task`` on the server, streaming; returns the server's trajectory record."""
    import openai

    parts: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(encode_png(im)).decode()}}
        for im in task.images]
    parts.append({"type": "text", "text": task.sample.question})
    extra: dict[str, Any] = {"include_reasoning": True, "return_images": True}
    if max_turns is not None:
        extra["max_turns"] = max_turns
    shell = Trajectory(id="remote", sample=task.sample, backend="remote")
    final: dict[str, Any] | None = None
    try:
        with _client(url, api_key, timeout_s) as client:
            stream: Any = client.chat.completions.create(model=model, messages=[{"role": "user", "content": parts}],  # type: ignore[list-item,misc]
                                                         stream=True, extra_body=extra)
            for chunk in stream:
                data = (chunk.model_extra or {}).get("deepeyes")
                if not chunk.choices or not isinstance(data, dict):
                    continue
                if chunk.choices[0].finish_reason is not None:
                    final = data
                elif observer is not None and data.get("event") in ("assistant", "observation"):
                    observer(_event(data["event"], data, shell))
    except openai.BadRequestError as e:
        raise InputError(f"the server refused the question: {e.message}") from e
    except openai.AuthenticationError as e:
        raise BackendError(f"{url} wants an API key: {e.message}",
                           hint="set OPENAI_API_KEY or policy.api_key to the server's key") from e
    except openai.APIConnectionError as e:
        raise BackendError(f"cannot connect to {url}", hint="is `deepeyes serve` running there? (--url)") from e
    except openai.APIError as e:
        raise BackendError(f"{url} failed: {e.message}", hint="see the server's log") from e
    if final is None or "trajectory" not in final:
        raise BackendError(f"{url} ended the stream without a trajectory", hint="is it a deepeyes server?")
    traj = Trajectory.model_validate(final["trajectory"])
    traj.sample.answer = task.sample.answer  # the expected answer stays on this side
    traj.sample.metadata = {**traj.sample.metadata, **task.sample.metadata, "server": url}
    if observer is not None:
        observer(LoopEvent("end", traj))
    return traj
