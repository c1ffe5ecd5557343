"""The loop with the scripted policy and real tools defined in the tests: protocol order,
every end reason, limits, sandbox session lifecycle, concurrency, determinism, records."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from agent_test_helpers import EchoSearch, InProcessExecutor
from PIL import Image

from deepeyes_cli.agent.config import AgentConfig
from deepeyes_cli.agent.loop import AgentRuntime, run_trajectories, run_trajectory
from deepeyes_cli.agent.records import LoopEvent, Task
from deepeyes_cli.agent.trajectory import Sample, Trajectory, append_jsonl, read_jsonl
from deepeyes_cli.policy.base import Completion, Conversation, SamplingParams
from deepeyes_cli.policy.scripted import ScriptedPolicy
from deepeyes_cli.tools.base import Tool
from deepeyes_cli.tools.code import CodeTool

SEARCH = '<think>look it up</think>\n<tool_call>\n{"name": "search", "arguments": {"query": "q"}}\n</tool_call>'
CODE = "<think>crop</think>\n<code>\n```python\n{}\n```\n</code>"
ANSWER = "ok</think> <answer>B</answer>"


def _task(n_images: int = 1, question: str = "What is it?") -> Task:
    return Task(Sample(id="s1", question=question, answer="B"),
                [Image.new("RGB", (64, 48), (200, 30, 30)) for _ in range(n_images)])


def _runtime(policy: Any, tools: Sequence[Tool] = (), executor: InProcessExecutor | None = None,
             **cfg: Any) -> AgentRuntime:
    return AgentRuntime(policy, {t.name: t for t in tools}, AgentConfig(**cfg), "SYS", "INSTR",
                        open_session=(lambda imgs, sid: executor.open_session(imgs, sid)) if executor else None)


def _run(policy: Any, tools: Sequence[Tool] = (), task: Task | None = None, **kw: Any) -> Trajectory:
    return asyncio.run(run_trajectory(task or _task(), _runtime(policy, tools, **kw)))


def test_search_then_answer_in_protocol_order() -> None:
    search = EchoSearch(images=2)
    traj = _run(ScriptedPolicy([SEARCH + " extra text after the stop", ANSWER]), [search])
    assert traj.end_reason == "answered" and traj.final_answer == "B"
    roles = [m.role for m in traj.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert traj.messages[2].text == SEARCH  # cut at the stop string, which is kept
    obs = traj.messages[3]
    assert obs.text.startswith("<tool_response>\nA Google search for 'q' found 2 results:")
    assert obs.text.endswith("</tool_response>") and len(obs.images) == 2
    assert traj.messages[4].text == "<think>" + ANSWER  # prefilled after a tool result
    t0, t1 = traj.turns
    assert (t0.action, t0.tool, t0.tool_args, t0.tool_ok, t0.images_out) == ("search", "search", {"query": "q"}, True, 2)
    assert t0.stop_reason == "</tool_call>" and t0.prefill == "" and t0.message_index == 2
    assert (t1.action, t1.prefill, t1.message_index) == ("answer", "<think>", 4)
    assert traj.sample.images and traj.sample.images[0].width == 64  # inputs recorded
    assert search.contexts[0].images[0].size == (64, 48) and search.contexts[0].sample["question"] == "What is it?"
    assert traj.metadata["parse_issues"] == {} and traj.metadata["tools"] == ["search"]


def test_malformed_turns_get_feedback_and_are_counted() -> None:
    turns = ['<tool_call>{"name": "search", "arguments": {"query": }</tool_call>',
             '<tool_call>{"name": "browse"}</tool_call>', ANSWER]
    traj = _run(ScriptedPolicy(turns), [EchoSearch()])
    assert traj.end_reason == "answered"
    assert traj.messages[3].text.startswith("Error: Invalid tool call format: ")
    assert traj.messages[5].text == 'Error: Invalid tool call name: {"name": "browse"}.'
    assert traj.metadata["parse_issues"] == {"invalid_json": 1, "unknown_tool": 1}
    assert traj.turns[0].action == "invalid" and traj.turns[0].feedback == traj.messages[3].text


@pytest.mark.parametrize(("turns", "cfg", "reason"), [
    (["I think it is red."], {}, "no_action"),
    (["I think it is red."] * 5, {"on_no_action": "remind", "max_turns": 3}, "max_turns"),
    ([SEARCH] * 5, {"max_turns": 2}, "max_turns"),
    (["<think>" + "word " * 400], {"max_tokens_per_turn": 50}, "length"),
    ([SEARCH], {}, "empty"),
    ([SEARCH, SEARCH], {"max_context_tokens": 120}, "context_limit"),
])
def test_end_reasons(turns: list[str], cfg: dict[str, Any], reason: str) -> None:
    search = EchoSearch()
    traj = _run(ScriptedPolicy(turns), [search], **cfg)
    assert traj.end_reason == reason
    if reason == "max_turns":
        assert len(traj.turns) == cfg["max_turns"]
    if cfg.get("on_no_action") == "remind":
        assert traj.messages[3].text.startswith("Error: No tool call and no answer") and not search.calls
    if reason == "length":
        assert traj.turns[0].finish_reason == "length" and traj.final_answer is None


def test_last_round_tool_call_is_not_run() -> None:
    search = EchoSearch()
    traj = _run(ScriptedPolicy([SEARCH] * 3), [search], max_turns=3)
    assert traj.end_reason == "max_turns" and len(search.calls) == 2 and traj.messages[-1].role == "assistant"


def test_image_limits() -> None:
    capped = _run(ScriptedPolicy([SEARCH, ANSWER]), [EchoSearch(images=5)], max_images_per_turn=3)
    assert capped.end_reason == "answered" and len(capped.messages[3].images) == 3
    assert capped.turns[0].images_out == 3 and capped.turns[0].images_dropped == 2
    full = _run(ScriptedPolicy([SEARCH, SEARCH, ANSWER]), [EchoSearch(images=3)], max_images=6)
    assert full.end_reason == "max_images" and len(full.turns) == 2  # 1 input + 3 + 3 > 6


def test_tool_failures() -> None:
    shown = _run(ScriptedPolicy([SEARCH, ANSWER]), [EchoSearch(fail="quota exceeded")])
    assert shown.end_reason == "answered" and shown.messages[3].text == "Error: quota exceeded"
    assert shown.turns[0].tool_ok is False and shown.turns[0].errors == ["quota exceeded"]
    fatal = _run(ScriptedPolicy([SEARCH, ANSWER]), [EchoSearch(fail="no cache entry", fatal=True)])
    assert fatal.end_reason == "tool_fatal" and fatal.metadata["error"] == "no cache entry"
    bug = _run(ScriptedPolicy([SEARCH, ANSWER]), [EchoSearch(raises=KeyError("query"))])
    assert bug.end_reason == "answered" and "search failed: KeyError" in bug.messages[3].text
    slow = _run(ScriptedPolicy([SEARCH, ANSWER]), [EchoSearch(sleep_s=5)], tool_timeout_s=0.05)
    assert slow.end_reason == "answered" and "timed out after 0.05 s" in slow.messages[3].text


class _Broken:
    name = "broken"

    def __init__(self, how: str) -> None:
        self.how = how

    async def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        if self.how == "raise":
            raise RuntimeError("CUDA out of memory")
        if self.how == "hang":
            await asyncio.sleep(30)
        return [Completion("", "error", error="HTTP 503") for _ in conversations]

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize(("how", "message"), [("raise", "RuntimeError: CUDA out of memory"),
                                               ("hang", "model call timed out after 0.1 s"),
                                               ("error", "HTTP 503")])
def test_backend_failures_end_cleanly(how: str, message: str) -> None:
    traj = _run(_Broken(how), generation_timeout_s=0.1)
    assert traj.end_reason == "error" and traj.metadata["error"] == message and traj.turns[0].errors == [message]


def test_sandbox_session_is_lazy_single_and_always_closed() -> None:
    executor = InProcessExecutor()
    code = CodeTool(5)
    answer_only = _run(ScriptedPolicy([ANSWER]), [code], executor=executor)
    assert answer_only.end_reason == "answered" and executor.sessions == []  # never opened
    turns = [CODE.format("x = image_1.size[0] * 2\nprint(x)"), CODE.format("print(x + 1)\nshow(image_1)"), ANSWER]
    traj = _run(ScriptedPolicy(turns), [code], executor=executor)
    assert traj.end_reason == "answered" and len(executor.sessions) == 1 and executor.sessions[0].closed
    assert "stdout:\n```\n128\n\n```" in traj.messages[3].text
    assert "stdout:\n```\n129\n\n```" in traj.messages[5].text and len(traj.messages[5].images) == 1
    # closed when the trajectory fails after a code turn
    failing = ScriptedPolicy(lambda conv: CODE.format("print(1)") if len(conv.messages) < 3 else 1 / 0)  # type: ignore
    err = _run(failing, [code], executor=executor)
    assert err.end_reason == "error" and "ZeroDivisionError" in err.metadata["error"] and executor.sessions[-1].closed


def test_session_closed_when_the_run_is_cancelled() -> None:
    executor = InProcessExecutor()
    rt = _runtime(ScriptedPolicy([CODE.format("print(1)"), SEARCH]), [CodeTool(5), EchoSearch(sleep_s=30)],
                  executor=executor)

    async def main() -> None:
        task = asyncio.create_task(run_trajectory(_task(), rt))
        while not executor.sessions or len(rt.tools["search"].calls) == 0:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert executor.sessions[0].closed


class _Rendezvous(EchoSearch):
    """Each call waits until ``n`` calls wait together: only concurrent trajectories get through."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.barrier: asyncio.Barrier | None = None

    async def __call__(self, args: dict[str, Any], ctx: Any) -> Any:
        self.barrier = self.barrier or asyncio.Barrier(self.n)
        await asyncio.wait_for(self.barrier.wait(), 30)  # times out (a tool error) unless all n are waiting
        return await super().__call__(args, ctx)


def test_trajectories_run_concurrently() -> None:
    n = 32
    rt = _runtime(ScriptedPolicy([SEARCH, SEARCH, ANSWER]), [_Rendezvous(n)], concurrency=n)
    trajs = asyncio.run(run_trajectories([_task() for _ in range(n)], rt))
    assert [t.end_reason for t in trajs] == ["answered"] * n
    assert all(t.turns[0].tool_ok and t.turns[1].tool_ok for t in trajs)  # every tool wait overlapped all others
    gated = _runtime(ScriptedPolicy([SEARCH, ANSWER]), [_Rendezvous(2)], concurrency=1, tool_timeout_s=0.5)
    lone = asyncio.run(run_trajectories([_task(), _task()], gated))  # agent.concurrency=1: one at a time
    assert [t.turns[0].tool_ok for t in lone] == [False, False]


def test_deterministic_records_and_events() -> None:
    events: list[LoopEvent] = []

    def run() -> Trajectory:
        rt = _runtime(ScriptedPolicy([SEARCH, ANSWER]), [EchoSearch(images=1)])
        return asyncio.run(run_trajectory(_task(), rt, observer=events.append))

    a, b = run(), run()
    strip = {"id", "created_at", "wall_s"}
    da, db = a.model_dump(exclude=strip), b.model_dump(exclude=strip)
    for d in (da, db):
        for t in d["turns"]:
            t["generation_s"] = t["tool_s"] = None
    assert da == db
    assert [e.kind for e in events[:5]] == ["start", "assistant", "observation", "assistant", "end"]
    assert len(events[2].images) == 1 and events[2].message is not None and events[2].message.role == "user"


def test_records_round_trip_and_load_with_datasets(tmp_path: Path) -> None:
    trajs = [_run(ScriptedPolicy([SEARCH, ANSWER]), [EchoSearch(images=2)]),
             _run(ScriptedPolicy(["<tool_call>{bad}</tool_call>", ANSWER]), [EchoSearch()])]
    path = tmp_path / "t.jsonl"
    append_jsonl(path, trajs)
    back = list(read_jsonl(path))
    assert [t.final_answer for t in back] == ["B", "B"]
    assert back[0].messages[3].images[0].load(tmp_path).size == (40, 40)
    import datasets

    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    assert ds.num_rows == 2 and ds[0]["end_reason"] == "answered" and ds[1]["turns"][0]["action"] == "invalid"


def test_load_question_checks_the_question_and_the_image_count(tmp_path: Path) -> None:
    from deepeyes_cli.agent.ask import load_question
    from deepeyes_cli.errors import InputError

    photo = Path(__file__).resolve().parents[2] / "data" / "street_sign.jpg"
    task = load_question([photo], "  What does it say? ", 10**7)
    assert task.sample.question == "What does it say?" and task.images[0].size == (640, 480)
    assert task.sample.id == load_question([photo], "What does it say?", 10**7).sample.id
    with pytest.raises(InputError, match="question is empty"):
        load_question([photo], " \n ", 10**7)
    with pytest.raises(InputError, match="3 images given; a trajectory holds at most 2"):
        load_question([photo] * 3, "q?", 10**7, max_images=2)


def test_failed_runs_become_errors_with_a_hint_that_fits(tmp_path: Path) -> None:
    from deepeyes_cli.agent.ask import run_failure
    from deepeyes_cli.errors import BackendError, ToolError
    from deepeyes_cli.recipe.loader import load_recipe

    recipe = load_recipe("tiny", ["policy.backend=openai", "policy.url=http://127.0.0.1:9/v1"]).recipe
    saved = tmp_path / "t.jsonl"

    def failure(reason: str, error: str | None) -> Any:
        traj = Trajectory(id="t", sample=Sample(id="s", question="q"), end_reason=reason,  # type: ignore[arg-type]
                          metadata={"error": error} if error else {})
        return run_failure(traj, recipe, saved)

    assert failure("answered", None) is None and failure("max_turns", None) is None  # the model's doing
    refused = failure("error", "cannot connect to http://127.0.0.1:9/v1 (ConnectError: …)")
    assert isinstance(refused, BackendError) and "server at http://127.0.0.1:9/v1 running" in (refused.hint or "")
    assert str(saved) in (refused.hint or "")
    rejected = failure("error", "http://127.0.0.1:9/v1 answered HTTP 400: At most 1 image(s) may be provided")
    assert "--limit-mm-per-prompt '{\"image\": 50}'" in (rejected.hint or "")
    assert "generation_timeout_s" in (failure("error", "model call timed out after 900 s").hint or "")
    sandbox = failure("tool_fatal", "code sandbox unavailable: bwrap: No permissions")
    assert isinstance(sandbox, ToolError) and "agent.tools=[search,image_search]" in (sandbox.hint or "")
