"""The tiny RL task's scripted policy with ``seed``: its draws depend on each question's image
and turn, not on the order concurrent trajectories ask, so SFT data is the same every run."""

from __future__ import annotations

import random

from deepeyes_cli.policy.base import Conversation
from deepeyes_cli.protocol.messages import ChatMessage
from deepeyes_cli.testing.rl_task import CODE, QUESTION, make_image, scripted_turn


def _conversations(n: int) -> list[Conversation]:
    rng = random.Random(11)
    return [Conversation([ChatMessage("user", [make_image(1 + i % 2, rng), QUESTION])]) for i in range(n)]


def test_first_turns_do_not_depend_on_the_order_they_are_asked_in() -> None:
    convs = _conversations(40)
    forward = [scripted_turn(p_tool=0.5, seed=3)(c) for c in convs]
    backward = [scripted_turn(p_tool=0.5, seed=3)(c) for c in reversed(convs)][::-1]
    assert forward == backward
    tool = sum(CODE in t for t in forward)
    assert 8 <= tool <= 32  # a coin per image, not one draw for all
    other_seed = [scripted_turn(p_tool=0.5, seed=4)(c) for c in convs]
    assert other_seed != forward


def test_answer_turn_draws_apart_from_the_first_turn() -> None:
    # p_copy's draw must not reuse the first turn's: keyed alike, "called the tool" (draw < p_tool)
    # would imply "copies" (the same draw < p_copy) for p_copy >= p_tool
    convs = _conversations(60)
    copied = 0
    for c in convs:
        script = scripted_turn(p_tool=0.5, p_copy=0.5, seed=5, guess="9")
        first = script(c)
        if CODE not in first:
            continue
        c.messages += [ChatMessage("assistant", [first]),
                       ChatMessage("user", ["Code execution result:\nstdout:\n```\n" + "7" * 50 + "\n```\n"])]
        copied += "<answer>7</answer>" in script(c)
    assert 0 < copied < sum(1 for c in convs if len(c.messages) > 1)
