"""Trajectories as one self-contained HTML page (images inline as data URLs), read turn by
turn, with filters by outcome, tool and error. What ``deepeyes view`` writes.

The page is rendered here with autoescaping (model output is untrusted text). Each image
is embedded once (rollouts of one prompt share their input image) and a few lines of
script put it in place; the rest of the script only shows and hides trajectories. Filters can also be preset from the URL:
``page.html?outcome=answered&tool=code&error=1``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepeyes_cli.agent.trajectory import ImagePart, ImageRef, Message, Trajectory, TurnRecord
from deepeyes_cli.protocol.parser import split_segments

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
    source: str | None = None  # the file it came from, when the page shows several
    reward: dict[str, Any] | None = None  # labelled fields of the reward breakdown


def _num(x: Any) -> str:
    return "—" if x is None else f"{x:g}" if isinstance(x, (int, float)) else str(x)


def reward_view(reward: dict[str, Any] | None) -> dict[str, Any] | None:
    """The reward breakdown (``rewards.RewardBreakdown``) as labelled fields: score, accuracy,
    format, what decided it, penalties, then the format violations and warnings."""
    if not reward:
        return None
    decided = reward.get("decided_by")
    if decided == "rule":
        how = f"rule: {reward['rule']}" if reward.get("rule") else "rule"
    elif decided == "judge":
        how = f"judge {reward.get('judge_model') or '?'}" + (" (cached verdict)" if reward.get("judge_cached") else "")
        how += f", prompt {reward['prompt_version']}" if reward.get("prompt_version") else ""
    elif decided == "unjudged":
        how = "unjudged" + (f": {reward['unjudged_reason']}" if reward.get("unjudged_reason") else "")
    else:
        how = _num(decided)
    fields = [("score", _num(reward.get("score"))), ("accuracy", _num(reward.get("accuracy"))),
              ("format", _num(reward.get("format"))), ("decided by", how)]
    if reward.get("penalties"):
        fields.append(("penalties", ", ".join(f"{k} {_num(v)}" for k, v in reward["penalties"].items())))
    if reward.get("prediction") is not None:
        fields.append(("graded answer", str(reward["prediction"])))

    def listed(key: str) -> list[str]:
        return [f"{v.get('rule', '?')}: {v.get('detail', '')}" if isinstance(v, dict) else str(v)
                for v in reward.get(key) or []]

    return {"score": _num(reward.get("score")), "fields": fields, "violations": listed("violations"),
            "warnings": listed("warnings")}


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


def _parts(msg: Message, base_dir: Path, images: dict[str, str]) -> list[dict[str, Any]]:
    """Display parts of a message; image data goes into ``images`` (by content hash) once."""
    out: list[dict[str, Any]] = []
    for p in msg.content:
        if isinstance(p, ImagePart):
            sha = p.image.sha256
            if sha not in images:
                url = image_url(p.image, base_dir)
                if url is not None:
                    images[sha] = url
            out.append({"kind": "image", "sha": sha if sha in images else None,
                        "size": f"{p.image.width}x{p.image.height}"})
        elif msg.role == "assistant":
            out += [{"kind": kind, "text": text} for kind, text in split_segments(p.text)]
        else:
            out.append({"kind": "text", "text": p.text})
    return out


def _view(traj: Trajectory, base_dir: Path, images: dict[str, str]) -> _View:
    turn_of: dict[int, TurnRecord] = {t.message_index: t for t in traj.turns if t.message_index is not None}
    tools = sorted({t.tool for t in traj.turns if t.tool})
    # errors: backend or tool failures and malformed turns (a turn without any action is not one)
    has_error = bool(traj.metadata.get("error")) or traj.end_reason in ("error", "tool_fatal") or any(
        t.errors or set(t.parse_issues) - {"no_action"} for t in traj.turns)
    view = _View(traj, tools, has_error, reward=reward_view(traj.reward))
    for i, msg in enumerate(traj.messages):
        role: str = msg.role
        label: str = msg.role
        raw: str | None = None
        if msg.role == "user" and i > 0 and any(m.role == "assistant" for m in traj.messages[:i]):
            before = turn_of.get(i - 1)  # the turn this message answers
            role = "observation"
            label = f"{before.tool} result" if before and before.tool else "feedback to the model"
        elif msg.role == "assistant":
            raw = msg.text  # tags and all, as the model wrote it (prefill included)
        view.blocks.append({"role": role, "label": label, "parts": _parts(msg, base_dir, images),
                            "turn": turn_of.get(i), "raw": raw})
    return view


def page_title(jsonl_paths: Sequence[str | Path], n_trajectories: int) -> str:
    """``N trajectories from a.jsonl, b.jsonl`` (paths as given, each once, the rest counted)."""
    names = list(dict.fromkeys(str(p) for p in jsonl_paths))
    shown = ", ".join(names[:2]) + (f" and {len(names) - 2} more files" if len(names) > 2 else "")
    return f"{n_trajectories} trajector{'y' if n_trajectories == 1 else 'ies'} from {shown}"


def render_html(sources: Iterable[tuple[Sequence[Trajectory], Path]], title: str = "deepeyes trajectories",
                names: Sequence[str] | None = None) -> str:
    """The page for trajectories read from JSONL files (each with the directory its image
    paths are relative to, and optionally its name to show). A trajectory found in several
    files (``ask --save`` writes the run's copy too) is shown once."""
    from jinja2 import Environment

    views: list[_View] = []
    seen: set[str] = set()
    images: dict[str, str] = {}  # content hash -> data URL
    for k, (trajs, base) in enumerate(sources):
        for t in trajs:
            if t.id in seen:
                continue
            seen.add(t.id)
            views.append(_view(t, base, images))
            views[-1].source = names[k] if names and len(names) > 1 else None
    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string((Path(__file__).parent / TEMPLATE).read_text(encoding="utf-8"))
    outcomes = sorted({v.traj.end_reason or "unfinished" for v in views})
    tools = sorted({t for v in views for t in v.tools})
    return template.render(title=title, views=views, outcomes=outcomes, tools=tools, images=images)


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
    n = len({t.id for trajs, _ in sources for t in trajs})
    html = render_html(sources, title=page_title(jsonl_paths, n), names=[str(p) for p in jsonl_paths])
    try:
        Path(out).write_text(html, encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot write {out}: {e.strerror}", hint="give -o a file path in a writable directory") from e
    return n
