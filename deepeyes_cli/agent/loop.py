"""The agent loop: many trajectories at once, each a sequence of model turns and tool calls.

Every trajectory is an asyncio task; while one waits for its tool, the others generate
(backends batch the concurrent requests). A trajectory ends cleanly, with a reason, on an
answer, a limit (turns, tokens, context, images), an empty or truncated turn, a fatal tool
failure or a backend error; it never raises into the run. Its sandbox session is opened
on its first code turn and closed at its end, whatever happens.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deepeyes_cli.agent.budget import TokenCounter
from deepeyes_cli.agent.config import AgentConfig
from deepeyes_cli.agent.records import ImageRefs, LoopEvent, Observer, Task, count_issues
from deepeyes_cli.agent.trajectory import EndReason, Trajectory, TurnRecord
from deepeyes_cli.errors import DeepeyesError
from deepeyes_cli.policy.base import ChatMessage, Completion, Conversation, Policy, SamplingParams
from deepeyes_cli.protocol import observation as obs
from deepeyes_cli.protocol import tags
from deepeyes_cli.protocol.images import normalize_image
from deepeyes_cli.protocol.parser import ParsedTurn, parse_turn
from deepeyes_cli.tools.base import Tool, ToolContext, call_tool

if TYPE_CHECKING:
    from PIL.Image import Image

    from deepeyes_cli.sandbox.base import SandboxSession

log = logging.getLogger(__name__)

OpenSession = Callable[[Sequence["Image"], str], Awaitable["SandboxSession"]]


# Images up to this many pixels in all are encoded on the event loop (well under a millisecond):
# a hop to a worker thread costs more than that on a busy machine (GIL hand-over) and would
# be most of a served request's overhead.
_INLINE_PIXELS = 256 * 256


def _heavy(images: Sequence[Image]) -> bool:
    return sum(im.width * im.height for im in images) > _INLINE_PIXELS


@dataclass
class AgentRuntime:
    """Everything a run of the loop needs."""

    policy: Policy
    tools: dict[str, Tool]
    cfg: AgentConfig
    system_prompt: str | None
    instruction: str
    open_session: OpenSession | None = None  # the sandbox executor's, for the code tool
    min_pixels: int = 3136  # the model's image budget, to count image tokens
    max_pixels: int = 16384 * 28 * 28
    recipe_digest: str | None = None

    def __post_init__(self) -> None:
        self.counter = TokenCounter(self.policy, self.min_pixels, self.max_pixels)


class _Run:
    """One trajectory in progress."""

    def __init__(self, task: Task, rt: AgentRuntime, observer: Observer | None) -> None:
        self.rt, self.cfg, self.observer = rt, rt.cfg, observer
        self.images = [normalize_image(im, self.cfg.image_max_pixels) for im in task.images]
        self.refs = ImageRefs()
        self.traj = Trajectory(id=uuid.uuid4().hex, sample=task.sample, backend=rt.policy.name,
                               model=getattr(rt.policy, "model_name", None), recipe_digest=rt.recipe_digest,
                               metadata={"tools": sorted(rt.tools)})
        self.chat = obs.initial_messages(rt.system_prompt, task.sample.question, self.images, rt.instruction)
        self.session: SandboxSession | None = None
        self._session_lock = asyncio.Lock()
        self.ctx = ToolContext(self.traj.id, list(self.images), task.sample.model_dump(exclude={"images"}),
                               open_session=self._open_session if rt.open_session else None)
        self.n_images = len(self.images)
        self.context = rt.counter.prompt(self.chat, "")

    async def _open_session(self) -> SandboxSession:
        async with self._session_lock:
            if self.session is None:
                assert self.rt.open_session is not None
                self.session = await self.rt.open_session(self.images, self.traj.id)
            return self.session

    def _emit(self, kind: str, turn: TurnRecord | None = None, images: Sequence[Image] = ()) -> None:
        if self.observer is not None:
            msg = self.traj.messages[-1] if kind in ("assistant", "observation") else None
            self.observer(LoopEvent(kind, self.traj, turn, msg, list(images)))  # type: ignore[arg-type]

    def _end(self, reason: EndReason, error: str | None = None) -> Trajectory:
        self.traj.end_reason = reason
        if error:
            self.traj.metadata["error"] = error
        return self.traj

    async def _append(self, message: ChatMessage, record_only: bool = False) -> None:
        if not record_only:
            self.chat.append(message)
        images = [p for p in message.content if not isinstance(p, str)]
        record = await asyncio.to_thread(self.refs.message, message) if _heavy(images) else self.refs.message(message)
        self.traj.messages.append(record)

    async def _generate(self, prefix: str, max_tokens: int) -> Completion:
        params = SamplingParams(max_tokens=max_tokens, temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                                stop=list(self.cfg.stop), include_stop_str_in_output=True, seed=self.cfg.seed)
        conv = Conversation(list(self.chat), assistant_prefix=prefix)
        try:
            out = await asyncio.wait_for(self.rt.policy.generate([conv], params), self.cfg.generation_timeout_s)
        except asyncio.TimeoutError:
            return Completion("", "error", error=f"model call timed out after {self.cfg.generation_timeout_s:g} s")
        except DeepeyesError as e:
            return Completion("", "error", error=e.message)
        except Exception as e:  # a backend bug ends this trajectory, not the run
            log.exception("policy %s failed", self.rt.policy.name)
            return Completion("", "error", error=f"{type(e).__name__}: {e}")
        return out[0] if out else Completion("", "error", error="the backend returned nothing")

    async def run(self) -> Trajectory:
        if not self.traj.sample.images and self.images:  # record the inputs (encoded once, off the loop)
            encode = lambda: [self.refs.ref(im) for im in self.images]  # noqa: E731
            refs = await asyncio.to_thread(encode) if _heavy(self.images) else encode()
            self.traj.sample = self.traj.sample.model_copy(update={"images": refs})
        for m in self.chat:
            await self._append(m, record_only=True)
        self._emit("start")
        start = time.perf_counter()
        try:
            return await self._turns()
        except Exception as e:  # a bug in a tool wrapper or here: end this trajectory, keep the run
            log.exception("trajectory %s failed", self.traj.id)
            return self._end("error", f"{type(e).__name__}: {e}")
        finally:
            self.traj.wall_s = round(time.perf_counter() - start, 6)
            self.traj.model = self.traj.model or getattr(self.rt.policy, "model_name", None)  # known after a call
            self.traj.metadata["parse_issues"] = count_issues(self.traj)
            await self._close_session()
            self._emit("end")

    async def _close_session(self) -> None:
        if self.session is not None:
            t0 = time.perf_counter()
            try:
                await asyncio.shield(self.session.close())
                # sandbox time outside any tool call (an HTTP round trip with sandbox.url)
                self.traj.metadata["sandbox_close_s"] = round(time.perf_counter() - t0, 6)
            except Exception as e:  # closing must not turn a finished trajectory into a failure
                log.warning("closing sandbox session of %s failed: %s", self.traj.id, e)
                self.traj.metadata.setdefault("warnings", []).append(f"sandbox close failed: {e}")

    async def _turns(self) -> Trajectory:
        cfg, prefix = self.cfg, ""
        for index in range(cfg.max_turns):
            budget = min(cfg.max_tokens_per_turn, cfg.max_context_tokens - self.context)
            if budget <= 0:
                return self._end("context_limit")
            t0 = time.perf_counter()
            out = await self._generate(prefix, budget)
            turn = TurnRecord(index=index, action="none", prompt_tokens=out.prompt_tokens,
                              generation_s=round(time.perf_counter() - t0, 6), finish_reason=out.finish_reason,
                              stop_reason=out.stop_reason, completion_ids=out.token_ids, logprobs=out.logprobs)
            self.traj.turns.append(turn)
            if out.finish_reason == "error":
                turn.errors.append(out.error or "backend error")
                return self._end("error", out.error or "backend error")
            prefill = prefix if out.prefix_applied else ""
            text = prefill + out.text
            n_new = len(out.token_ids) if out.token_ids is not None else out.metadata.get("completion_tokens")
            turn.completion_tokens = n_new if n_new is not None else self.rt.counter.count_text(out.text)
            turn.prefill = prefill
            turn.message_index = len(self.traj.messages)
            await self._append(ChatMessage("assistant", [text], token_ids=out.token_ids, prefill=prefill))
            self._emit("assistant", turn)
            self.context = (out.prompt_tokens or self.context) + turn.completion_tokens
            if not out.text.strip():
                return self._end("empty")
            if out.finish_reason == "length":
                return self._end("length")
            parsed = parse_turn(text, self.rt.tools)
            turn.parse_issues = list(parsed.issues)
            turn.action = self._action(parsed)
            if parsed.action == "answer":
                self.traj.final_answer = parsed.answer
                return self._end("answered")
            if parsed.action == "none" and cfg.on_no_action == "end":
                return self._end("no_action")
            if index == cfg.max_turns - 1:
                return self._end("max_turns")  # as in the original, a last-round tool call is not run
            observation = await self._observe(parsed, turn)
            if observation is None:
                return self._end("tool_fatal", turn.errors[-1] if turn.errors else None)
            if self.n_images + len(observation.images) > cfg.max_images:
                return self._end("max_images")
            cost = self.rt.counter.message("user", observation.content) + self.rt.counter.count_text(
                f"{tags.IM_START}assistant\n{tags.PREFILL_AFTER_TOOL}")
            if self.context + cost >= cfg.max_context_tokens:
                return self._end("context_limit")
            await self._append(ChatMessage("user", observation.content))
            self.n_images += len(observation.images)
            self.ctx.produced_images += observation.images
            self.context += cost
            self._emit("observation", turn, observation.images)
            prefix = tags.PREFILL_AFTER_TOOL
        return self._end("max_turns")

    @staticmethod
    def _action(parsed: ParsedTurn) -> Any:
        if parsed.action == "tool":
            return parsed.tool if parsed.tool in ("search", "image_search") else "tool"
        return parsed.action

    async def _observe(self, parsed: ParsedTurn, turn: TurnRecord) -> obs.Observation | None:
        """Run the turn's tool (or prepare its corrective message); None when fatal."""
        if not parsed.is_tool_call:
            turn.feedback = parsed.feedback
            return obs.feedback_observation(parsed.feedback or tags.FEEDBACK["no_action"])
        assert parsed.tool is not None
        turn.tool, turn.tool_args = parsed.tool, parsed.args
        t0 = time.perf_counter()
        result = await call_tool(self.rt.tools[parsed.tool], dict(parsed.args or {}), self.ctx,
                                 timeout=self.cfg.tool_timeout_s)
        turn.tool_s = round(time.perf_counter() - t0, 6)
        turn.tool_ok = result.ok
        if not result.ok:
            turn.errors.append(result.error or "tool failed")
            if result.metadata.get("fatal"):
                return None
        if result.images:
            limit = self.cfg.image_max_pixels
            result.images = await asyncio.to_thread(lambda: [normalize_image(im, limit) for im in result.images])
        cap = self.cfg.max_images_per_turn
        out = obs.code_observation(result, cap) if parsed.action == "code" else obs.tool_observation(result, cap)
        turn.images_out, turn.images_dropped = len(out.images), out.dropped
        return out


async def run_trajectory(task: Task, runtime: AgentRuntime, observer: Observer | None = None) -> Trajectory:
    return await _Run(task, runtime, observer).run()


async def run_trajectories(tasks: Sequence[Task], runtime: AgentRuntime, observer: Observer | None = None,
                           on_done: Callable[[Trajectory], None] | None = None) -> list[Trajectory]:
    """Run every task, at most ``agent.concurrency`` at once; results in input order.
    ``on_done`` sees each trajectory as soon as it ends (to write it out incrementally)."""
    gate = asyncio.Semaphore(runtime.cfg.concurrency)

    async def one(task: Task) -> Trajectory:
        async with gate:
            traj = await run_trajectory(task, runtime, observer)
        if on_done is not None:
            on_done(traj)
        return traj

    return list(await asyncio.gather(*(one(t) for t in tasks)))
