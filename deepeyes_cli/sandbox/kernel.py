"""One Jupyter kernel: started by a launcher, spoken to over ZMQ ``ipc`` sockets in its own
directory (a kernel with no network can still be reached), interrupted by message (a signal
cannot cross into its PID namespace or container), and watched for death while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import SandboxError
from deepeyes_cli.sandbox.kernel_init import bootstrap_code
from deepeyes_cli.sandbox.output import CellCapture

if TYPE_CHECKING:
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.session import Session

    from deepeyes_cli.sandbox.launchers import KernelProcess, Launcher
    from deepeyes_cli.sandbox.state import KernelSlot

log = logging.getLogger(__name__)
DELIM = b"<IDS|MSG>"  # the Jupyter wire protocol's separator between ZMQ routing ids and the message
OUTPUT_SILENCE_S = 10.0  # after its reply, a kernel's output channel silent this long is taken as cut
PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}


@dataclass
class OutputLimits:
    max_chars: int = 20000
    max_images: int = 10
    max_pixels: int = 2048 * 2048

    def capture(self) -> CellCapture:
        return CellCapture(self.max_chars, self.max_images, self.max_pixels)

    def max_message_bytes(self) -> int:
        """The largest message part we accept from a kernel. Its own are far smaller (texts cut to
        2 x max_chars, one capped PNG per message); a bigger one is a hand-made attack on the
        server's memory, and ZMQ drops the connection instead of buffering it."""
        return (32 << 20) + 6 * self.max_pixels + 12 * self.max_chars


@dataclass
class Execution:
    """What came back from one execute request."""

    capture: CellCapture
    status: str = "ok"  # ok | error | timeout | died
    interrupted: bool = False  # the deadline passed and an interrupt was sent
    unresponsive: bool = False  # the interrupt did not stop it either
    lost_output: bool = False  # it replied, but its output channel went silent (cut by the size limit)
    user_expressions: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class Kernel:
    def __init__(self, slot: KernelSlot, launcher: Launcher, process: KernelProcess,
                 client: AsyncKernelClient, limits: OutputLimits) -> None:
        self.slot, self.launcher, self.process, self.client, self.limits = slot, launcher, process, client, limits
        self.started = time.monotonic()
        self._death = asyncio.ensure_future(process.wait())

    @property
    def alive(self) -> bool:
        return not self._death.done()

    @classmethod
    async def start(cls, slot: KernelSlot, launcher: Launcher, limits: OutputLimits,
                    timeout: float = 60.0) -> Kernel:
        from jupyter_client.asynchronous import AsyncKernelClient

        inside = launcher.paths_for(slot)
        key = secrets.token_hex(16)
        info: dict[str, Any] = {**PORTS, "ip": f"{inside['kernel']}/s", "key": key, "transport": "ipc",
                "signature_scheme": "hmac-sha256", "kernel_name": ""}
        conn = slot.ipc / "connection.json"
        conn.write_text(json.dumps(info))
        if slot.uid is not None and os.geteuid() == 0:
            os.chown(conn, slot.uid, slot.uid)
        try:
            process = await launcher.launch(slot)
        except (OSError, RuntimeError, ValueError) as e:  # a cgroup we may not create, a missing program …
            raise SandboxError(f"a {launcher.isolation} kernel could not be launched: {type(e).__name__}: {e}",
                               hint=f"see {slot.log}; `deepeyes sandbox check` says what this machine allows") from e
        client = AsyncKernelClient(context=_context(limits.max_message_bytes()))
        kernel = cls(slot, launcher, process, client, limits)
        try:
            client.load_connection_info({**info, "ip": str(slot.ipc / "s")})  # type: ignore[typeddict-item]
            client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=True)
            await asyncio.wait_for(kernel._handshake(), timeout)
            setup = await kernel.execute(bootstrap_code(limits.max_images, limits.max_pixels, limits.max_chars), timeout, silent=True)
            if setup.status != "ok":
                raise SandboxError(f"the kernel set-up failed: {setup.capture.error or setup.status}",
                                   hint="the kernel Python needs ipykernel, pillow, numpy and matplotlib")
            # One ordinary cell, so the session's first cell does not pay for IPython's first-run paths.
            await kernel.execute("None", timeout, store_history=False)
            kernel._no_reconnect()
        except BaseException as e:
            await kernel.kill()
            if isinstance(e, SandboxError):
                raise
            if isinstance(e, asyncio.TimeoutError):
                raise SandboxError(f"a {launcher.isolation} kernel was not ready within {timeout:g} s",
                                   hint=f"see {slot.log}; a loaded machine may need a larger "
                                        "sandbox.start_timeout_s") from None
            if isinstance(e, Exception):  # ZMQ refusing a socket path, a broken channel …
                raise SandboxError(f"a {launcher.isolation} kernel could not be started: {type(e).__name__}: {e}",
                                   hint=f"see {slot.log}") from e
            raise
        return kernel

    def _no_reconnect(self) -> None:
        """Once connected, never reconnect: the kernel owns the directory of its socket files and
        could put a link to another socket there; a dropped connection means a dead kernel."""
        import zmq

        for channel in (self.client.shell_channel, self.client.iopub_channel, self.client.control_channel):
            with contextlib.suppress(Exception):
                channel.socket.setsockopt(zmq.RECONNECT_IVL, -1)

    async def _handshake(self) -> None:
        """Wait until the kernel answers on shell AND our iopub subscription is live (a SUB
        socket misses what is published before it connects)."""
        while True:
            msg_id = self.client.kernel_info()
            reply = await self._next(self.client.get_shell_msg(), f"{self.slot.log}")
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg_id = self.client.kernel_info()
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    msg = await asyncio.wait_for(self._next(self.client.get_iopub_msg(), ""), 0.2)
                    if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status":
                        return
        raise asyncio.TimeoutError

    async def _next(self, coro: Any, where: str) -> Any:
        task = asyncio.ensure_future(coro)
        try:
            done, _ = await asyncio.wait({task, self._death}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():  # never leave a reader behind: it would steal the next message
                task.cancel()
        if task not in done:
            tail = _tail(self.slot.log)
            raise SandboxError(f"the kernel died while starting: {self.process.exit_reason()}",
                               hint=(tail or f"see {where}")[-500:])
        return task.result()

    def interrupt(self) -> None:
        self.client.control_channel.send(self.client.session.msg("interrupt_request", {}))

    async def execute(self, code: str, timeout: float, *, silent: bool = False, grace: float = 3.0,
                      user_expressions: dict[str, str] | None = None, store_history: bool | None = None) -> Execution:
        start = time.perf_counter()
        result = Execution(self.limits.capture())
        keep = (not silent) if store_history is None else store_history
        msg_id = self.client.execute(code, silent=silent, store_history=keep, allow_stdin=False,
                                     stop_on_error=False, user_expressions=user_expressions or {})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        iopub: asyncio.Future[Any] | None = None
        shell: asyncio.Future[Any] | None = None
        reply: dict[str, Any] | None = None
        idle = False
        quiet_until = float("inf")  # once the reply is in: the output channel must not stay silent past this
        iopub_socket, shell_socket = self.client.iopub_channel.socket, self.client.shell_channel.socket
        try:
            while reply is None or not idle:
                if iopub is None and not idle:
                    iopub = iopub_socket.recv_multipart()
                if shell is None and reply is None:
                    shell = shell_socket.recv_multipart()
                waiting = {f for f in (iopub, shell, self._death) if f is not None}
                done, _ = await asyncio.wait(waiting, timeout=max(0.0, min(deadline, quiet_until) - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if self._death in done or any(f.cancelled() for f in done):  # dead, or its sockets closed by kill()
                    result.status = "died"
                    break
                if not done and loop.time() >= quiet_until:
                    # The kernel answered, but its "idle" never came: the output channel is cut (a message
                    # over MAX_MESSAGE_BYTES closes it). The kernel is as good as dead to us.
                    result.status, result.lost_output = "died", True
                    break
                if not done:
                    if result.interrupted:
                        result.unresponsive = True
                        break
                    result.interrupted = True
                    self.interrupt()
                    deadline = loop.time() + grace
                    continue
                if iopub is not None and iopub in done:
                    msg, iopub = decode_message(self.client.session, iopub.result()), None
                    if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                        msg_type = msg["header"].get("msg_type")
                        if msg_type == "status" and msg["content"].get("execution_state") == "idle":
                            idle = True
                        else:
                            result.capture.add_message(msg_type, msg["content"])
                if shell is not None and shell in done:
                    msg, shell = decode_message(self.client.session, shell.result()), None
                    if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                        reply = msg["content"]
                if reply is not None:  # from now on, silence on the output channel is counted
                    quiet_until = loop.time() + max(grace, OUTPUT_SILENCE_S)
        except asyncio.CancelledError:  # our caller gave up: do not leave the cell running for the next one
            with contextlib.suppress(Exception):
                self.interrupt()
            raise
        finally:
            for f in (iopub, shell):
                if f is not None:
                    f.cancel()
        if reply is not None:
            if reply.get("status") == "error" and result.status == "ok":
                result.status = "error"
                if result.capture.error is None:
                    result.capture.error = f"{reply.get('ename', 'Error')}: {reply.get('evalue', '')}"
            result.user_expressions = reply.get("user_expressions") or {}
        if result.interrupted and result.status != "died":
            result.status = "timeout"
        result.seconds = time.perf_counter() - start
        return result

    async def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.client.stop_channels()
        await self.process.kill()
        if not self._death.done():
            self._death.cancel()
        with contextlib.suppress(BaseException):
            await self._death


_CONTEXTS: dict[int, Any] = {}


def _context(max_message_bytes: int) -> Any:
    """A ZMQ context (one IO thread) whose sockets refuse messages over ``max_message_bytes``:
    the option must be set before a socket connects, and jupyter_client connects as it creates."""
    import zmq
    import zmq.asyncio

    if max_message_bytes not in _CONTEXTS:
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        _CONTEXTS[max_message_bytes] = context
    return _CONTEXTS[max_message_bytes]


def decode_message(session: Session, frames: list[bytes]) -> dict[str, Any] | None:
    """A kernel message, signature checked, with only what we read: header, parent header and
    content as plain JSON. (jupyter_client's own ``deserialize`` also parses every date with
    dateutil and keeps a digest history: a large share of a warm cell's host time.) None for a
    message that is malformed or wrongly signed: it is ignored."""
    try:
        parts = frames[frames.index(DELIM) + 1:]
        if session.auth is not None and not hmac.compare_digest(parts[0], session.sign(parts[1:5])):
            return None
        return {"header": json.loads(parts[1]), "parent_header": json.loads(parts[2]), "content": json.loads(parts[4])}
    except (ValueError, IndexError, TypeError):
        return None


def _tail(path: os.PathLike[str] | str, size: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""
