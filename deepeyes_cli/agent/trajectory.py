"""The trajectory record: what every stage writes and reads (ask, serve, bench, curate,
SFT data, RL rollouts, judge).

One JSON object per line, images as files next to the JSONL (``<name>.images/<sha256>.png``)
or inline base64 for transport. The schema only grows: fields are added with defaults,
never renamed or removed, and ``schema_version`` says which version wrote a record.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from deepeyes_cli.fileio import atomic_write

if TYPE_CHECKING:
    from PIL.Image import Image

SCHEMA_VERSION = 1

# "tool": a <tool_call> of a tool other than search/image_search (added in schema 1, additive).
Action = Literal["code", "search", "image_search", "answer", "invalid", "none", "tool"]
EndReason = Literal[
    "answered",  # the model gave an <answer>
    "no_action",  # a turn with neither a tool call nor an answer
    "max_turns",
    "context_limit",  # the next observation would not fit in the context
    "max_images",
    "length",  # a turn hit its token limit
    "empty",  # the model produced nothing
    "tool_fatal",  # a tool failure the protocol treats as final
    "error",  # backend failure; see metadata["error"]
]


class _Record(BaseModel):
    # Unknown fields are kept (a newer writer's fields survive a round trip through an older reader).
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class ImageRef(_Record):
    """An image by content hash: a file path (relative to the JSONL's directory) and/or inline base64."""

    sha256: str
    width: int
    height: int
    path: str | None = None
    b64: str | None = None

    @classmethod
    def from_pil(cls, image: Image, inline: bool = False) -> ImageRef:
        png = encode_png(image)
        return cls(sha256=hashlib.sha256(png).hexdigest(), width=image.width, height=image.height,
                   b64=base64.b64encode(png).decode() if inline else None)

    def load(self, base_dir: str | Path | None = None) -> Image:
        from PIL import Image as PILImage

        if self.b64:
            data = base64.b64decode(self.b64)
        elif self.path:
            p = Path(self.path)
            data = (Path(base_dir) / p if base_dir and not p.is_absolute() else p).read_bytes()
        else:
            raise ValueError(f"image {self.sha256[:12]} has neither a path nor inline data")
        with PILImage.open(io.BytesIO(data)) as im:
            return im.convert("RGB")


class TextPart(_Record):
    type: Literal["text"] = "text"
    text: str


class ImagePart(_Record):
    type: Literal["image"] = "image"
    image: ImageRef


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(_Record):
    """One chat message. An assistant message holds the whole assistant turn as the model's
    context saw it, prefilled text included (the ``<think>`` the protocol prefills after a tool
    result) and the stop string that ended it (``</code>``, ``</tool_call>``). Tool results are
    user messages, framed by the protocol."""

    role: Literal["system", "user", "assistant"]
    content: list[Part]

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def images(self) -> list[ImageRef]:
        return [p.image for p in self.content if isinstance(p, ImagePart)]


class Sample(_Record):
    """One question as it came from a dataset or the command line."""

    id: str
    question: str
    answer: str | None = None  # ground truth, when known
    data_source: str = "unknown"  # perception | reason | search | a benchmark name …
    images: list[ImageRef] = Field(default_factory=list)
    choices: list[str] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class TurnRecord(_Record):
    """One model call and the tool call it led to."""

    index: int
    action: Action
    tool: str | None = None
    tool_args: dict[str, Any] | None = None
    tool_ok: bool | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    generation_s: float | None = None
    tool_s: float | None = None
    finish_reason: str | None = None
    images_out: int = 0  # images the tool returned to the model
    parse_issues: list[str] = Field(default_factory=list)  # malformed output, each with a corrective message
    errors: list[str] = Field(default_factory=list)
    completion_ids: list[int] | None = None  # generated token ids, kept as generated (RL trains on them)
    stop_reason: str | None = None  # the stop string that ended the turn (None: EOS or a limit)
    prefill: str = ""  # text the turn was prefilled with (start of its message, not generated)
    logprobs: list[float] | None = None  # per generated token, where the backend gives them
    message_index: int | None = None  # this turn's assistant message in Trajectory.messages
    feedback: str | None = None  # the corrective message sent back for a malformed turn
    images_dropped: int = 0  # tool images beyond agent.max_images_per_turn, not shown


class Trajectory(_Record):
    schema_version: int = SCHEMA_VERSION
    id: str
    sample: Sample
    messages: list[Message] = Field(default_factory=list)  # protocol order, system first
    turns: list[TurnRecord] = Field(default_factory=list)
    final_answer: str | None = None
    end_reason: EndReason | None = None
    reward: dict[str, Any] | None = None  # the reward breakdown, once scored
    backend: str | None = None
    model: str | None = None
    recipe_digest: str | None = None
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    metadata: dict[str, Any] = Field(default_factory=dict)  # parse_issues counts, error, tools offered …
    wall_s: float | None = None  # from the first model call to the end

    @property
    def response_text(self) -> str:
        """All assistant text after the prompt, in order (what a format check reads)."""
        return "".join(m.text for m in self.messages if m.role == "assistant")

    def image_refs(self) -> Iterator[ImageRef]:
        yield from self.sample.images
        for m in self.messages:
            yield from m.images


def encode_png(image: Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def images_dir_for(jsonl: Path) -> Path:
    return jsonl.with_name(jsonl.name.removesuffix(".jsonl") + ".images")


def externalize_images(traj: Trajectory, jsonl: Path) -> Trajectory:
    """Move inline images into files next to ``jsonl`` (content-addressed) and point at them."""
    out_dir = images_dir_for(jsonl)
    for ref in traj.image_refs():
        if ref.b64 is None:
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{ref.sha256}.png"
        if not target.exists():  # a unique temporary file: threads may write the same image at once
            atomic_write(target, base64.b64decode(ref.b64))
        ref.path = str(target.relative_to(jsonl.parent))
        ref.b64 = None
    return traj


def append_jsonl(path: str | Path, trajectories: Iterable[Trajectory], inline_images: bool = False) -> int:
    """Append records (one line each, flushed) so an interrupted run keeps what it finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "a", encoding="utf-8") as f:
        for traj in trajectories:
            if not inline_images:
                traj = externalize_images(traj.model_copy(deep=True), path)
            f.write(traj.model_dump_json(exclude_none=False) + "\n")
            f.flush()
            n += 1
    return n


def read_jsonl(path: str | Path) -> Iterator[Trajectory]:
    """Read records; a torn last line (killed writer) is skipped, any other bad line is an error."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield Trajectory.model_validate(json.loads(line))
        except (ValueError, TypeError) as e:
            if i == len(lines) - 1 and not line.endswith("\n"):
                return  # partial final line from an interrupted writer
            raise ValueError(f"{path}:{i + 1}: not a trajectory record: {_one_line(e)}") from e


def _one_line(e: Exception) -> str:
    """A validation error as one line (pydantic's own message spans several)."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        problems = [f"{'.'.join(map(str, err['loc'])) or 'record'}: {err['msg']}" for err in e.errors()]
        return "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
    return str(e).splitlines()[0] if str(e) else type(e).__name__
