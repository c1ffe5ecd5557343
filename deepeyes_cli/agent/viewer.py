"""Trajectories as one self-contained HTML page (images inline as data URLs), read turn by
turn, with filters by outcome, tool and error. What ``deepeyes view`` writes.

The page is rendered here with autoescaping (model output is untrusted text); a few lines
of script only show and hide trajectories. Filters can also be preset from the URL:
``page.html?outcome=answered&tool=code&error=1``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepeyes_cli.agent.protocol.parser import split_segments
from deepeyes_cli.agent.trajectory import ImagePart, ImageRef, Message, Trajectory, TurnRecord

TEMPLATE = "viewer.html"


@dataclass
class _Source:
    trajectories: list[Trajectory]
    base_dir: Path


@dataclass
class _View:
    """What the template needs of one trajectory."""

    traj: Trajectory
    tools: list[str]
    has_error: bool
    blocks: list[dict[str, Any]] = field(default_factory=list)


def image_url(ref: ImageRef, base_dir: Path) -> str | None:
    if ref.b64:
        return f"data:image/png;base64,{ref.b64}"
    if ref.path:
        p = Path(ref.path)
        p = p if p.is_absolute() else base_dir / p
        try:
            data = p.read_bytes()
        except OSError:
            return None
        return f"data:image/png;base64,{base64.b64encode(data).decode()}"
    return None


def _parts(msg: Message, base_dir: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in msg.content:
        if isinstance(p, ImagePart):
            out.append({"kind": "image", "src": image_url(p.image, base_dir),
                        "size": f"{p.image.width}x{p.image.height}"})
        elif msg.role == "assistant":
            out += [{"kind": kind, "text": text} for kind, text in split_segments(p.text)]
        else:
            out.append({"kind": "text", "text": p.text})
    return out


def _view(traj: Trajectory, base_dir: Path) -> _View:
    turn_of: dict[int, TurnRecord] = {t.message_index: t for t in traj.turns if t.message_index is not None}
    tools = sorted({t.tool for t in traj.turns if t.tool})
    # errors: backend or tool failures and malformed turns (a turn without any action is not one)
    has_error = bool(traj.metadata.get("error")) or traj.end_reason in ("error", "tool_fatal") or any(
        t.errors or set(t.parse_issues) - {"no_action"} for t in traj.turns)
    view = _View(traj, tools, has_error)
    for i, msg in enumerate(traj.messages):
        if msg.role == "user" and i > 0 and any(m.role == "assistant" for m in traj.messages[:i]):
            role = "observation"
        else:
            role = msg.role
        view.blocks.append({"role": role, "parts": _parts(msg, base_dir), "turn": turn_of.get(i)})
    return view


def render_html(sources: Iterable[tuple[Sequence[Trajectory], Path]], title: str = "deepeyes trajectories") -> str:
    """The page for trajectories read from JSONL files (each with the directory its image
    paths are relative to)."""
    from jinja2 import Environment

    views = [_view(t, base) for trajs, base in sources for t in trajs]
    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string((Path(__file__).parent / TEMPLATE).read_text(encoding="utf-8"))
    outcomes = sorted({v.traj.end_reason or "unfinished" for v in views})
    tools = sorted({t for v in views for t in v.tools})
    return template.render(title=title, views=views, outcomes=outcomes, tools=tools)


def write_html(jsonl_paths: Sequence[str | Path], out: str | Path) -> int:
    """Read the JSONL files and write the page; returns the number of trajectories."""
    from deepeyes_cli.agent.trajectory import read_jsonl
    from deepeyes_cli.errors import InputError

    sources = []
    for p in map(Path, jsonl_paths):
        if not p.is_file():
            raise InputError(f"trajectory file not found: {p}", hint="give JSONL files written by ask, bench …")
        try:
            sources.append((list(read_jsonl(p)), p.parent))
        except ValueError as e:
            raise InputError(str(e), hint="is this a trajectory JSONL file?") from e
    title = ", ".join(Path(p).name for p in jsonl_paths)
    html = render_html(sources, title=title)
    Path(out).write_text(html, encoding="utf-8")
    return sum(len(t) for t, _ in sources)
