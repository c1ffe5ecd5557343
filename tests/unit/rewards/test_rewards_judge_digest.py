"""Editing a judge prompt's wording never serves verdicts cached under the old wording."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from deepeyes_cli.rewards import judge as judge_module
from deepeyes_cli.rewards.cache import JudgeCache
from deepeyes_cli.rewards.config import JudgeConfig
from deepeyes_cli.rewards.judge import Judge, JudgeRequest


def _judge(tmp_path: Path) -> Judge:
    # Nothing listens there: whatever is not served from the cache comes back unjudged.
    return Judge(JudgeConfig(base_url="http://127.0.0.1:9/v1", model="m", max_retries=0),
                 JudgeCache(tmp_path / "j.sqlite"))


def _cached(judge: Judge, req: JudgeRequest) -> bool:
    return asyncio.run(judge.judge_many([req]))[0].cached


@pytest.mark.parametrize("prompt", ["answer", "math"])
def test_an_edited_prompt_text_misses_the_old_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      prompt: str) -> None:
    req = JudgeRequest("Q?", "Paris", "paris, france", prompt)  # type: ignore[arg-type]
    judge = _judge(tmp_path)
    before = judge.prompt_version(req.prompt)
    judge.remember("m", [(req, True)])
    assert _cached(judge, req)
    monkeypatch.setitem(judge_module.SYSTEM_PROMPTS, prompt,
                        judge_module.SYSTEM_PROMPTS[prompt] + "\n- Be strict about units.")
    assert judge.prompt_version(req.prompt) != before
    assert not _cached(judge, req)
    monkeypatch.undo()  # the old wording again: its verdict is still there
    assert judge.prompt_version(req.prompt) == before and _cached(judge, req)


def test_an_edited_user_template_misses_the_old_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    req = JudgeRequest("Q?", "Paris", "paris, france")
    judge = _judge(tmp_path)
    judge.remember("m", [(req, True)])
    monkeypatch.setattr(judge_module, "USER_TEMPLATE", judge_module.USER_TEMPLATE + "\nThink first.")
    assert not _cached(judge, req)


def test_the_version_names_the_recipe_version_and_the_prompt() -> None:
    judge = Judge(JudgeConfig(prompt_version="v7"))
    answer, math = judge.prompt_version("answer"), judge.prompt_version("math")
    assert answer.startswith("v7/answer-") and math.startswith("v7/math-") and answer[-8:] != math[-8:]
