"""The fake OpenAI-compatible server speaks the wire format the official client expects."""

from __future__ import annotations

import openai
import pytest

from deepeyes_cli.testing.fake_openai import FakeOpenAI, Reply


def test_official_client_round_trip_with_stop_and_stream() -> None:
    def respond(body: dict) -> str:
        return "echo: " + body["messages"][-1]["content"] + " </code> tail"

    with FakeOpenAI(respond, model="judge") as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0)
        assert [m.id for m in client.models.list()] == ["judge"]
        r = client.chat.completions.create(model="judge", messages=[{"role": "user", "content": "hi"}],
                                           stop=["</code>"])
        assert r.choices[0].message.content == "echo: hi " and r.choices[0].finish_reason == "stop"
        chunks = client.chat.completions.create(model="judge", messages=[{"role": "user", "content": "yo"}],
                                                stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "echo: yo </code> tail"
        assert len(fake.requests) == 2


def test_injected_failures_then_success_and_auth() -> None:
    with FakeOpenAI(lambda b: "ok", fail_first=[429, 500], api_key="k") as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=3)
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
        assert r.choices[0].message.content == "ok" and len(fake.requests) == 3
        bad = openai.OpenAI(base_url=fake.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])


def test_reply_controls_status_and_delay() -> None:
    with FakeOpenAI(lambda b: Reply("slow", delay_s=2.0)) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0, timeout=0.3)
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
