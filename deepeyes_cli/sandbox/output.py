"""What a cell gives back, gathered on the host from the kernel's messages, with the limits
enforced here whatever the kernel does: text cut with a marker, images counted and checked."""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from deepeyes_cli.sandbox.kernel_init import CUT_KEY, DROPPED_MIME

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PIXEL_SLACK = 1.1  # figures saved with bbox_inches="tight" may come out slightly larger than planned


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def truncation_marker(omitted: int) -> str:
    return f"\n…[output truncated: {omitted:,} characters omitted]…\n"


class TextCapture:
    """Keeps the first 3/4 and the last 1/4 of ``limit`` characters of a stream, however long it
    grows, and counts what was left out."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit * 3 // 4
        self.tail_limit = limit - self.head_limit
        self.head: list[str] = []
        self.head_len = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.total = 0

    def add(self, text: str) -> None:
        self.total += len(text)
        if self.head_len < self.head_limit:  # pragma: no mutate (<=: appends "" when the head is full, no change)
            part = text[: self.head_limit - self.head_len]
            self.head.append(part)
            self.head_len += len(part)
            text = text[len(part):]
        if not text:
            return
        if len(text) > self.tail_limit:  # pragma: no mutate (>=: slicing a text of exactly tail_limit keeps it)
            # no mutate: with tail_limit 0 whatever is appended here is popped again just below
            text = text[-self.tail_limit:] if self.tail_limit else ""  # pragma: no mutate
        self.tail.append(text)
        self.tail_len += len(text)
        # no mutate: ">" keeps one more chunk than needed; value() slices it off and memory stays bounded
        while self.tail and self.tail_len - len(self.tail[0]) >= self.tail_limit:  # pragma: no mutate
            self.tail_len -= len(self.tail.popleft())

    def skip(self, omitted: int) -> None:
        """Count ``omitted`` characters the kernel already cut out here: what came before them can
        no longer be the tail, and what comes after can no longer be the head."""
        self.total += omitted
        self.head_len = max(self.head_len, self.head_limit)
        self.tail.clear()
        self.tail_len = 0

    def add_cut(self, text: str, cut: Any) -> None:
        """Add a text the kernel may have cut (``cut`` = [characters kept before the gap, characters
        left out]); a ``cut`` that does not fit the text is ignored."""
        if (isinstance(cut, list) and len(cut) == 2 and all(isinstance(n, int) for n in cut)
                and 0 <= cut[0] <= len(text) and cut[1] > 0):
            self.add(text[: cut[0]])
            self.skip(cut[1])
            self.add(text[cut[0]:])
        else:
            self.add(text)

    @property
    def truncated(self) -> bool:
        return self.total > self.head_limit + self.tail_limit

    def value(self) -> str:
        head = "".join(self.head)
        tail = "".join(self.tail)
        if not self.truncated:
            return head + tail
        tail = tail[-self.tail_limit:] if self.tail_limit else ""  # pragma: no mutate (tail is "" when tail_limit is 0)
        return head + truncation_marker(self.total - len(head) - len(tail)) + tail


def cut(text: str, limit: int) -> tuple[str, bool]:
    capture = TextCapture(limit)
    capture.add(text)
    return capture.value(), capture.truncated


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's header, or None when it is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])  # pragma: no mutate (>ii: PNG caps sizes at 2**31 - 1)
    return int(width), int(height)


@dataclass
class CellCapture:
    """Accumulates one cell's iopub messages."""

    max_chars: int
    max_images: int
    max_pixels: int
    stdout: TextCapture = field(init=False)
    stderr: TextCapture = field(init=False)
    result: TextCapture | None = None  # the last expression's text
    error: str | None = None
    images: list[bytes] = field(default_factory=list)
    images_dropped: int = 0
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stdout = TextCapture(self.max_chars)
        self.stderr = TextCapture(self.max_chars)

    def add_message(self, msg_type: str, content: dict[str, Any]) -> None:
        cut = content.get(CUT_KEY)  # where the kernel cut a long text (kernel_init.cap_messages)
        if msg_type == "stream":
            (self.stderr if content.get("name") == "stderr" else self.stdout).add_cut(str(content.get("text", "")), cut)
        elif msg_type in ("display_data", "execute_result", "update_display_data"):
            data = content.get("data") or {}
            if DROPPED_MIME in data:  # the kernel's own count of images it did not send
                with contextlib.suppress(TypeError, ValueError, KeyError):
                    self.images_dropped += int(data[DROPPED_MIME]["dropped"])
                return
            image = data.get("image/png")
            if image is not None:
                self._add_image(image)
            if msg_type == "execute_result":
                if "text/plain" in data:
                    self.result = TextCapture(self.max_chars)
                    self.result.add_cut(str(data["text/plain"]), cut)
            elif image is None and "text/plain" in data:  # display("text"), a DataFrame …: shown like print
                self.stdout.add_cut(str(data["text/plain"]), cut)
                self.stdout.add("\n")
        elif msg_type == "error":
            traceback = strip_ansi("\n".join(content.get("traceback") or []))
            self.error = re.sub(r"\n\s*\n", "\n", traceback).strip() or \
                f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"

    def _add_image(self, image: Any) -> None:
        if len(self.images) >= self.max_images:
            self.images_dropped += 1
            return
        try:
            data = base64.b64decode(image, validate=True) if isinstance(image, str) else bytes(image)
        except (binascii.Error, TypeError, ValueError):
            self.notes.append("an image that was not valid base64 was dropped")
            return
        size = png_size(data)
        if size is None:
            self.notes.append("an image that was not a PNG was dropped")
            return
        # no mutate: >= differs only when w*h equals max_pixels * 1.1 exactly, which a float product never is
        if size[0] * size[1] > self.max_pixels * PIXEL_SLACK:  # pragma: no mutate
            self.images_dropped += 1
            self.notes.append(f"an image of {size[0]}x{size[1]} pixels was dropped (limit {self.max_pixels:,})")
            return
        self.images.append(data)

    def text_fields(self) -> dict[str, Any]:
        """stdout, stderr, result and error, each within the limit, and whether any was cut."""
        error, cut_error = cut(self.error, self.max_chars) if self.error is not None else (None, False)
        result = self.result.value() if self.result is not None else None
        cut_result = self.result is not None and self.result.truncated
        return {"stdout": self.stdout.value(), "stderr": strip_ansi(self.stderr.value()), "result": result,
                "error": error,
                "truncated": self.stdout.truncated or self.stderr.truncated or cut_result or cut_error}
