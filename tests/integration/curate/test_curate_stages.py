"""The curate stages on generated samples with real images: difficulty and tool-benefit with a
base-model stand-in, synthesis with the oracle teacher through the real sandbox and search
(judge: the fake OpenAI server), then split and exports checked against their consumers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from curate_helpers import KindPolicy, judge_responder

from deepeyes_cli.agent.trajectory import Trajectory
from deepeyes_cli.curate.export import export
from deepeyes_cli.curate.ingest import ingest
from deepeyes_cli.curate.sampling import difficulty, tool_benefit
from deepeyes_cli.curate.split import split
from deepeyes_cli.curate.store import DataDir
from deepeyes_cli.curate.synthesize import read_kept, synthesize
from deepeyes_cli.recipe.loader import load_recipe
from deepeyes_cli.testing.fake_openai import FakeOpenAI

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

N = 24


@pytest.fixture(scope="module")
def judge() -> Any:
    with FakeOpenAI(judge_responder, model="fake-judge") as fake:
        yield fake


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, judge: FakeOpenAI) -> dict[str, Any]:
    """One run of every stage on N generated samples (shared by the tests below)."""
    root = tmp_path_factory.mktemp("curate")
    recipe = load_recipe("tiny", [
        f"curate.synthetic.n={N}", "curate.synthetic.size=160", "curate.difficulty.k=4",
        "curate.difficulty.max_correct=2", "curate.tool_benefit.k=2", "curate.difficulty.tools=[]",
        "curate.split.unsolved_to_rl=0", "curate.split.val_fraction=0.25", "reward.matching=judge",
        f"reward.judge.base_url={judge.base_url}", f"reward.cache_path={root / 'judge.sqlite'}",
        "agent.concurrency=8", f"run.cache_dir={root / 'cache'}"]).recipe
    data = DataDir(root / "data")
    ingest(["builtin:synthetic"], data.path, recipe.curate)
    samples = data.load_samples()
    policy = KindPolicy(samples, data.path)
    out: dict[str, Any] = {"recipe": recipe, "data": data, "samples": samples, "policy": policy}
    out["difficulty"] = asyncio.run(difficulty(recipe, data, lambda: policy))
    out["tool_benefit"] = asyncio.run(tool_benefit(recipe, data, lambda: policy))
    out["synthesize"] = asyncio.run(synthesize(recipe, data))
    out["split"] = split(recipe, data)
    out["export"] = export(recipe, data)
    return out


def _kind(p: dict[str, Any], sid: str) -> str:
    return next(s.metadata["synthetic"]["kind"] for s in p["samples"] if s.id == sid)


def test_difficulty_keeps_at_most_max_correct_and_stores_rollouts(pipeline: dict[str, Any]) -> None:
    data: DataDir = pipeline["data"]
    rows = data.read_jsonl(data.path / "difficulty" / "questions.jsonl")
    assert len(rows) == N and all(r["k"] == 4 for r in rows)
    by_kind: dict[str, list[int]] = {}
    for r in rows:
        by_kind.setdefault(_kind(pipeline, r["id"]), []).append(r["correct"])
        assert r["kept"] == (r["correct"] <= 2)
    assert set(by_kind["corner_number"]) == {4}  # always right: too easy, dropped
    assert set(by_kind["landmark_year"]) == set(by_kind["product"]) == {0}  # no tools offered here
    s = pipeline["difficulty"]
    assert s["kept"] == sum(r["kept"] for r in rows) and sum(s["histogram"].values()) == N
    # rollouts are trajectory records, scored by the judge (matching=judge)
    shard = next((data.path / "difficulty").glob("batch-*/shard-*.jsonl"))
    traj = Trajectory.model_validate_json(shard.read_text().splitlines()[0])
    assert traj.reward is not None and traj.reward["decided_by"] == "judge"


def test_tool_benefit_measures_the_gain_from_tools(pipeline: dict[str, Any]) -> None:
    data: DataDir = pipeline["data"]
    rows = data.read_jsonl(data.path / "tool_benefit" / "questions.jsonl")
    kept = {r["id"] for r in data.read_jsonl(data.path / "difficulty" / "questions.jsonl") if r["kept"]}
    assert {r["id"] for r in rows} == kept
    for r in rows:
        kind = _kind(pipeline, r["id"])
        assert r["acc_no_tools"] == 0.0
        assert r["delta"] == r["acc_tools"] - r["acc_no_tools"]
        assert r["tools_help"] == (r["delta"] >= 0.125)
        if kind != "product":
            assert r["acc_tools"] == 0.0
    assert any(r["tools_help"] for r in rows)


def test_synthesis_keeps_correct_tool_using_trajectories(pipeline: dict[str, Any], judge: FakeOpenAI) -> None:
    data: DataDir = pipeline["data"]
    kept = read_kept(data)
    s = pipeline["synthesize"]
    assert s["complete"] and s["kept"] == len(kept) > 0
    for t in kept:
        assert t.end_reason == "answered" and t.reward and t.reward["accuracy"] == 1.0
        assert t.final_answer == t.sample.answer
        assert any(turn.tool == "code" for turn in t.turns)
        assert all(turn.tool_ok for turn in t.turns if turn.tool)
        # images of the loop (zoomed crops) are files next to the stage's records
        for ref in t.image_refs():
            assert ref.path and (data.path / "synthesize" / ref.path).is_file()
    kinds = {_kind(pipeline, t.sample.id) for t in kept}
    assert kinds == {"count_shapes", "landmark_year", "product"} - ({"product"} - kinds)
    assert any(turn.tool == "search" for t in kept for turn in t.turns)  # landmark_year searches
    assert s["models"]["oracle"]["kept"] == len(kept)


def test_split_routes_solved_with_tools_to_rl_and_unsolved_to_sft(pipeline: dict[str, Any]) -> None:
    data: DataDir = pipeline["data"]
    rl = data.read_jsonl(data.path / "split" / "rl.jsonl") + data.read_jsonl(data.path / "split" / "val.jsonl")
    sft = data.read_jsonl(data.path / "split" / "sft.jsonl")
    tb = {r["id"]: r for r in data.read_jsonl(data.path / "tool_benefit" / "questions.jsonl")}
    assert rl and sft and not ({r["id"] for r in rl} & {r["id"] for r in sft})
    assert all(tb[r["id"]]["acc_tools"] > 0 for r in rl)
    assert all(tb[r["id"]]["acc_tools"] == 0 and r["trajectories"] > 0 for r in sft)
    assert pipeline["split"]["dropped"]["too easy"] == sum(_kind(pipeline, s.id) == "corner_number"
                                                           for s in pipeline["samples"])
    again = split(pipeline["recipe"], data, force=True)
    assert {k: v for k, v in again.items() if k != "skipped"} == \
        {k: v for k, v in pipeline["split"].items() if k != "skipped"}


def test_exports_load_like_their_consumers_and_round_trip(pipeline: dict[str, Any], tmp_path: Path) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    data: DataDir = pipeline["data"]
    ex = data.path / "export"
    # (a) our JSONL
    sft = [Trajectory.model_validate_json(line) for line in (ex / "sft.jsonl").read_text().splitlines()]
    kept = {t.id: t for t in read_kept(data)}
    sft_ids = {r["id"] for r in data.read_jsonl(data.path / "split" / "sft.jsonl")}
    assert sft and {t.sample.id for t in sft} <= sft_ids
    for t in sft:
        orig = kept[t.id]
        assert t.model_dump(exclude={"sample": {"images"}, "messages": True}) == \
            orig.model_dump(exclude={"sample": {"images"}, "messages": True})
        for a, b in zip(t.image_refs(), orig.image_refs(), strict=True):
            assert a.load(ex).tobytes() == b.load(data.path / "synthesize").tobytes()
    # (b) sharegpt, loaded the way LLaMA-Factory loads it: dataset_info.json → load_dataset("json")
    info = json.loads((ex / "sharegpt" / "dataset_info.json").read_text())
    attr = info["deepeyes_sft"]
    assert attr["formatting"] == "sharegpt" and attr["columns"] == {"messages": "messages", "images": "images"}
    ds = datasets.load_dataset("json", data_files=str(ex / "sharegpt" / attr["file_name"]), split="train")
    assert len(ds) == len(sft)
    tags = attr["tags"]
    for row in ds:
        msgs = row["messages"]
        assert msgs[0][tags["role_tag"]] == tags["system_tag"]
        rest = msgs[1:]
        assert len(rest) % 2 == 0
        for i, m in enumerate(rest):  # LLaMA-Factory's converter: user/observation odd, assistant even
            assert m[tags["role_tag"]] == (tags["user_tag"] if i % 2 == 0 else tags["assistant_tag"])
        assert sum(m["content"].count("<image>") for m in msgs) == len(row["images"]) >= 1
        for path in row["images"]:  # relative to the dataset dir (LLaMA-Factory's media_dir)
            assert (ex / "sharegpt" / path).is_file()
        assert rest[-1]["content"].rstrip().endswith("</answer>")
    # (c) verl parquet: column types as verl's RLHFDataset and the original RL code read them
    schema = pq.read_schema(ex / "verl" / "train.parquet")
    assert schema.field("prompt").type == pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    assert schema.field("images").type == pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    assert schema.field("data_source").type == pa.string() and schema.field("env_name").type == pa.string()
    assert schema.field("reward_model").type.get_field_index("ground_truth") >= 0
    assert {"index", "question"} <= {f.name for f in schema.field("extra_info").type}
    table = pq.read_table(ex / "verl" / "train.parquet").to_pylist()
    rl_ids = [r["id"] for r in data.read_jsonl(data.path / "split" / "rl.jsonl")]
    assert [r["extra_info"]["index"] for r in table] == rl_ids
    for r in table:
        assert r["env_name"] == "deepeyes_v2" and r["images"] and r["images"][0]["bytes"][:4] == b"\x89PNG"
        user = r["prompt"][-1]["content"]
        assert user.count("<image>") == len(r["images"]) and r["extra_info"]["question"] in user
    hf = datasets.load_dataset("parquet", data_files=str(ex / "verl" / "train.parquet"), split="train")
    assert hf[0]["images"][0].size == (160, 160)  # decoded as HF Image features
    # round trips: import(export(x)) gives every field and pixel back
    samples = {s.id: s for s in data.load_samples()}
    back = tmp_path / "back"
    ingest([str(ex / "verl" / "train.parquet"), str(ex / "verl" / "val.parquet"),
            str(ex / "sharegpt" / attr["file_name"]), str(ex / "rl.jsonl")], back,
           pipeline["recipe"].curate.model_copy(update={"ingest": pipeline["recipe"].curate.ingest}))
    for path_rows in ("rl.jsonl",):
        assert (ex / path_rows).exists()
    got: dict[str, list[Any]] = {}
    for s in DataDir(back).iter_samples():
        got.setdefault(s.id, []).append(s)
    bad = DataDir(back).read_jsonl(back / "ingest" / "bad_rows.jsonl")
    assert all(b["kind"] == "duplicate id" for b in bad)  # the same question from several exports
    for sid, copies in got.items():
        orig = samples[sid]
        for s in copies:
            assert s.model_dump(exclude={"images"}) == orig.model_dump(exclude={"images"})
            assert [i.sha256 for i in s.images] == [i.sha256 for i in orig.images]
            assert s.images[0].load(back).tobytes() == orig.images[0].load(data.path).tobytes()
    assert set(rl_ids) <= set(got) and {t.sample.id for t in sft} <= set(got)
