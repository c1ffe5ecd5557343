"""The agent as a service: one policy and one toolbox shared by every request, admission
(a concurrency limit with a bounded queue), per-request limits within the server's caps,
trajectories as cancellable tasks, usage, records.

A trajectory runs as its own asyncio task, not inside the HTTP handler: a client that goes
away cancels it (the loop then closes its sandbox session), and its slot is given back when
the task is really over, not when the response stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepeyes_cli.agent.ask import build_runtime
from deepeyes_cli.agent.loop import AgentRuntime, run_trajectory
from deepeyes_cli.serve.config import ServeConfig
from deepeyes_cli.serve.metrics import ServeMetrics
from deepeyes_cli.serve.wire import ApiError, ChatRequest

if TYPE_CHECKING:
    from deepeyes_cli.agent.config import AgentConfig
    from deepeyes_cli.agent.records import Observer, Task
    from deepeyes_cli.agent.trajectory import Trajectory
    from deepeyes_cli.policy.base import Policy
    from deepeyes_cli.tools.registry import Toolbox

log = logging.getLogger(__name__)


def usage(traj: Trajectory) -> dict[str, Any]:
    """OpenAI's usage object, summed over the trajectory's turns, plus the agent's counts."""
    prompt = sum(t.prompt_tokens or 0 for t in traj.turns)
    completion = sum(t.completion_tokens or 0 for t in traj.turns)
    tools = [t for t in traj.turns if t.tool]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "turns": len(traj.turns), "tool_calls": len(tools),
            "tool_seconds": round(sum(t.tool_s or 0.0 for t in tools), 6),
            "generation_seconds": round(sum(t.generation_s or 0.0 for t in traj.turns), 6)}


class AgentService:
    def __init__(self, recipe: Any, policy: Policy, *, recipe_digest: str | None = None,
                 save_path: Path | None = None) -> None:
        self.recipe, self.policy, self.cfg = recipe, policy, recipe.serve
        self.recipe_digest = recipe_digest
        self.save_path = save_path if self.cfg.save_trajectories else None
        self.draining = False
        self.start_error: Exception | None = None
        self.running = 0
        self.waiting = 0
        self.cancelled = 0
        self._slots = asyncio.Semaphore(self.cfg.max_concurrency)
        self._stack = AsyncExitStack()
        self._jobs: set[asyncio.Task[Trajectory]] = set()
        self._saves: set[asyncio.Future[Any]] = set()
        self._save_lock = threading.Lock()
        self.metrics = ServeMetrics(lambda: self.running, lambda: self.waiting)
        self.toolbox: Toolbox | None = None
        self.runtime: AgentRuntime | None = None

    async def open(self) -> None:
        from deepeyes_cli.tools.registry import open_toolbox

        self._stack.push_async_callback(self.policy.aclose)
        self.toolbox = await self._stack.enter_async_context(open_toolbox(self.recipe))
        self.runtime = build_runtime(self.recipe, self.policy, self.toolbox, self.recipe_digest)

    async def aclose(self) -> None:
        """Cancel what still runs (after the HTTP server drained), then close tools and policy."""
        for job in list(self._jobs):
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        if self._saves:
            await asyncio.gather(*self._saves, return_exceptions=True)
        await self._stack.aclose()

    # ----------------------------------------------------------------- limits

    def agent_config(self, req: ChatRequest) -> tuple[AgentConfig, list[str]]:
        """The agent section for one request: its max_turns, max_tokens (per turn), temperature,
        top_p and seed, each held to the server's cap (a request above one is capped, with a warning)."""
        base: AgentConfig = self.recipe.agent
        caps = {"max_turns": self.cfg.max_turns or base.max_turns,
                "max_tokens_per_turn": self.cfg.max_tokens or base.max_tokens_per_turn,
                "temperature": self.cfg.max_temperature}
        asked = {"max_turns": req.max_turns, "max_tokens_per_turn": req.max_completion_tokens or req.max_tokens,
                 "temperature": req.temperature}
        update: dict[str, Any] = {}
        warnings = []
        for key, cap in caps.items():
            value = asked[key] if asked[key] is not None else getattr(base, key)
            if value > cap:
                if asked[key] is not None:
                    name = {"max_tokens_per_turn": "max_tokens"}.get(key, key)
                    warnings.append(f"{name}={asked[key]} is above this server's cap; {cap} is used")
                value = cap
            update[key] = value
        if req.top_p is not None:
            update["top_p"] = req.top_p
        if req.seed is not None:
            update["seed"] = req.seed
        return base.model_copy(update=update), warnings

    # ----------------------------------------------------------------- admission

    async def acquire(self) -> float:
        """Wait for a slot (returns the seconds waited); 429 when the queue is full or the wait
        too long, 503 while draining."""
        retry = {"Retry-After": str(self.cfg.retry_after_s)}
        if self.draining:
            raise ApiError(503, "the server is shutting down", code="shutting_down", headers=retry)
        if self._slots.locked() and self.waiting >= self.cfg.max_queue:
            raise ApiError(429, f"the server is busy: {self.running} requests running and {self.waiting} waiting "
                                f"(serve.max_concurrency={self.cfg.max_concurrency}, "
                                f"serve.max_queue={self.cfg.max_queue}); retry later", code="server_busy",
                           headers=retry)
        t0 = time.perf_counter()
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.cfg.queue_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(429, f"no slot became free in {self.cfg.queue_timeout_s:g} s; retry later",
                           code="server_busy", headers=retry) from None
        finally:
            self.waiting -= 1
        self.running += 1
        waited = time.perf_counter() - t0
        self.metrics.queue_seconds.observe(waited)
        return waited

    def _release(self, job: asyncio.Task[Trajectory]) -> None:
        self.running -= 1
        self._slots.release()
        self._jobs.discard(job)
        if job.cancelled():
            self.cancelled += 1
            self.metrics.disconnects.inc()
            return
        if job.exception() is not None:
            return
        traj = job.result()
        self.metrics.trajectory(traj)
        if self.save_path is not None:
            fut = asyncio.ensure_future(asyncio.to_thread(self._save, traj))
            self._saves.add(fut)
            fut.add_done_callback(self._saves.discard)

    def _save(self, traj: Trajectory) -> None:
        from deepeyes_cli.agent.trajectory import append_jsonl

        assert self.save_path is not None
        try:
            with self._save_lock:
                append_jsonl(self.save_path, [traj])
        except OSError as e:
            log.error("cannot save trajectory %s to %s: %s", traj.id, self.save_path, e)

    def launch(self, task: Task, agent: AgentConfig, observer: Observer | None = None) -> asyncio.Task[Trajectory]:
        """Run one trajectory in a slot taken with :meth:`acquire`; the slot is freed when it ends."""
        assert self.runtime is not None, "open() the service first"
        runtime = dataclasses.replace(self.runtime, cfg=agent)
        job = asyncio.create_task(run_trajectory(task, runtime, observer))
        self._jobs.add(job)
        job.add_done_callback(self._release)
        return job

    def health(self) -> dict[str, Any]:
        executor = self.toolbox.executor if self.toolbox is not None else None
        stats = getattr(executor, "stats", None)
        sandbox = stats() if callable(stats) else {}
        return {"status": "draining" if self.draining else "ok", "model": self.cfg.model_name,
                "backend": self.policy.name, "in_flight": self.running, "queued": self.waiting,
                "cancelled": self.cancelled, "max_concurrency": self.cfg.max_concurrency,
                "max_queue": self.cfg.max_queue,
                "sandbox": {k: sandbox[k] for k in ("isolation", "sessions", "queued_sessions", "ready_kernels")
                            if k in sandbox}}


__all__ = ["AgentService", "ServeConfig", "usage"]
