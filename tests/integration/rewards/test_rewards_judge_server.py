"""The LLM judge against a real OpenAI-compatible HTTP server on 127.0.0.1 (the fake)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from deepeyes_cli.errors import JudgeError
from deepeyes_cli.rewards.cache import JudgeCache
from deepeyes_cli.rewards.config import JudgeConfig, RewardConfig
from deepeyes_cli.rewards.judge import Judge, JudgeRequest
from deepeyes_cli.rewards.reward import RewardScorer
from deepeyes_cli.rewards.synthetic import answer_turn, make_trajectory
from deepeyes_cli.testing.fake_openai import FakeOpenAI, Reply
from deepeyes_cli.testing.servers import BackgroundServer


def grade(body: dict[str, Any]) -> str:
    """A judge that calls a candidate correct when it contains the reference (case-insensitive)."""
    user = body["messages"][-1]["content"]
    ref = user.split("Reference answer:\n", 1)[1].split("\n\nCandidate answer:", 1)[0]
    cand = user.split("<candidate>\n", 1)[1].rsplit("\n</candidate>", 1)[0]
    return "Comparing the two.\nVERDICT: " + ("CORRECT" if ref.lower() in cand.lower() else "INCORRECT")


def config(fake: FakeOpenAI, **kw: Any) -> JudgeConfig:
    return JudgeConfig(**{"base_url": fake.base_url, "api_key": "x", "backoff_s": 0.01, "backoff_max_s": 0.05, **kw})


def ask(judge: Judge, reqs: list[JudgeRequest]) -> list:
    return asyncio.run(judge.judge_many(reqs))


REQS = [JudgeRequest("Which city?", "Paris", "It is Paris, France."),
        JudgeRequest("Which city?", "Paris", "Lyon"),
        JudgeRequest("What colour?", "red", "a red car"),
        JudgeRequest("Which city?", "Paris", "It is Paris, France.")]  # a duplicate: asked once


def test_verdicts_cache_and_deduplication(tmp_path: Path) -> None:
    with FakeOpenAI(grade, model="judge-72b") as fake:
        judge = Judge(config(fake), JudgeCache(tmp_path / "c.sqlite"))
        results = ask(judge, REQS)
        assert [r.correct for r in results] == [True, False, True, True]
        assert {r.model for r in results} == {"judge-72b"}  # read from /models, lazily
        assert len(fake.requests) == 3 and judge.stats.calls == 3
        assert fake.requests[0]["temperature"] == 0.0 and fake.requests[0]["model"] == "judge-72b"
        again = Judge(config(fake, model="judge-72b"), JudgeCache(tmp_path / "c.sqlite"))
        assert [r.correct for r in ask(again, REQS)] == [True, False, True, True]
        assert len(fake.requests) == 3 and again.stats.cache_hits == 4
        other_version = Judge(config(fake, model="judge-72b", prompt_version="v2"), JudgeCache(tmp_path / "c.sqlite"))
        ask(other_version, REQS[:1])
        assert len(fake.requests) == 4  # a new prompt version is a cache miss


def test_retries_with_backoff_on_429_and_500(tmp_path: Path) -> None:
    with FakeOpenAI(grade, fail_first=[429, 500]) as fake:
        judge = Judge(config(fake, model="m"), JudgeCache(tmp_path / "c.sqlite"))
        (r,) = ask(judge, REQS[:1])
        assert r.correct is True and len(fake.requests) == 3 and judge.stats.retries == 2


def test_unjudged_when_the_server_keeps_failing_and_nothing_is_cached(tmp_path: Path) -> None:
    with FakeOpenAI(grade, fail_first=[500] * 3) as fake:
        # backoff_max_s=0: no pause between tries, and the endpoint is not taken as down afterwards
        judge = Judge(config(fake, model="m", max_retries=2, backoff_max_s=0), JudgeCache(tmp_path / "c.sqlite"))
        (r,) = ask(judge, REQS[:1])
        assert r.correct is None and "500" in (r.error or "") and len(fake.requests) == 3
        assert judge.stats.unjudged == 1
        (r,) = ask(judge, REQS[:1])  # the server is back: asked again, not served a cached failure
        assert r.correct is True and len(fake.requests) == 4


def test_a_dead_endpoint_does_not_cost_every_batch_its_retries() -> None:
    with FakeOpenAI(grade) as fake:
        url = fake.base_url
    # The server is gone (connection refused): the first batch spends its retries …
    judge = Judge(JudgeConfig(base_url=url, model="m", max_retries=2, backoff_s=0.01, backoff_max_s=60), None)
    first = ask(judge, [JudgeRequest("n?", str(i), str(i)) for i in range(4)])
    assert all(r.correct is None and "Connection" in (r.error or "") for r in first)
    calls = judge.stats.calls
    assert 3 <= calls <= 4 * 3  # each tries at most 1 + max_retries times
    # … and the next batches (a file is judged in chunks) are unjudged at once, asking nothing.
    later = ask(judge, [JudgeRequest("n?", str(i), str(i)) for i in range(4, 100)])
    assert all(r.correct is None and "not answering" in (r.error or "") for r in later)
    assert judge.stats.calls == calls


@pytest.mark.parametrize("body", [
    "<html>502 Bad Gateway</html>",  # a proxy's page with status 200
    '{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": null}]}',
    '{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": 7}}]}',
    '["VERDICT: CORRECT"]',
    "{}",
])
def test_a_reply_that_is_not_a_chat_completion_is_unjudged(body: str) -> None:
    from fastapi import FastAPI
    from fastapi.responses import Response

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> Response:
        return Response(body, media_type="application/json" if body[0] in "[{" else "text/html")

    with BackgroundServer(app) as server:
        judge = Judge(JudgeConfig(base_url=f"{server.url}/v1", model="m", parse_retries=0), None)
        (r,) = ask(judge, REQS[:1])
    assert r.correct is None and "not a chat completion" in (r.error or "")


def test_timeout_is_unjudged(tmp_path: Path) -> None:
    with FakeOpenAI(lambda b: Reply("VERDICT: CORRECT", delay_s=1.0)) as fake:
        judge = Judge(config(fake, model="m", timeout_s=0.2, max_retries=1), None)
        (r,) = ask(judge, REQS[:1])
        assert r.correct is None and "Timeout" in (r.error or "") and len(fake.requests) == 2


def test_unparseable_reply_is_asked_again_then_unjudged() -> None:
    replies = iter(["I believe it matches.", "Looks fine.\nVERDICT: CORRECT"])
    with FakeOpenAI(lambda b: next(replies)) as fake:
        judge = Judge(config(fake, model="m", parse_retries=1), None)
        (r,) = ask(judge, REQS[:1])
        assert r.correct is True and len(fake.requests) == 2
        assert fake.requests[1]["temperature"] > fake.requests[0]["temperature"]
    with FakeOpenAI(lambda b: "Yes, same answer.") as fake:
        judge = Judge(config(fake, model="m", parse_retries=2), None)
        (r,) = ask(judge, REQS[:1])
        assert r.correct is None and "no verdict" in (r.error or "") and len(fake.requests) == 3


def test_bad_api_key_is_a_configuration_error() -> None:
    with FakeOpenAI(grade, api_key="right") as fake:
        judge = Judge(JudgeConfig(base_url=fake.base_url, api_key="wrong", model="m"), None)
        with pytest.raises(JudgeError) as e:
            ask(judge, REQS[:1])
        assert "api_key" in (e.value.hint or "")


def test_base_url_without_v1_is_a_configuration_error() -> None:
    with FakeOpenAI(grade) as fake:
        judge = Judge(JudgeConfig(base_url=fake.base_url.removesuffix("/v1"), api_key="x"), None)
        with pytest.raises(JudgeError) as e:
            ask(judge, REQS[:1])
        assert "/v1" in (e.value.hint or "") and not fake.requests


def test_concurrency_limit() -> None:
    cond, state = threading.Condition(), {"now": 0, "peak": 0}

    def slow(body: dict[str, Any]) -> str:
        with cond:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            cond.notify_all()
            # Hold the first requests until the limit is reached (or 5 s pass): the peak then shows
            # the limit itself however slowly a loaded machine sends them.
            cond.wait_for(lambda: state["peak"] >= 3, timeout=5)
        time.sleep(0.05)  # keep later requests overlapping, so more than 3 would show
        with cond:
            state["now"] -= 1
        return grade(body)

    reqs = [JudgeRequest("n?", str(i), str(i)) for i in range(9)]
    with FakeOpenAI(slow) as fake:
        judge = Judge(config(fake, model="m", concurrency=3), None)
        assert all(r.correct for r in ask(judge, reqs))
    assert state["peak"] == 3


def test_scorer_marks_judge_decisions_and_cache_hits(tmp_path: Path) -> None:
    trajs = [make_trajectory([answer_turn("ok", "a small red car")], answer="red", traj_id="a"),
             make_trajectory([answer_turn("ok", "B")], answer="B", traj_id="b")]
    with FakeOpenAI(grade, model="judge-x") as fake:
        cfg = RewardConfig(judge=config(fake))
        first = RewardScorer(cfg, Judge(cfg.judge, JudgeCache(tmp_path / "c.sqlite"))).score(trajs)
        assert [b.decided_by for b in first] == ["judge", "rule"] and first[0].judge_model == "judge-x"
        assert first[0].score == 1.0 and not first[0].judge_cached and first[0].prompt_version.startswith("v1/answer-")
        second = RewardScorer(cfg, Judge(cfg.judge, JudgeCache(tmp_path / "c.sqlite"))).score(trajs)
        assert second[0].judge_cached and second[0].score == 1.0 and len(fake.requests) == 1


CHILD = """
import asyncio, sys
from deepeyes_cli.rewards.cache import JudgeCache
from deepeyes_cli.rewards.config import JudgeConfig
from deepeyes_cli.rewards.judge import Judge, JudgeRequest
url, cache, start, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
judge = Judge(JudgeConfig(base_url=url, api_key="x", model="m", concurrency=8), JudgeCache(cache))
reqs = [JudgeRequest("n?", str(i), str(i)) for i in range(start, start + n)]
res = asyncio.run(judge.judge_many(reqs))
assert all(r.correct for r in res), [r.error for r in res if not r.correct]
print(judge.stats.calls, judge.stats.cache_hits)
"""


def test_cache_is_shared_across_processes(tmp_path: Path) -> None:
    cache = tmp_path / "shared.sqlite"
    with FakeOpenAI(grade) as fake:
        # Two processes write the same cache at the same time …
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, fake.base_url, str(cache), str(start), "40"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for start in (0, 40)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
        assert [o.split() for o, _ in outs] == [["40", "0"], ["40", "0"]]
        assert len(JudgeCache(cache)) == 80 and len(fake.requests) == 80
        # … and a third one finds every verdict there.
        out = subprocess.run([sys.executable, "-c", CHILD, fake.base_url, str(cache), "0", "80"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["0", "80"] and len(fake.requests) == 80


OPENER = """
import sys, time
from pathlib import Path
from deepeyes_cli.rewards.cache import JudgeCache
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
cache = JudgeCache(sys.argv[1])
cache.put_many([(sys.argv[3], True, "m", "v1", "q", "g", "p", None, None, None)])
"""


def test_many_processes_can_create_the_cache_at_once(tmp_path: Path) -> None:
    # RL reward workers start together on a fresh cache; switching it to WAL made some of them
    # fail at once with "database is locked" instead of waiting their turn.
    for trial in range(3):
        cache, go = tmp_path / f"new{trial}.sqlite", tmp_path / f"go{trial}"
        procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(cache), str(go), f"k{i}"],
                                  stderr=subprocess.PIPE, text=True) for i in range(8)]
        time.sleep(0.5)  # let them reach the starting line; a late one still has to open beside the others
        go.touch()
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), [e for e in errors if e][:1]
        assert len(JudgeCache(cache)) == 8
