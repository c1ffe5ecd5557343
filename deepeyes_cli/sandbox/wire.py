"""The HTTP wire format, shared by the server and the client.

``POST /jupyter_sandbox`` answers as the original sandbox (v1) did, so its client keeps
working: ``{"status": "success", "execution_time", "output": {"result", "stdout", "stderr",
"images": [base64 PNG], "debug_info": {"msg"}}}``, with errors and time-outs written into
``stderr``. The extra ``deepeyes`` object carries the rest of :class:`CellResult`
(status, error apart from stderr, truncation, dropped images, restarts, notes).
"""

from __future__ import annotations

import base64
from typing import Any, cast

from pydantic import BaseModel, Field

from deepeyes_cli.sandbox.base import CellResult, CellStatus

DEFAULT_SESSION = "JupyterSandboxDefault"  # the original's default session id
NO_RESULT = "None"  # what the original puts in output.result when the cell has no value
EMPTY_CODE = {"output": "Error: No code provided", "status": "error", "execution_time": 0.0}


class RunRequest(BaseModel):
    session_id: str = Field(DEFAULT_SESSION, min_length=1, max_length=256)
    code: str = ""
    timeout: float | None = Field(None, description="Seconds; the server's default when absent.")


class OpenRequest(BaseModel):
    session_id: str | None = Field(None, min_length=1, max_length=256)
    images: list[str] = Field(default_factory=list, description="Base64 PNG/JPEG, preloaded as image_1 … image_n.")


class SessionRequest(BaseModel):
    session_id: str = Field(..., min_length=1, max_length=256)


def result_to_wire(result: CellResult) -> dict[str, Any]:
    stderr = result.stderr
    if result.error:
        stderr = f"{stderr}{'' if not stderr or stderr.endswith(chr(10)) else chr(10)}{result.error}"
    return {
        "status": "success",
        "execution_time": result.execution_time,
        "output": {"result": NO_RESULT if result.result is None else result.result, "stdout": result.stdout, "stderr": stderr,
                   "images": [base64.b64encode(png).decode("ascii") for png in result.images],
                   "debug_info": {"msg": "; ".join(result.notes)}},
        "deepeyes": {"status": result.status, "stderr": result.stderr, "error": result.error,
                     "truncated": result.truncated, "images_dropped": result.images_dropped,
                     "restarted": result.restarted, "notes": result.notes},
    }


def _decode_image(image: str) -> bytes:
    if image.startswith("data:") and "," in image:  # the v2 server's data URIs
        image = image.split(",", 1)[1]
    return base64.b64decode(image)


def _result(value: Any) -> str | None:
    # IPython shows no value for None, so "None" here always means "no value".
    return None if value in (None, "", NO_RESULT) else str(value)


def result_from_wire(body: dict[str, Any]) -> CellResult:
    """A :class:`CellResult` from our server's answer, or from the original server's."""
    output = body.get("output")
    if body.get("status") != "success" or not isinstance(output, dict):
        message = output if isinstance(output, str) else body.get("detail") or "the sandbox server failed"
        return CellResult(status="error", error=str(message), execution_time=float(body.get("execution_time") or 0))
    images = [_decode_image(i) for i in output.get("images") or []]
    extra = body.get("deepeyes")
    if isinstance(extra, dict):
        return CellResult(status=cast(CellStatus, extra.get("status", "ok")), stdout=output.get("stdout", ""),
                          stderr=extra.get("stderr", ""), result=_result(output.get("result")),
                          error=extra.get("error"), images=images,
                          execution_time=float(body.get("execution_time") or 0.0),
                          truncated=bool(extra.get("truncated")), images_dropped=int(extra.get("images_dropped") or 0),
                          restarted=bool(extra.get("restarted")), notes=list(extra.get("notes") or []))
    stderr = output.get("stderr", "")
    status: CellStatus = ("timeout" if "timed out" in stderr else
              "error" if "Traceback" in stderr or stderr.startswith("SyntaxError") else "ok")
    return CellResult(status=status, stdout=output.get("stdout", ""), stderr=stderr,
                      result=_result(output.get("result")), images=images,
                      execution_time=float(body.get("execution_time") or 0.0))
