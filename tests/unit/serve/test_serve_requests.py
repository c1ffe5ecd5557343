"""The serve package's request handling without a server: parsing and its 400s, caps on
per-request limits, image decoding, the turn text that streams."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import pytest
from PIL import Image

from deepeyes_cli.agent.records import ImageRefs
from deepeyes_cli.policy.scripted import ScriptedPolicy
from deepeyes_cli.recipe.loader import load_recipe
from deepeyes_cli.serve import stream
from deepeyes_cli.serve.inputs import load_task
from deepeyes_cli.serve.service import AgentService
from deepeyes_cli.serve.wire import ApiError, parse_request


def _url(image: Image.Image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def _body(*urls: str, **extra: object) -> bytes:
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return json.dumps({"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": "q?"}]}],
                       **extra}).encode()


@pytest.mark.parametrize(("raw", "expected"), [
    (b"{not json", "the body is not JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (_body(n=2), "n: Input should be less than or equal to 1"),
    (_body(max_turns=0), "max_turns: Input should be greater than or equal to 1"),
    (_body(stream_options={"include_usage": True, "x": 1}), "stream_options.x: Extra inputs"),
    (_body(max_token=5), "did you mean 'max_tokens'?"),
    (b'{"messages": []}', "messages: List should have at least 1 item"),
])
def test_bad_bodies_say_what_is_wrong(raw: bytes, expected: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_request(raw)
    assert err.value.status == 400 and expected in err.value.message, err.value.message


def test_per_request_limits_are_capped_by_the_server() -> None:
    recipe = load_recipe("tiny", ["serve.max_turns=3", "serve.max_tokens=50", "serve.max_temperature=1.0"]).recipe
    service = AgentService(recipe, ScriptedPolicy([]))
    cfg, warnings = service.agent_config(parse_request(_body(max_turns=9, max_tokens=20, temperature=1.5, seed=7)))
    assert (cfg.max_turns, cfg.max_tokens_per_turn, cfg.temperature, cfg.seed) == (3, 20, 1.0, 7)
    assert len(warnings) == 2 and warnings[0].startswith("max_turns=9")
    cfg, warnings = service.agent_config(parse_request(_body()))  # defaults: the agent's, within the caps
    assert (cfg.max_turns, cfg.max_tokens_per_turn, cfg.temperature) == (3, 50, 0.0) and not warnings
    assert recipe.agent.max_turns == 4  # the recipe itself is untouched


def test_images_are_decoded_downscaled_and_an_unchanged_png_is_kept_as_uploaded() -> None:
    cfg = load_recipe("tiny", []).recipe.serve
    small = Image.new("RGB", (40, 40), (1, 2, 3))
    big_jpeg = Image.new("RGB", (3000, 2000), (200, 10, 10))
    req = parse_request(_body(_url(small), _url(big_jpeg, "JPEG")))
    task, warnings = asyncio.run(load_task(req, cfg, 100_000, None, "r1"))
    a, b = task.images
    assert a.size == (40, 40) and b.width * b.height <= 100_000 and abs(b.width / b.height - 1.5) < 0.05
    assert ImageRefs().ref(a).b64 == _url(small).split(",", 1)[1]  # the upload itself, not re-encoded
    assert task.sample.question == "q?" and task.sample.metadata["request_id"] == "r1" and not warnings


def test_history_and_system_prompts_are_reported_not_silently_dropped() -> None:
    cfg = load_recipe("tiny", []).recipe.serve
    url = _url(Image.new("RGB", (40, 40)))
    req = parse_request(json.dumps({"messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "a"}]},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "and the colour?"}]}).encode())
    task, warnings = asyncio.run(load_task(req, cfg, 100_000, None, "r2"))
    assert task.sample.question == "and the colour?" and len(task.images) == 1
    assert any("system messages" in w for w in warnings) and any("assistant turns" in w for w in warnings)


def test_turn_text_for_streaming() -> None:
    text = stream.assistant_text("<think>crop it</think>\n<code>\n```python\nprint(1)\n```\n</code>", 0)
    assert text == "[turn 1]\ncrop it\n```python\nprint(1)\n```\n"
    shown = stream.observation_text("Code execution result:\nstdout:\n```\n1\n```\n\nstderr:\n```\n\n```", "code", 2)
    assert shown == "[code result]\n1\n[2 images]\n"
    assert stream.assistant_text("<think>so</think>\n<answer>7</answer>", 1) == "[turn 2]\nso\n"


def test_image_urls_are_fetched_only_when_allowed() -> None:
    import httpx
    from fastapi import FastAPI, Response

    from deepeyes_cli.testing.servers import BackgroundServer

    png = base64.b64decode(_url(Image.new("RGB", (48, 36), (9, 9, 9))).split(",", 1)[1])
    site = FastAPI()

    @site.get("/cat.png")
    def cat() -> Response:
        return Response(png, media_type="image/png")

    recipe = load_recipe("tiny", ["serve.allow_image_urls=true"]).recipe

    async def go(url: str) -> Image.Image:
        async with httpx.AsyncClient() as http:
            task, _ = await load_task(parse_request(_body(url)), recipe.serve, 100_000, http, "r3")
            return task.images[0]

    with BackgroundServer(site) as server:
        assert asyncio.run(go(server.url + "/cat.png")).size == (48, 36)
        with pytest.raises(ApiError, match="answered HTTP 404"):
            asyncio.run(go(server.url + "/dog.png"))
