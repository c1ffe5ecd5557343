"""The in-process executor: a pool of pre-started kernels, one per session.

Kernels are started ahead (``pool_size``) so opening a session only loads its images into a
ready kernel. At most ``max_sessions`` sessions live at once. At the limit a new session takes
the place of the least recently used idle one (idle at least ``evict_grace_s``; it is closed
and reopens empty, with a note), so a client that never ends its sessions does not stall the
pool; a new session waits (up to ``queue_timeout_s``, then :class:`SandboxError`) only while
no session is idle. Sessions idle for ``idle_timeout_s`` are closed. A kernel is never reused
by another session. A kernel that dies (out of memory, a limit, a crash) costs its session
its variables, never the pool.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.errors import SandboxError
from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.kernel import Kernel, OutputLimits
from deepeyes_cli.sandbox.launchers import Launcher
from deepeyes_cli.sandbox.session import LocalSession
from deepeyes_cli.sandbox.state import KernelSlot, UidLeases, make_slot, prepare_state_dir

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)
ARRIVAL_WINDOW_S = 5.0  # the pool sizes itself to the arrival rate over this window


def _under_session_tmp(python: str | None) -> bool:
    """A forked session mounts a fresh /tmp over the template's view, so a kernel Python (a venv)
    living under /tmp would vanish from under the kernel: ``auto`` starts such kernels with exec."""
    import sys

    path = Path(python or sys.executable).absolute()
    return len(path.parts) > 1 and path.parts[1] == "tmp"


def make_launcher(cfg: SandboxConfig) -> Launcher:
    from deepeyes_cli.sandbox.limits import Limits

    limits = Limits.from_config(cfg)
    if cfg.isolation == "bwrap":
        from deepeyes_cli.sandbox.launchers import BwrapLauncher

        bwrap = BwrapLauncher(limits, cfg.python)
        if cfg.kernel_start == "fork" or (cfg.kernel_start == "auto" and bwrap.own_uid
                                          and not _under_session_tmp(cfg.python)):
            from deepeyes_cli.sandbox.forking import ForkLauncher

            return ForkLauncher(bwrap, cfg.start_timeout_s, fallback=cfg.kernel_start == "auto")
        return bwrap
    if cfg.isolation == "docker":
        from deepeyes_cli.sandbox.docker_backend import DockerLauncher

        return DockerLauncher(cfg)
    from deepeyes_cli.sandbox.launchers import PlainLauncher

    log.warning("sandbox.isolation is none: generated code runs unisolated, with this process's user, "
                "files and network")
    return PlainLauncher(limits, cfg.python)


class _StartFailed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class KernelPool:
    """:class:`~deepeyes_cli.sandbox.base.SandboxExecutor` running kernels on this machine."""

    def __init__(self, cfg: SandboxConfig, launcher: Launcher | None = None) -> None:
        self.cfg = cfg
        self._launcher = launcher
        self.limits = OutputLimits(cfg.max_output_chars, cfg.max_images_per_cell, cfg.max_image_pixels)
        self.sessions: dict[str, LocalSession] = {}
        self.expired: collections.OrderedDict[str, str] = collections.OrderedDict()  # id -> why it ended
        self.counters: collections.Counter[str] = collections.Counter()
        self._ready: asyncio.Queue[Kernel | _StartFailed] | None = None
        self._starting = 0
        self._waiters = 0
        self._arrivals: collections.deque[float] = collections.deque()  # when kernels were asked for, lately
        self._start_s = 1.0  # how long a kernel takes to start (moving average)
        self._serial = 0
        self._uids = UidLeases(cfg.uid_base)
        self._tasks: set[asyncio.Task[Any]] = set()  # reaper and kernel starts: cancelled on close
        self._discards: set[asyncio.Task[Any]] = set()  # kernel kills: awaited on close
        self._state: Path | None = None
        self._started: asyncio.Future[None] | None = None
        self._closed = False
        self._start_sem = asyncio.Semaphore(cfg.start_concurrency)
        self._changed = asyncio.Event()  # set (and replaced) whenever a session ends or goes idle

    @property
    def launcher(self) -> Launcher:
        if self._launcher is None:
            self._launcher = make_launcher(self.cfg)
        return self._launcher

    async def __aenter__(self) -> KernelPool:
        try:
            await self.start()
        except BaseException:  # no __aexit__ follows a failed __aenter__: clean up here
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _prepare(self) -> None:
        self._ready = asyncio.Queue()
        isolation = self.launcher.isolation
        if getattr(self.launcher, "forking", False):  # a forked kernel costs a fraction of a fresh one's CPU
            self._start_sem = asyncio.Semaphore(4 * self.cfg.start_concurrency)
        # A docker image ships its own font list.
        self._state = await prepare_state_dir(self.cfg.state_dir, self.cfg.python, font_list=isolation != "docker")

    def _new_slot(self) -> KernelSlot:
        assert self._state is not None
        self._serial += 1
        uid = self._uids.take()
        try:
            return make_slot(self._state, self._serial, uid, world_writable_ipc=self.launcher.isolation == "docker")
        except BaseException:
            self._uids.release(uid)
            raise

    async def start(self) -> None:
        """Prepare the state directory, start one kernel to prove the set-up works (a clear error
        now beats one per session later), then fill the pool in the background."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                await self._prepare()
                self._spawn(self._reap_idle())
                first = await self._start_kernel()
                self._ready.put_nowait(first)  # type: ignore[union-attr]
                self._refill()
                self._started.set_result(None)
            except BaseException as e:
                self._started.set_exception(e)
                self._started.exception()  # mark retrieved
                raise
        await asyncio.shield(self._started)

    async def _start_kernel(self) -> Kernel:
        slot = self._new_slot()
        try:
            return await Kernel.start(slot, self.launcher, self.limits, self.cfg.start_timeout_s)
        except BaseException:
            self._release_slot(slot)
            raise

    def _release_slot(self, slot: KernelSlot) -> None:
        self._uids.release(slot.uid)
        shutil.rmtree(slot.dir, ignore_errors=True)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _refill(self) -> None:
        if self._closed or self._ready is None:
            return
        # Kernels: those of sessions, the ready ones and those starting, at most max_sessions + pool_size.
        # A session waiting for a kernel (new, or restarting) holds none yet, so it leaves room for one.
        holding = sum(1 for s in self.sessions.values() if s.attached)
        target = self._target_ready()
        want = target + self._waiters - self._ready.qsize() - self._starting
        room = self.cfg.max_sessions + target - holding - self._ready.qsize() - self._starting
        for _ in range(max(0, min(want, room))):
            self._starting += 1
            self._spawn(self._start_one())

    def _target_ready(self) -> int:
        """Kernels to keep ready: ``pool_size``, or as many as the recent arrival rate takes in the
        time one kernel takes to start (sessions arriving back to back at 8/s, kernels taking 0.5 s
        to start: 6), at most 4 x ``pool_size`` and ``max_sessions``."""
        if self.cfg.pool_size == 0:
            return 0
        now = time.monotonic()
        while self._arrivals and now - self._arrivals[0] > ARRIVAL_WINDOW_S:
            self._arrivals.popleft()
        rate = len(self._arrivals) / ARRIVAL_WINDOW_S
        most = min(self.cfg.max_sessions, 4 * self.cfg.pool_size)
        return max(self.cfg.pool_size, min(most, math.ceil(1.5 * rate * self._start_s)))

    async def _start_one(self) -> None:
        try:
            async with self._start_sem:
                began = time.monotonic()
                try:
                    kernel = await self._start_kernel()
                except SandboxError:
                    lost = getattr(self.launcher, "lost_template_since", None)
                    if lost is None or not lost(began):
                        raise
                    kernel = await self._start_kernel()  # its template died under it: once more, on a new one
                self._start_s = 0.8 * self._start_s + 0.2 * (time.monotonic() - began)
            if self._closed:
                await self._discard(kernel)
            else:
                self._ready.put_nowait(kernel)  # type: ignore[union-attr]
        except Exception as e:
            log.warning("a sandbox kernel failed to start: %s", e)
            self.counters["start_failures"] += 1
            if self._waiters and self._ready is not None:
                self._ready.put_nowait(_StartFailed(e))
        finally:
            self._starting -= 1

    async def take_kernel(self) -> Kernel:
        """A ready kernel, started for nobody else; starts one if none is ready."""
        await self.start()
        assert self._ready is not None
        self._waiters += 1
        self._arrivals.append(time.monotonic())
        try:
            while True:
                self._refill()
                item = await asyncio.wait_for(self._ready.get(), self.cfg.start_timeout_s * 2)
                if isinstance(item, _StartFailed):
                    raise SandboxError(f"no sandbox kernel could be started: {item.error}",
                                       hint=getattr(item.error, "hint", None))
                if item.alive:
                    return item
                await self._discard(item)
        except asyncio.TimeoutError:
            raise SandboxError("no sandbox kernel became ready in time",
                               hint="the machine may be overloaded; raise sandbox.start_timeout_s") from None
        finally:
            self._waiters -= 1
            self._refill()

    async def _discard(self, kernel: Kernel) -> None:
        await kernel.kill()
        self._release_slot(kernel.slot)

    def discard_later(self, kernel: Kernel) -> None:
        task = asyncio.ensure_future(self._discard(kernel))
        self._discards.add(task)
        task.add_done_callback(self._discards.discard)

    async def open_session(self, images: Sequence[Image] = (), session_id: str | None = None) -> LocalSession:
        if self._closed:
            raise SandboxError("the sandbox pool is closed")
        sid = session_id or uuid.uuid4().hex
        if sid in self.sessions:
            raise SandboxError(f"session {sid!r} is already open", hint="use a new session id per trajectory")
        await self.start()
        session = LocalSession(sid, self, list(images))
        self.sessions[sid] = session  # counted from now on, so max_sessions holds while we wait
        try:
            await self._wait_for_room(session)
            await session.attach(await self.take_kernel())
        except BaseException:
            if self.sessions.get(sid) is session:
                del self.sessions[sid]
            raise
        self.counters["sessions_opened"] += 1
        return session

    async def _wait_for_room(self, session: LocalSession) -> None:
        deadline = time.monotonic() + self.cfg.queue_timeout_s
        while True:
            if session.closed:
                raise SandboxError(f"session {session.id} was closed while it waited", hint="open a new session")
            if list(self.sessions).index(session.id) < self.cfg.max_sessions:
                return
            wait = self._evict_lru()
            if wait == 0.0:
                continue  # one session fewer: look again
            left = deadline - time.monotonic()
            if left <= 0:
                raise SandboxError(f"the sandbox is busy: all {self.cfg.max_sessions} sessions are running cells",
                                   hint="close finished sessions, or raise sandbox.max_sessions")
            changed = self._changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), min(left, 1.0 if wait is None else wait))

    def _evict_lru(self) -> float | None:
        """Close the least recently used idle session that has been idle ``evict_grace_s``: 0.0
        when one was closed, else how long until one may be (None: every session is busy)."""
        now = time.monotonic()
        grace = self.cfg.evict_grace_s
        idle = [s for s in list(self.sessions.values())[: self.cfg.max_sessions] if s.evictable]
        if not idle:
            return None
        lru = min(idle, key=lambda s: s.last_used)
        if now - lru.last_used < grace:
            return grace - (now - lru.last_used) + 0.001
        self.counters["sessions_evicted"] += 1
        lru.close_now(f"closed to make room for a new session: {self.cfg.max_sessions} sessions (sandbox."
                      f"max_sessions) were open and it was the least recently used, idle {now - lru.last_used:.0f} s")
        return 0.0

    def notify(self) -> None:
        """Wake the sessions waiting for room: one ended, or went idle."""
        self._changed.set()
        self._changed = asyncio.Event()

    def forget(self, session: LocalSession, why: str) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
            self.expired[session.id] = why
            while len(self.expired) > 10000:
                self.expired.popitem(last=False)
        self.notify()
        self._refill()

    async def _reap_idle(self) -> None:
        period = max(0.05, min(30.0, self.cfg.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if session.attached and not session.busy and now - session.last_used > self.cfg.idle_timeout_s:
                    self.counters["sessions_reaped"] += 1
                    await session.close(reason=f"closed after {self.cfg.idle_timeout_s:g} s idle")

    def stats(self) -> dict[str, Any]:
        return {"isolation": self.cfg.isolation, "sessions": min(len(self.sessions), self.cfg.max_sessions),
                "queued_sessions": max(0, len(self.sessions) - self.cfg.max_sessions),
                "ready_kernels": self._ready.qsize() if self._ready else 0, "starting_kernels": self._starting,
                "max_sessions": self.cfg.max_sessions,
                "limits": self._launcher.enforcement() if self._launcher is not None else {},
                "sessions_evicted": 0, "sessions_reaped": 0, **self.counters}

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await session.close(reason="the pool was closed")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._discards, return_exceptions=True)
        while self._ready is not None and not self._ready.empty():
            item = self._ready.get_nowait()
            if isinstance(item, Kernel):
                await self._discard(item)
        if self._launcher is not None:
            self._launcher.close()
        if self._state is not None:
            shutil.rmtree(self._state, ignore_errors=True)
        self._uids.close()

