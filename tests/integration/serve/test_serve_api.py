"""`deepeyes serve` through the official openai client (sync, async, streaming), with a
scripted policy and the real bwrap sandbox: answers, streamed turns, auth, the 429 path,
bad requests, a client that leaves mid-stream, saved trajectories."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import openai
import pytest
from serve_helpers import Served, data_url, needs_bwrap, question

pytestmark = [needs_bwrap, pytest.mark.slow]

FAST = data_url(32, 32)  # the scripted cell does not sleep
SLOW = data_url(332)  # it sleeps 3 s


def _ask(server: Served, url: str = FAST, **kw: Any) -> Any:
    return server.openai().chat.completions.create(model="deepeyes", messages=question(url), **kw)


def test_auth_is_required_everywhere_but_health(scripted_server: Served) -> None:
    with pytest.raises(openai.AuthenticationError):
        scripted_server.openai(key=None).models.list()
    with pytest.raises(openai.AuthenticationError, match="API key"):
        scripted_server.openai(key="sk-wrong").chat.completions.create(model="deepeyes", messages=question(FAST))
    assert [m.id for m in scripted_server.openai().models.list().data] == ["deepeyes"]
    assert httpx.get(scripted_server.url + "/metrics").status_code == 401
    metrics = httpx.get(scripted_server.url + "/metrics", headers={"Authorization": f"Bearer {scripted_server.key}"})
    assert metrics.status_code == 200 and "deepeyes_serve_in_flight" in metrics.text
    assert scripted_server.health()["status"] == "ok"


def test_sync_completion_runs_the_loop_server_side(scripted_server: Served) -> None:
    out = _ask(scripted_server)
    msg = out.choices[0].message
    assert msg.content == "42" and out.choices[0].finish_reason == "stop"
    assert getattr(msg, "reasoning_content", None) is None  # only when asked
    extra = out.model_extra["deepeyes"]
    traj = extra["trajectory"]
    assert traj["end_reason"] == "answered" and traj["turns"][0]["tool"] == "code"
    assert "(32, 32)" in traj["messages"][3]["content"][0]["text"]  # the sandbox really ran the cell
    assert out.usage.model_extra["tool_calls"] == 1 and out.usage.model_extra["tool_seconds"] > 0
    assert out.usage.completion_tokens > 0 and out.usage.model_extra["turns"] == 2

    asked = _ask(scripted_server, extra_body={"include_reasoning": True})
    reasoning = asked.choices[0].message.reasoning_content
    assert "[turn 1]" in reasoning and "time.sleep" in reasoning and "[code result]\n(32, 32)" in reasoning


def test_per_request_limits_within_caps(scripted_server: Served) -> None:
    one = _ask(scripted_server, extra_body={"max_turns": 1})
    assert one.choices[0].finish_reason == "length" and one.usage.model_extra["tool_calls"] == 0
    assert one.model_extra["deepeyes"]["end_reason"] == "max_turns"
    capped = _ask(scripted_server, max_tokens=10_000, temperature=5.0)
    warnings = capped.model_extra["deepeyes"]["warnings"]
    assert any("max_tokens=10000" in w and "64 is used" in w for w in warnings), warnings
    assert any(w.startswith("temperature=5.0") for w in warnings), warnings


def test_stream_sync_shows_turns_as_they_happen(scripted_server: Served) -> None:
    stream = scripted_server.openai().chat.completions.create(
        model="deepeyes", messages=question(FAST), stream=True, stream_options={"include_usage": True})
    pieces: list[tuple[str, str]] = []
    finish, usage, extra = None, None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            if getattr(delta, "reasoning_content", None):
                pieces.append(("reasoning", delta.reasoning_content))
            if delta.content:
                pieces.append(("content", delta.content))
            if choice.finish_reason:
                finish, extra = choice.finish_reason, chunk.model_extra.get("deepeyes")
    kinds = [k for k, _ in pieces]
    assert kinds == ["reasoning", "reasoning", "reasoning", "content"], pieces
    assert pieces[0][1].startswith("[turn 1]") and "```python" in pieces[0][1]
    assert pieces[1][1].startswith("[code result]") and "(32, 32)" in pieces[1][1]
    assert pieces[3] == ("content", "42") and finish == "stop"
    assert usage is not None and usage.model_extra["tool_calls"] == 1
    assert extra is not None and extra["end_reason"] == "answered"


def test_async_client_stream_and_plain(scripted_server: Served) -> None:
    async def go() -> tuple[str, str]:
        async with scripted_server.async_openai() as client:
            plain = await client.chat.completions.create(model="deepeyes", messages=question(FAST))
            stream = await client.chat.completions.create(model="deepeyes", messages=question(FAST), stream=True)
            content = ""
            async for chunk in stream:
                for choice in chunk.choices:
                    content += choice.delta.content or ""
            return plain.choices[0].message.content or "", content

    assert asyncio.run(go()) == ("42", "42")


@pytest.mark.parametrize(("messages", "extra", "expected"), [
    (question(), {}, "no image in the request"),
    (question("data:image/png;base64,iVBORw0KG!!!not-base64"), {}, "base64 is corrupt"),
    (question("data:image/png;base64,aGVsbG8gd29ybGQ="), {}, "image 1 is not an image"),
    (question(FAST, FAST, FAST), {}, "3 images sent; this server takes at most 2"),
    (question(data_url(1500, 1000)), {}, "image 1 is 1500x1000 = 1.5 megapixels"),
    (question(FAST), {"temprature": 0.5}, "unknown field 'temprature' (did you mean 'temperature'?)"),
    (question(FAST), {"tools": []}, "'tools' is not supported"),
    (question("http://127.0.0.1:9/cat.png"), {}, "image URLs are not fetched by this server"),
    ([{"role": "assistant", "content": "hi"}], {}, "the last message must be the user's question"),
])
def test_bad_requests_are_400_and_the_server_stays_up(scripted_server: Served, messages: list[Any],
                                                      extra: dict[str, Any], expected: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        scripted_server.openai().chat.completions.create(model="deepeyes", messages=messages, extra_body=extra)
    assert err.value.status_code == 400 and expected in err.value.message, err.value.message
    assert _ask(scripted_server).choices[0].message.content == "42"


def test_request_too_large_is_400(scripted_server: Served) -> None:
    resp = httpx.post(scripted_server.base_url + "/chat/completions", content=b"{" + b" " * 5_000_000 + b"}",
                      headers={"Authorization": f"Bearer {scripted_server.key}"}, timeout=30)
    assert resp.status_code == 400 and "larger than 4 MB" in resp.json()["error"]["message"]


def test_full_queue_is_429_with_retry_after(scripted_server: Served) -> None:
    results: dict[str, Any] = {}

    def slow(name: str) -> None:
        results[name] = _ask(scripted_server, SLOW).choices[0].message.content

    first = threading.Thread(target=slow, args=("first",))
    first.start()
    scripted_server.wait_for(lambda h: h["in_flight"] == 1)
    second = threading.Thread(target=slow, args=("second",))  # waits in the queue of one
    second.start()
    scripted_server.wait_for(lambda h: h["queued"] == 1)
    with pytest.raises(openai.RateLimitError) as err:
        _ask(scripted_server)
    assert err.value.response.headers["retry-after"] == "5" and "busy" in err.value.message
    first.join(30)
    second.join(30)
    assert results == {"first": "42", "second": "42"}  # the queued one ran once the slot freed


def test_disconnect_mid_stream_cancels_and_frees_the_session(scripted_server: Served) -> None:
    before = scripted_server.health()["cancelled"]
    stream = scripted_server.openai().chat.completions.create(model="deepeyes", messages=question(SLOW),
                                                              stream=True)
    for chunk in stream:  # the code turn arrives before its 3 s cell runs
        if chunk.choices and getattr(chunk.choices[0].delta, "reasoning_content", None):
            break
    busy = scripted_server.wait_for(lambda h: h["sandbox"]["sessions"] == 1)
    assert busy["in_flight"] == 1
    t0 = time.monotonic()
    stream.close()
    idle = scripted_server.wait_for(lambda h: h["in_flight"] == 0 and h["sandbox"]["sessions"] == 0, timeout=10)
    assert idle["cancelled"] == before + 1
    assert time.monotonic() - t0 < 2.5, "the trajectory was not cancelled: it ran its 3 s cell to the end"
    assert _ask(scripted_server).choices[0].message.content == "42"


def test_saved_trajectories_are_readable_by_view(scripted_server: Served, tmp_path: Any) -> None:
    from deepeyes_cli.agent.trajectory import read_jsonl
    from deepeyes_cli.agent.viewer import write_html

    answer = _ask(scripted_server)
    wanted = answer.model_extra["deepeyes"]["trajectory_id"]
    saved = scripted_server.saved  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while not (saved.exists() and wanted in saved.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    records = {t.id: t for t in read_jsonl(saved)}
    assert records[wanted].final_answer == "42" and records[wanted].sample.images[0].path
    assert write_html([saved], tmp_path / "page.html") == len(records)


def test_ask_url_runs_the_loop_on_the_server(scripted_server: Served, tmp_path: Any, cli: Any) -> None:
    from PIL import Image

    from deepeyes_cli.agent.trajectory import read_jsonl

    photo = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(photo)
    saved = tmp_path / "asked.jsonl"
    out = cli("ask", str(photo), "What size is it?", "--url", scripted_server.base_url, "--answer", "42",
              "--save", str(saved), cwd=tmp_path, env={"OPENAI_API_KEY": scripted_server.key})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"
    assert "code result" in out.stderr and "(32, 32)" in out.stderr and "end: answered" in out.stderr
    [traj] = list(read_jsonl(saved))
    assert traj.sample.answer == "42" and traj.backend == "scripted" and traj.turns[0].tool == "code"
    assert traj.sample.images[0].path and (saved.parent / traj.sample.images[0].path).is_file()

    wrong = cli("ask", str(photo), "q?", "--url", scripted_server.base_url, cwd=tmp_path,
                env={"OPENAI_API_KEY": "sk-wrong"})
    assert wrong.returncode == 1 and "error:" in wrong.stderr


def test_disconnect_without_streaming_cancels_too(scripted_server: Served) -> None:
    before = scripted_server.health()["cancelled"]
    with pytest.raises(openai.APITimeoutError):  # the client gives up and closes the connection
        scripted_server.openai(timeout=1.0).chat.completions.create(model="deepeyes", messages=question(SLOW))
    idle = scripted_server.wait_for(lambda h: h["in_flight"] == 0 and h["sandbox"]["sessions"] == 0, timeout=10)
    assert idle["cancelled"] == before + 1
