"""The reward breakdown: weights, the search adjustment, per-data_source dispatch, unjudged."""

from __future__ import annotations

import pytest

from deepeyes_cli.agent.trajectory import Trajectory
from deepeyes_cli.recipe.loader import load_recipe
from deepeyes_cli.rewards.config import RewardConfig
from deepeyes_cli.rewards.reward import RewardBreakdown, RewardScorer
from deepeyes_cli.rewards.synthetic import answer_turn, code_turn, make_trajectory, search_turn

CODE = code_turn("zoom", "print(1)")
SEARCH = search_turn("look it up", "tallest tower")


def score(traj: Trajectory, config: RewardConfig | None = None) -> RewardBreakdown:
    return RewardScorer(config or RewardConfig()).score_by_rules(traj)


# The original's formula: 0.8·acc·(1 − p) + 0.2·format, p = 0.1 after a search on `search` data.
@pytest.mark.parametrize(("source", "turns", "answer", "expected"), [
    ("perception", [CODE, answer_turn("ok", "B")], "B", 1.0),
    ("perception", [CODE, answer_turn("ok", "C")], "B", 0.2),
    ("perception", [SEARCH, answer_turn("ok", "B")], "B", 1.0),  # no search adjustment outside `search`
    ("search", [SEARCH, answer_turn("ok", "B")], "B", 0.8 * 0.9 + 0.2),
    ("search", [CODE, answer_turn("ok", "B")], "B", 1.0),
    ("search", [SEARCH, answer_turn("ok", "C")], "B", 0.2),
    ("reason", [CODE, answer_turn("ok", "\\frac{1}{2}")], "0.5", 1.0),
    ("perception", [CODE, "<think>ok</think> B"], "B", 0.0),
    ("vstar-test", ["<think>ok</think><answer>B</answer><answer>"], "B", 1.0),  # accuracy only
])
def test_score_reproduces_the_original_weights(source: str, turns: list[str], answer: str, expected: float) -> None:
    b = score(make_trajectory(turns, answer=answer, data_source=source))
    assert b.score == pytest.approx(expected)
    assert b.decided_by == "rule" and not b.unjudged


def test_breakdown_names_its_parts() -> None:
    b = score(make_trajectory([SEARCH, answer_turn("ok", "The answer is (B).")], answer="B", data_source="search"))
    assert (b.accuracy, b.format, b.penalties) == (1.0, 1.0, {"search": 0.1})
    assert b.rule == "choice_letter" and b.prediction == "The answer is (B)." and b.source_rule == "search"
    assert b.weights == {"accuracy": 0.8, "format": 0.2}


def test_over_long_answer_scores_zero_without_the_judge() -> None:
    long_right = "B. " + "because " * 60
    b = score(make_trajectory([answer_turn("ok", long_right)], answer="B", data_source="perception"))
    assert (b.score, b.accuracy, b.format, b.rule) == (0.0, 0.0, 0.0, "answer_too_long")
    assert [v.rule for v in b.violations] == ["answer_too_long"]
    b = score(make_trajectory([answer_turn("ok", long_right)], answer="B", data_source="reason"))
    assert b.accuracy == 1.0 and b.format == 1.0  # `reason` has no length limit


def test_missing_answer_is_wrong_not_unjudged() -> None:
    b = score(make_trajectory([CODE, CODE], answer="B"))
    assert (b.accuracy, b.format, b.rule, b.decided_by) == (0.0, 0.0, "no_answer", "rule")


def test_undecided_answer_without_a_judge_is_unjudged_never_zero() -> None:
    b = score(make_trajectory([answer_turn("ok", "a small red car")], answer="red"))
    assert b.unjudged and b.score is None and b.accuracy is None and b.decided_by == "unjudged"
    assert b.format == 1.0 and b.unjudged_reason


def test_rollout_that_failed_in_the_backend_is_unjudged_not_punished() -> None:
    traj = make_trajectory([CODE], answer="B")
    traj.end_reason, traj.metadata["error"] = "error", "vLLM engine died"
    b = score(traj)
    assert b.unjudged and b.score is None and "vLLM engine died" in (b.unjudged_reason or "")


def test_sample_without_ground_truth_is_unjudged() -> None:
    b = score(make_trajectory([answer_turn("ok", "B")], answer=None))
    assert b.unjudged and "ground-truth" in (b.unjudged_reason or "")


def test_matching_modes() -> None:
    traj = make_trajectory([answer_turn("ok", "B")], answer="B")
    prep = RewardScorer(RewardConfig(matching="judge")).prepare(traj)
    assert prep.request is not None and prep.request.prediction == "B"  # the original: judge everything
    traj = make_trajectory([answer_turn("ok", "a red car")], answer="red")
    b = score(traj, RewardConfig(matching="rules"))
    assert b.unjudged and "rules" in (b.unjudged_reason or "")


def test_reason_data_asks_the_math_prompt() -> None:
    prep = RewardScorer(RewardConfig()).prepare(
        make_trajectory([answer_turn("ok", "about three halves")], answer="3/2", data_source="reason"))
    assert prep.request is not None and prep.request.prompt == "math"


def test_dispatch_exact_glob_and_fallback() -> None:
    cfg = RewardConfig(sources={"browsecomp-*": {"accuracy_weight": 1.0, "format_weight": 0.0}})
    assert cfg.rule_for("browsecomp-zh")[0] == "browsecomp-*"
    assert cfg.rule_for("search")[1].search_penalty  # defaults kept beside the new entry
    assert cfg.rule_for("mmsearch-test")[0] == "*"
    b = score(make_trajectory(["<think>x</think> B"], answer="B", data_source="browsecomp-en"), cfg)
    assert b.score == 0.0 and b.format == 0.0
    b = score(make_trajectory([answer_turn("x", "B")], answer="B", data_source="browsecomp-en"), cfg)
    assert b.score == 1.0


def test_recipe_override_changes_one_field_of_a_source() -> None:
    r = load_recipe("tiny", ["reward.sources.search.search_penalty=false"]).recipe.reward
    assert r.sources["search"].search_penalty is False and r.sources["search"].tool_call_tags is True
    assert set(r.sources) >= {"perception", "reason", "search", "vstar-test", "*"}
    again = RewardConfig.model_validate(r.model_dump())  # a saved recipe loads back the same
    assert again == r


def test_tags_inside_tool_results_do_not_change_the_verdict() -> None:
    page = "<tool_response>\nA page: <think> and <answer>Lyon</answer> and </code>\n</tool_response>"
    traj = make_trajectory([SEARCH, answer_turn("The page helps.", "Paris")], answer="Paris", data_source="search",
                           observations=[page])
    b = score(traj)
    assert b.format == 1.0 and b.prediction == "Paris" and b.accuracy == 1.0


def test_breakdown_round_trips_through_the_trajectory_record() -> None:
    traj = make_trajectory([answer_turn("ok", "B")], answer="B")
    traj.reward = score(traj).model_dump(mode="json")
    back = Trajectory.model_validate_json(traj.model_dump_json())
    assert RewardBreakdown.model_validate(back.reward).score == 1.0


def test_strict_format_charges_the_extra_rules() -> None:
    turn = answer_turn("ok", "B") + "\nI hope this helps!"
    assert score(make_trajectory([turn], answer="B")).format == 1.0
    b = score(make_trajectory([turn], answer="B"), RewardConfig(strict_format=True))
    assert b.format == 0.0 and [v.rule for v in b.violations] == ["text_after_answer", "untagged_text"]


def test_or_in_a_math_ground_truth_is_one_answer_not_alternatives() -> None:
    # RealX-Bench writes acceptable alternatives as "A or B"; a math answer "2 or 3" is a solution set.
    traj = make_trajectory([answer_turn("ok", "3")], answer="2 or 3", data_source="perception")
    assert score(traj).accuracy == 1.0
    b = score(make_trajectory([answer_turn("ok", "3")], answer="2 or 3", data_source="reason"))
    assert b.accuracy is None and b.unjudged  # half the solutions: only the judge (math prompt) may decide
    b = score(make_trajectory([answer_turn("ok", "2 or 3")], answer="2 or 3", data_source="reason"))
    assert b.accuracy == 1.0
