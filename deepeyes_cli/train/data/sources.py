"""SFT inputs as conversations: our trajectory JSONL (the agent loop's records, curate's
exports) and LLaMA-Factory ``sharegpt`` files (the released DeepEyesV2 cold-start data).

Nothing here tokenizes or decodes an image: a conversation holds :class:`ImageSource`
references, so 100k samples index in seconds and the images are read only when a batch
needs them (in DataLoader workers).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import InputError
from deepeyes_cli.protocol import tags

if TYPE_CHECKING:
    from PIL.Image import Image

    from deepeyes_cli.policy.base import ChatMessage

DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
_ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
          "observation": "user", "function": "user", "tool": "user"}


@dataclass(frozen=True)
class ImageSource:
    """An image not yet read: a file path or inline base64 PNG/JPEG."""

    path: str | None = None
    b64: str | None = None

    def _bytes(self) -> bytes:
        if self.b64 is not None:
            return base64.b64decode(self.b64)
        assert self.path is not None
        return Path(self.path).read_bytes()

    def load(self) -> Image:
        from PIL import Image as PILImage

        with PILImage.open(io.BytesIO(self._bytes())) as im:
            return im.convert("RGB")

    def size(self, verify: bool = False) -> tuple[int, int]:
        """(width, height) from the header; ``verify`` also checks the file decodes."""
        from PIL import Image as PILImage

        data = self._bytes()
        with PILImage.open(io.BytesIO(data)) as im:
            size = im.size
            if verify:
                im.load()
        return size

    def describe(self) -> str:
        return self.path or f"inline image ({len(self.b64 or '') * 3 // 4} bytes)"


@dataclass
class SFTConversation:
    """One training sample: messages in protocol order (image parts are :class:`ImageSource`).

    Assistant messages carry ``token_ids`` when the record kept the generated ids (trained on
    verbatim) and ``prefill`` (text the loop put there, never trained on). ``eos[i]`` says
    whether assistant message ``i`` ended at EOS, so ``<|im_end|>`` is a generated token
    (a turn cut at ``</code>``/``</tool_call>`` gets it from the framing instead).
    """

    id: str
    origin: str  # "file:line", for error messages
    messages: list[ChatMessage]
    eos: dict[int, bool] = field(default_factory=dict)
    problem: str | None = None  # found while reading (e.g. <image> placeholders != images)

    @property
    def images(self) -> list[ImageSource]:
        return [p for m in self.messages for p in m.content if isinstance(p, ImageSource)]


def data_files(specs: Sequence[str]) -> list[Path]:
    """The files named by ``sft.datasets``: files, or directories (their data files, sorted)."""
    out: list[Path] = []
    for spec in specs:
        p = Path(spec).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in DATA_SUFFIXES and f.is_file()
                           and not f.name.startswith(("dataset_info", ".")))
            if not found:
                raise InputError(f"no .jsonl/.json/.parquet files in {p}", hint="check sft.datasets")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"dataset not found: {spec}", hint="sft.datasets lists files or directories")
    if not out:
        raise InputError("no SFT data: sft.datasets is empty",
                         hint="pass sft.datasets='[path/to/trajectories.jsonl]' (trajectory JSONL or sharegpt JSON)")
    return out


def read_conversations(specs: Sequence[str], max_samples: int | None = None) -> list[SFTConversation]:
    """All conversations of ``sft.datasets``, in file order, at most ``max_samples``."""
    out: list[SFTConversation] = []
    for path in data_files(specs):
        for conv in read_file(path):
            out.append(conv)
            if max_samples is not None and len(out) >= max_samples:
                return out
    return out


def read_file(path: Path) -> Iterator[SFTConversation]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield from_record(row, path, i + 1)
        return
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})",
                             hint="LLaMA-Factory files are a JSON list of {messages, images}") from e
        for i, row in enumerate(rows):
            yield from_record(row, path, i + 1)
        return
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) - 1 and not text.endswith("\n"):
                return  # a torn last line from an interrupted writer
            raise InputError(f"{path}:{i + 1}: not JSON ({e.msg})", hint="one JSON object per line") from e
        yield from_record(row, path, i + 1)


def from_record(row: Any, path: Path, line: int) -> SFTConversation:
    origin = f"{path}:{line}"
    if not isinstance(row, dict):
        raise InputError(f"{origin}: expected a JSON object, got {type(row).__name__}")
    if "sample" in row and "messages" in row and "turns" in row:
        return from_trajectory(row, path.parent, origin)
    if "messages" in row or "conversations" in row:
        return from_sharegpt(row, path.parent, origin)
    raise InputError(f"{origin}: neither a trajectory record nor a sharegpt sample",
                     hint="records need messages+turns (trajectory) or messages/conversations (sharegpt)")


def from_trajectory(row: dict[str, Any], base_dir: Path, origin: str) -> SFTConversation:
    from deepeyes_cli.agent.trajectory import ImagePart, Trajectory
    from deepeyes_cli.policy.base import ChatMessage

    try:
        traj = Trajectory.model_validate(row)
    except ValueError as e:
        raise InputError(f"{origin}: not a trajectory record: {str(e).splitlines()[0]}") from e
    turns = {t.message_index: t for t in traj.turns if t.message_index is not None}
    messages: list[ChatMessage] = []
    eos: dict[int, bool] = {}
    for i, m in enumerate(traj.messages):
        content: list[Any] = []
        for p in m.content:
            if isinstance(p, ImagePart):
                ref = p.image
                path = None if ref.path is None else str(Path(ref.path) if Path(ref.path).is_absolute()
                                                         else base_dir / ref.path)
                content.append(ImageSource(path=path, b64=ref.b64))
            else:
                content.append(p.text)
        turn = turns.get(i) if m.role == "assistant" else None
        messages.append(ChatMessage(m.role, content, token_ids=turn.completion_ids if turn else None,
                                    prefill=turn.prefill if turn else ""))
        if m.role == "assistant":
            eos[i] = turn is None or (turn.stop_reason is None and turn.finish_reason in (None, "stop"))
    return SFTConversation(traj.id, origin, messages, eos)


def from_sharegpt(row: dict[str, Any], base_dir: Path, origin: str) -> SFTConversation:
    """LLaMA-Factory sharegpt (``messages`` of role/content, or ``conversations`` of
    from/value; ``images`` paths relative to the file). Tool results are user turns; the
    assistant turn after one starts with the loop's ``<think>`` prefill."""
    from deepeyes_cli.policy.base import ChatMessage

    raw = row.get("messages") or row.get("conversations") or []
    images = [ImageSource(path=str(Path(p) if Path(p).is_absolute() else base_dir / p)) if isinstance(p, str)
              else ImageSource(b64=p.get("b64")) for p in row.get("images") or []]
    system = row.get("system")
    messages: list[ChatMessage] = [ChatMessage("system", [system])] if system else []
    eos: dict[int, bool] = {}
    next_image = 0
    placeholders = 0
    for j, m in enumerate(raw):
        role = _ROLES.get(str(m.get("role", m.get("from", ""))).lower())
        text = m.get("content", m.get("value", ""))
        if role is None or not isinstance(text, str):
            raise InputError(f"{origin}: message {j} has role {m.get('role', m.get('from'))!r}",
                             hint="roles: system, user/human, assistant/gpt, observation/function/tool")
        if role == "assistant":
            after_tool = bool(messages) and messages[-1].role == "user" and sum(
                1 for x in messages if x.role == "user") > 1
            prefill = tags.PREFILL_AFTER_TOOL if after_tool and text.startswith(tags.PREFILL_AFTER_TOOL) else ""
            eos[len(messages)] = not text.rstrip().endswith(tags.STOP_STRINGS)
            messages.append(ChatMessage("assistant", [text], prefill=prefill))
            continue
        pieces = text.split(tags.IMAGE_PLACEHOLDER)
        placeholders += len(pieces) - 1
        content: list[Any] = [pieces[0]] if pieces[0] else []
        for piece in pieces[1:]:
            if next_image < len(images):
                content.append(images[next_image])
            next_image += 1
            if piece:
                content.append(piece)
        messages.append(ChatMessage(role, content))  # type: ignore[arg-type]
    problem = (f"{placeholders} <image> placeholders for {len(images)} images"
               if placeholders != len(images) else None)
    sid = str(row.get("id") or row.get("sample_id") or origin)
    return SFTConversation(sid, origin, messages, eos, problem)
