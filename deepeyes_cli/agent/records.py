"""Between the loop's working state and the trajectory record: tasks in, messages and
events out."""

from __future__ import annotations

import functools
import hashlib
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

from deepeyes_cli.agent.trajectory import (
    ImagePart,
    ImageRef,
    Message,
    Sample,
    TextPart,
    Trajectory,
    TurnRecord,
)
from deepeyes_cli.protocol.render import is_image

if TYPE_CHECKING:
    from pathlib import Path

    from PIL.Image import Image

    from deepeyes_cli.policy.base import ChatMessage


@dataclass
class Task:
    """One question to run: the sample and its images (PIL, in order)."""

    sample: Sample
    images: list[Image] = field(default_factory=list)

    @classmethod
    def from_sample(cls, sample: Sample, base_dir: str | Path | None = None) -> Task:
        return cls(sample, [ref.load(base_dir) for ref in sample.images])


def sample_id(question: str, images: Sequence[Image]) -> str:
    """A stable id for an ad-hoc question (same question and image sizes, same id)."""
    h = hashlib.sha256(question.encode())
    for im in images:
        h.update(f"{im.width}x{im.height}".encode())
        h.update(im.resize((8, 8)).tobytes())
    return "ask-" + h.hexdigest()[:12]


class ImageRefs:
    """PIL images to :class:`ImageRef` (inline PNG). Each image object is encoded once per
    process: the rollouts of one prompt (GRPO samples 16) share their input images."""

    _shared: ClassVar[dict[int, tuple[weakref.ref[Image], ImageRef]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def ref(self, image: Image) -> ImageRef:
        key = id(image)
        with self._lock:
            hit = self._shared.get(key)
        if hit is not None and hit[0]() is image:
            return hit[1]
        ref = ImageRef.from_pil(image, inline=True)
        with self._lock:
            self._shared[key] = (weakref.ref(image, functools.partial(ImageRefs._forget, key)), ref)
        return ref

    @classmethod
    def remember(cls, image: Image, ref: ImageRef) -> None:
        """Record ``ref`` as ``image``'s encoding, when its PNG is already at hand (a served
        request's upload): the loop then does not encode it again."""
        key = id(image)
        with cls._lock:
            cls._shared[key] = (weakref.ref(image, functools.partial(ImageRefs._forget, key)), ref)

    @classmethod
    def _forget(cls, key: int, _ref: object = None) -> None:
        with cls._lock:
            cls._shared.pop(key, None)

    def message(self, chat: ChatMessage) -> Message:
        parts: list[TextPart | ImagePart] = [
            ImagePart(image=self.ref(p)) if is_image(p) else TextPart(text=p)  # type: ignore[arg-type]
            for p in chat.content if is_image(p) or p]
        return Message(role=chat.role, content=parts)


def chat_messages(traj: Trajectory, base_dir: str | Path | None = None) -> list[ChatMessage]:
    """A record's messages back as the policy saw them: images loaded, and each assistant
    turn's generated ids and prefill restored from its turn record."""
    from deepeyes_cli.policy.base import ChatMessage

    turns = {t.message_index: t for t in traj.turns if t.message_index is not None}
    out = []
    for i, m in enumerate(traj.messages):
        content: list[str | Image] = [p.image.load(base_dir) if isinstance(p, ImagePart) else p.text
                                      for p in m.content]
        turn = turns.get(i) if m.role == "assistant" else None
        out.append(ChatMessage(m.role, content, token_ids=turn.completion_ids if turn else None,
                               prefill=turn.prefill if turn else ""))
    return out


EventKind = Literal["start", "assistant", "observation", "end"]


@dataclass
class LoopEvent:
    """What the loop reports as a trajectory advances (``ask`` streams these)."""

    kind: EventKind
    trajectory: Trajectory
    turn: TurnRecord | None = None
    message: Message | None = None
    images: list[Image] = field(default_factory=list)  # the message's images, as PIL


Observer = Callable[[LoopEvent], None]


def tool_calls(traj: Trajectory) -> dict[str, int]:
    """How many times the trajectory called each tool."""
    out: dict[str, int] = {}
    for t in traj.turns:
        if t.tool:
            out[t.tool] = out.get(t.tool, 0) + 1
    return out


def count_issues(traj: Trajectory) -> dict[str, int]:
    counts: dict[str, int] = {}
    for turn in traj.turns:
        for issue in turn.parse_issues:
            counts[issue] = counts.get(issue, 0) + 1
    return counts
