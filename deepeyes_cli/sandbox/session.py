"""One trajectory's session on a local kernel: its images, its cells, its restarts."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import SandboxError
from deepeyes_cli.sandbox.base import CellResult, CellStatus

if TYPE_CHECKING:
    from PIL.Image import Image

    from deepeyes_cli.sandbox.kernel import Execution, Kernel
    from deepeyes_cli.sandbox.pool import KernelPool

log = logging.getLogger(__name__)
_RAW_MODES = {"1", "L", "LA", "I", "I;16", "F", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}


def write_inputs(images: list[Image], input_dir: Any, inside_dir: str) -> list[tuple[str, str, int, int, str]]:
    """Write each image's raw pixels for the kernel (no PNG round trip: a 1024² RGB image loads
    in a few ms) and return what ``load_inputs`` needs to rebuild ``image_1 … image_n``."""
    specs = []
    for i, img in enumerate(images, start=1):
        if img.mode not in _RAW_MODES:
            has_alpha = "A" in img.mode or "transparency" in img.info
            img = img.convert("RGBA" if has_alpha else "RGB")
        path = input_dir / f"image_{i}.raw"
        path.write_bytes(img.tobytes())
        path.chmod(0o644)
        specs.append((f"image_{i}", img.mode, img.width, img.height, f"{inside_dir}/image_{i}.raw"))
    return specs


class LocalSession:
    """:class:`~deepeyes_cli.sandbox.base.SandboxSession` on a kernel of a :class:`KernelPool`."""

    def __init__(self, session_id: str, pool: KernelPool, images: list[Image]) -> None:
        self.id = session_id
        self.pool = pool
        self.images = images
        self.kernel: Kernel | None = None
        self.last_used = time.monotonic()
        self.busy = False
        self.closed = False
        self.cells = 0
        self._lock = asyncio.Lock()

    @property
    def attached(self) -> bool:
        return self.kernel is not None

    @property
    def evictable(self) -> bool:
        """Open with a kernel, running no cell, and no cell waiting for its turn."""
        return self.kernel is not None and not self.busy and not self.closed and not self._lock.locked()

    async def attach(self, kernel: Kernel) -> None:
        """Load this session's images into a fresh kernel and make it the session's."""
        if self.images and not self.closed:
            inside = kernel.launcher.paths_for(kernel.slot)["input"]
            specs = write_inputs(self.images, kernel.slot.input, inside)
            code = f"__import__('_deepeyes_sandbox').load_inputs(globals(), {specs!r})"
            loaded = await kernel.execute(code, self.pool.cfg.start_timeout_s, silent=True)
            if loaded.status != "ok":
                self.pool.discard_later(kernel)
                raise SandboxError(f"the session's images could not be loaded: {loaded.capture.error}")
        if self.closed:  # closed while its kernel was starting: the kernel is nobody's
            self.pool.discard_later(kernel)
            raise SandboxError(f"session {self.id} was closed", hint="open a new session")
        self.kernel = kernel
        self.last_used = time.monotonic()

    async def _restart(self) -> None:
        old, self.kernel = self.kernel, None
        if old is not None:
            self.pool.discard_later(old)
        self.pool.counters["kernel_restarts"] += 1
        await self.attach(await self.pool.take_kernel())

    def _reloaded(self) -> str:
        names = ", ".join(f"image_{i}" for i in range(1, len(self.images) + 1))
        return "variables from earlier cells are gone" + (f"; {names} are loaded again" if names else "")

    async def run(self, code: str, timeout: float | None = None) -> CellResult:
        cfg = self.pool.cfg
        limit = min(timeout if timeout and timeout > 0 else cfg.timeout_s, cfg.max_timeout_s)
        async with self._lock:
            if self.closed:
                raise SandboxError(f"session {self.id} is closed", hint="open a new session")
            self.busy = True
            self.last_used = time.monotonic()
            notes: list[str] = []
            restarted = False
            try:
                if self.kernel is None or not self.kernel.alive:
                    # Before the cell, so a failure here (no kernel in time) ran nothing; the next cell tries again.
                    why = ("an earlier restart failed" if self.kernel is None else
                           f"it had stopped since the last cell: {self.kernel.process.exit_reason()}")
                    await self._restart()
                    restarted = True
                    notes.append(f"the kernel was restarted ({why}): {self._reloaded()}")
                kernel = self.kernel
                assert kernel is not None
                execution = await self._execute(kernel, code, limit)
                result = self._result(kernel, execution, limit, notes)  # before a restart removes its cgroup
                if (execution.status == "died" or execution.unresponsive) and not self.closed:
                    try:
                        await self._restart()
                        restarted = True
                        result.error = f"{result.error}; the kernel was restarted: {self._reloaded()}."
                    except SandboxError as e:  # keep this cell's result; the next cell tries again
                        result.error = (f"{result.error}; the kernel could not be restarted yet ({e.message}), "
                                        "the next cell will try again.")
                result.restarted = restarted
                self.cells += 1
                self.pool.counters[f"cells_{result.status}"] += 1
                return result
            finally:
                self.busy = False
                self.last_used = time.monotonic()
                self.pool.notify()

    async def _execute(self, kernel: Kernel, code: str, limit: float) -> Execution:
        from deepeyes_cli.sandbox.kernel import Execution

        try:
            return await kernel.execute(code, limit, grace=self.pool.cfg.interrupt_grace_s)
        except (SandboxError, OSError, RuntimeError, ValueError) as e:  # a broken channel: treat as a crash
            log.warning("session %s: kernel channel failed: %s", self.id, e)
            execution = Execution(self.pool.limits.capture(), status="died")
            await kernel.process.kill()
            return execution

    def _result(self, kernel: Kernel, ex: Execution, limit: float, notes: list[str]) -> CellResult:
        text = ex.capture.text_fields()
        dropped = ex.capture.images_dropped
        status: CellStatus = {"ok": "ok", "error": "error", "timeout": "timeout", "died": "crashed"}[ex.status]  # type: ignore[assignment]
        error = text["error"]
        if status == "timeout":
            error = f"TimeoutError: the cell ran longer than {limit:g} s and was interrupted"
            if ex.unresponsive:
                error += " but did not stop"
        elif status == "crashed":
            why = ("the session was closed while it ran" if self.closed else
                   "it sent a message over the size limit, and its output channel was cut" if ex.lost_output else
                   kernel.process.exit_reason())
            error = f"KernelDied: the kernel died while running this cell: {why}"
        if dropped:
            notes.append(f"{dropped} more image(s) were not returned (at most {self.pool.cfg.max_images_per_cell} "
                         "per cell)")
        notes.extend(ex.capture.notes)
        return CellResult(status=status, stdout=text["stdout"], stderr=text["stderr"], result=text["result"],
                          error=error, images=ex.capture.images, execution_time=round(ex.seconds, 6),
                          truncated=text["truncated"], images_dropped=dropped, notes=notes)

    async def close(self, reason: str = "closed by its client") -> None:
        self.close_now(reason)

    def close_now(self, reason: str) -> None:
        """End the session at once: its kernel is killed in the background."""
        if self.closed:
            return
        self.closed = True
        kernel, self.kernel = self.kernel, None
        self.pool.forget(self, reason)
        if kernel is not None:
            self.pool.discard_later(kernel)
