"""Loop events as text for people: what ``reasoning_content`` carries, turn by turn.

A model turn shows its thinking, its code (fenced) and its tool call; a tool result shows
stdout/stderr or the search hits, and how many images it returned. The answer itself is not
here: it is the message ``content``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deepeyes_cli.protocol.parser import extract_code, split_segments
from deepeyes_cli.protocol.tags import TOOL_RESPONSE_CLOSE, TOOL_RESPONSE_OPEN, parse_code_result

if TYPE_CHECKING:
    from deepeyes_cli.agent.records import LoopEvent
    from deepeyes_cli.agent.trajectory import Trajectory


def assistant_text(text: str, index: int) -> str:
    out = [f"[turn {index + 1}]"]
    for kind, piece in split_segments(text):
        if kind == "answer":
            continue
        if kind == "code":
            out.append(f"```python\n{(extract_code(piece) or piece).strip()}\n```")
        elif kind == "tool_call":
            out.append(f"tool call: {piece.strip()}")
        else:
            out.append(piece.strip())
    return "\n".join(out) + "\n"


def observation_text(text: str, tool: str | None, n_images: int) -> str:
    parts = parse_code_result(text) if tool == "code" else None
    if parts is not None:
        stdout, stderr = (p.strip("\n") for p in parts)
        body = "\n".join([*([stdout] if stdout else []), *([f"stderr:\n{stderr}"] if stderr else [])]) or "(no output)"
    else:
        body = text.removeprefix(TOOL_RESPONSE_OPEN + "\n").removesuffix("\n" + TOOL_RESPONSE_CLOSE).strip()
    title = f"[{tool} result]" if tool else "[feedback]"
    images = f"\n[{n_images} image{'s' if n_images != 1 else ''}]" if n_images else ""
    return f"{title}\n{body}{images}\n"


def event_text(event: LoopEvent) -> str | None:
    if event.message is None or event.turn is None:
        return None
    if event.kind == "assistant":
        return assistant_text(event.message.text, event.turn.index)
    if event.kind == "observation":
        return observation_text(event.message.text, event.turn.tool, len(event.images))
    return None


def event_record(event: LoopEvent) -> dict[str, Any]:
    """The event as data, riding with its text chunk, for clients that render turns themselves
    (``deepeyes ask --url``)."""
    turn = event.turn
    return {"event": event.kind, "text": event.message.text if event.message is not None else "",
            "images": len(event.images),
            "turn": {"index": turn.index, "action": turn.action, "tool": turn.tool} if turn is not None else None}


def reasoning(traj: Trajectory) -> str:
    """The whole trajectory's turns as text (the non-streaming ``reasoning_content``)."""
    out = []
    turns = {t.message_index: t for t in traj.turns if t.message_index is not None}
    last_turn = None
    for i, m in enumerate(traj.messages):
        if m.role == "assistant" and i in turns:
            last_turn = turns[i]
            out.append(assistant_text(m.text, last_turn.index))
        elif m.role == "user" and last_turn is not None:
            out.append(observation_text(m.text, last_turn.tool, len(m.images)))
    return "\n".join(out)


def finish_reason(traj: Trajectory) -> str:
    return "length" if traj.end_reason in ("length", "context_limit", "max_turns", "max_images") else "stop"


def record(traj: Trajectory, images: bool) -> dict[str, Any]:
    """The trajectory as JSON for the ``deepeyes`` field; images keep their hash and size but
    drop their base64 unless ``images``."""
    data = traj.model_dump(mode="json")
    if not images:
        for ref in data["sample"]["images"]:
            ref["b64"] = None
        for m in data["messages"]:
            for p in m["content"]:
                if p.get("type") == "image":
                    p["image"]["b64"] = None
    return data
