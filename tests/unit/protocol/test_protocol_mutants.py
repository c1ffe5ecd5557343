"""Parser and renderer details a mutant could break unnoticed (found by `make mutation`)."""

from __future__ import annotations

from deepeyes_cli.protocol.parser import extract_answer, extract_code


def test_the_answer_after_the_last_think_block_wins() -> None:
    text = "<think>a</think><answer>1</answer><think>b</think><answer>2</answer>"
    assert extract_answer(text) == "2"
    text = "<think>x</think> <answer> first </answer><think>y</think>\n<answer>second</answer> <answer>third</answer>"
    assert extract_answer(text) == "second"  # the first after the last </think>


def test_without_an_answer_after_the_last_think_the_last_answer_anywhere() -> None:
    assert extract_answer("<answer>1</answer><answer>2</answer><think>late</think>") == "2"
    assert extract_answer("<answer> only </answer>") == "only"
    assert extract_answer("<think>no answer</think>") is None
    assert extract_answer("") is None


def test_extract_code_takes_the_last_fence() -> None:
    assert extract_code("```python\na = 1\n```\ntext\n```python\nb = 2\n```") is not None
    assert "b = 2" in (extract_code("```python\na = 1\n```\n```python\nb = 2\n```") or "")
    assert extract_code("no fence") is None
