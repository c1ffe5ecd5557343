"""The ``code`` tool: run the model's Python in this trajectory's sandbox session.

The session is opened on the first code turn (with the input images preloaded as
``image_1 … image_n``) and closed by the loop when the trajectory ends. A cell's stdout,
stderr (tracebacks, time-outs and kernel restarts included) and figures come back in the
original's code-result template. A sandbox that cannot run code at all is fatal for the
trajectory (the original ends the episode too); a failing cell is not.
"""

from __future__ import annotations

import asyncio
from typing import Any

from deepeyes_cli.agent.config import DEFAULT_IMAGE_MAX_PIXELS
from deepeyes_cli.errors import DeepeyesError
from deepeyes_cli.protocol.images import decode_png
from deepeyes_cli.protocol.indentation import fix_indentation
from deepeyes_cli.protocol.tags import CODE_TOOL, format_code_result
from deepeyes_cli.tools.base import ToolContext, ToolResult


def _decode_all(blobs: list[bytes], max_pixels: int) -> tuple[list[Any], int]:
    images, bad = [], 0
    for blob in blobs:
        try:
            images.append(decode_png(blob, max_pixels))
        except (OSError, ValueError, SyntaxError):
            bad += 1
    return images, bad


class CodeTool:
    name = CODE_TOOL
    description = ("Run Python in a Jupyter-style kernel that keeps state between calls. The input images are "
                   "preloaded as PIL images image_1, image_2, ...; stdout, stderr and figures shown with "
                   "plt.show() are returned.")

    def __init__(self, timeout_s: float = 60.0, *, fix_indentation: bool = False, show_last_expression: bool = True,
                 image_max_pixels: int = DEFAULT_IMAGE_MAX_PIXELS) -> None:
        self.parameters: dict[str, Any] = {"type": "object", "properties": {"code": {"type": "string"}},
                                           "required": ["code"], "additionalProperties": False}
        self.timeout_s = timeout_s
        self.fix_indentation = fix_indentation
        self.show_last_expression = show_last_expression
        self.image_max_pixels = image_max_pixels

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        code = args.get("code")
        if not isinstance(code, str) or not code.strip():
            return ToolResult.failure("no code given")
        if self.fix_indentation:
            code = fix_indentation(code)
        try:
            session = await ctx.session()
            cell = await session.run(code, self.timeout_s)
        except DeepeyesError as e:
            return ToolResult.failure(f"code sandbox unavailable: {e.message}", fatal=True)
        stdout = cell.stdout
        if self.show_last_expression and cell.result is not None:
            stdout += ("" if not stdout or stdout.endswith("\n") else "\n") + cell.result
        notes = list(cell.notes)
        if cell.truncated:
            notes.append("(output truncated)")
        if cell.images_dropped:
            notes.append(f"({cell.images_dropped} more images not shown)")
        images, bad = await asyncio.to_thread(_decode_all, cell.images, self.image_max_pixels) if cell.images \
            else ([], 0)
        if bad:
            notes.append(f"({bad} images could not be decoded)")
        stderr = cell.stderr
        if cell.status != "ok" and cell.error and cell.error.strip() not in stderr:
            stderr += ("" if not stderr or stderr.endswith("\n") else "\n") + cell.error
        if notes:
            stderr += ("" if not stderr or stderr.endswith("\n") else "\n") + "\n".join(notes)
        return ToolResult(text=format_code_result(stdout, stderr, len(images)), images=images,
                          metadata={"status": cell.status, "execution_time": cell.execution_time,
                                    "restarted": cell.restarted})
