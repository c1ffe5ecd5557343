from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deepeyes_cli.errors import RecipeError
from deepeyes_cli.recipe.loader import BUILTIN_DIR, available_recipes, load_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPE_FILES = sorted((REPO / "recipes").glob("*.yaml"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_repo_recipes_dir_is_the_builtin_dir() -> None:
    assert (REPO / "recipes").resolve() == BUILTIN_DIR.resolve()
    assert {p.stem for p in RECIPE_FILES} >= {"tiny", "7b", "32b"}


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path: Path) -> None:
    resolved = load_recipe(str(path))
    assert resolved.name == path.stem
    assert len(resolved.digest) == 12
    # Every key written in the file survives into the resolved recipe (nothing silently dropped).
    data = yaml.safe_load(path.read_text())
    data.pop("extends", None)
    dumped = resolved.to_dict()

    def check(node: dict, out: dict, prefix: str) -> None:
        for k, v in node.items():
            assert k in out, f"{prefix}{k} missing"
            if isinstance(v, dict):
                check(v, out[k], f"{prefix}{k}.")
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):  # e.g. teacher models
                assert len(out[k]) == len(v), f"{prefix}{k}: {len(out[k])} entries != {len(v)}"
                for i, (x, y) in enumerate(zip(v, out[k], strict=True)):
                    check(x, y, f"{prefix}{k}[{i}].")
            else:
                assert out[k] == v, f"{prefix}{k}: {out[k]!r} != {v!r}"

    check(data, dumped, "")


def test_7b_recipe_carries_the_original_hyperparameters() -> None:
    r = load_recipe("7b").recipe
    assert r.model.path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert (r.launch.nnodes, r.launch.gpus_per_node, r.launch.zero_stage) == (4, 8, 3)
    assert (r.sft.learning_rate, r.sft.epochs, r.sft.gradient_accumulation_steps, r.sft.cutoff_len) == (
        1e-5, 3, 4, 20480)
    assert r.sft.image_max_pixels == 512 * 512 and r.sft.warmup_ratio == 0.1
    assert (r.rl.learning_rate, r.rl.rollouts_per_prompt, r.rl.train_batch_size, r.rl.ppo_mini_batch_size) == (
        1e-6, 16, 256, 32)
    assert (r.rl.max_prompt_length, r.rl.max_response_length, r.rl.dual_clip_c, r.rl.kl_coef) == (
        8192, 16384, 3.0, 0.0)
    assert r.agent.max_turns == 9
    v = r.policy.vllm
    assert (v.tensor_parallel_size, v.gpu_memory_utilization, v.max_model_len, v.max_images_per_prompt) == (
        1, 0.6, 32768, 50)


def test_32b_extends_7b_and_overrides_size() -> None:
    r32 = load_recipe("32b")
    r = r32.recipe
    assert r.model.path == "Qwen/Qwen2.5-VL-32B-Instruct"
    assert r.launch.world_size == 64 and r.sft.cutoff_len == 16384
    assert r.policy.vllm.tensor_parallel_size == 4
    assert r.rl.learning_rate == 1e-6  # inherited
    assert r32.source_of("rl.learning_rate").startswith(str(Path("deepeyes_cli/recipes/7b.yaml"))) or \
        "7b.yaml" in r32.source_of("rl.learning_rate")
    assert "32b.yaml" in r32.source_of("model.path")
    assert [f.name for f in r32.files] == ["7b.yaml", "32b.yaml"]


def test_overrides_beat_the_file_and_parse_yaml_values(tmp_path: Path) -> None:
    r = load_recipe("tiny", ["agent.max_turns=3", "launch.env.NCCL_DEBUG=INFO", "sft.datasets=[a.json, b.json]",
                             "model.revision=null", "run.description="])
    assert r.recipe.agent.max_turns == 3
    assert r.recipe.launch.env == {"NCCL_DEBUG": "INFO"}
    assert r.recipe.sft.datasets == ["a.json", "b.json"]
    assert r.recipe.model.revision is None and r.recipe.run.description == ""
    assert r.source_of("agent.max_turns") == "override 'agent.max_turns=3'"


def test_misspelled_key_in_file_names_file_line_and_suggestion(tmp_path: Path) -> None:
    p = write(tmp_path / "mine.yaml", "extends: tiny\nmodel:\n  dtype: float32\n  pth: /x\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(str(p))
    assert "mine.yaml:4" in e.value.message and "model.pth" in e.value.message
    assert e.value.hint == "did you mean 'model.path'?"


def test_misspelled_section_and_key_in_other_section(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as e:
        load_recipe(str(write(tmp_path / "a.yaml", "modle:\n  path: x\n")))
    assert "did you mean 'model'" in (e.value.hint or "")
    with pytest.raises(RecipeError) as e:
        load_recipe(str(write(tmp_path / "b.yaml", "max_turns: 4\n")))
    assert e.value.hint == "did you mean 'agent.max_turns'?"


def test_misspelled_override_and_recipe_name() -> None:
    with pytest.raises(RecipeError) as e:
        load_recipe("tiny", ["agent.max_turn=3"])
    assert "override 'agent.max_turn=3'" in e.value.message and "agent.max_turns" in (e.value.hint or "")
    with pytest.raises(RecipeError) as e:
        load_recipe("tyni")
    assert "did you mean 'tiny'" in (e.value.hint or "")


def test_type_errors_point_at_the_source(tmp_path: Path) -> None:
    p = write(tmp_path / "t.yaml", "extends: tiny\nlaunch:\n  zero_stage: 5\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(str(p))
    assert "t.yaml:3" in e.value.message and "launch.zero_stage" in e.value.message


def test_bad_yaml_and_bad_override_syntax(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as e:
        load_recipe(str(write(tmp_path / "bad.yaml", "model:\n  path: [unclosed\n")))
    assert "invalid YAML" in e.value.message and "bad.yaml:" in e.value.message
    with pytest.raises(RecipeError):
        load_recipe("tiny", ["no-equals-sign"])
    with pytest.raises(RecipeError) as e:
        load_recipe("tiny", ["model.path.deeper=1"])
    assert "not a section" in e.value.message


def test_extends_cycle_and_relative_parent(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "extends: b\n")
    write(tmp_path / "b.yaml", "extends: a\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(str(tmp_path / "a.yaml"))
    assert "extends itself" in e.value.message
    write(tmp_path / "base.yaml", "extends: tiny\nagent:\n  max_turns: 4\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nrun:\n  seed: 7\n")
    r = load_recipe(str(child)).recipe
    assert (r.agent.max_turns, r.run.seed, r.model.path) == (4, 7, "builtin:tiny")


def test_local_recipes_dir_shadows_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "recipes").mkdir()
    write(tmp_path / "recipes" / "tiny.yaml", "extends: 7b\nrun:\n  description: shadow\n")
    write(tmp_path / "recipes" / "mine.yaml", "extends: tiny\n")
    monkeypatch.chdir(tmp_path)
    assert available_recipes()["tiny"].parent == tmp_path / "recipes"
    # A local recipe named like a builtin may extend... the builtin it shadows? No: names
    # resolve to the nearest file, so `mine` gets the local tiny, which extends builtin 7b.
    r = load_recipe("mine").recipe
    assert r.run.description == "shadow" and r.model.path == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_secrets_interpolated_and_redacted(tmp_path: Path) -> None:
    p = write(tmp_path / "s.yaml", "extends: tiny\nsandbox:\n  token: ${DE_TEST_TOKEN}\n  url: ${DE_URL:-http://h:1}\n")
    r = load_recipe(str(p), env={"DE_TEST_TOKEN": "s3cr3t-value"})
    assert r.recipe.sandbox.token == "s3cr3t-value" and r.recipe.sandbox.url == "http://h:1"
    dumped = r.to_yaml()
    assert "s3cr3t-value" not in dumped and "${DE_TEST_TOKEN}" in dumped
    assert r.secret_values() == ["s3cr3t-value"]  # the URL default is not a secret
    # A literal secret typed into a recipe is redacted too.
    r2 = load_recipe("tiny", ["sandbox.token=plain-literal"])
    assert "plain-literal" not in r2.to_yaml() and r2.recipe.sandbox.token == "plain-literal"


def test_unset_secret_is_reported_not_leaked(tmp_path: Path) -> None:
    p = write(tmp_path / "s.yaml", "extends: tiny\nsandbox:\n  token: ${DE_UNSET_VAR}\n")
    r = load_recipe(str(p), env={})
    assert r.recipe.sandbox.token is None
    assert r.missing_env == {("sandbox", "token"): "DE_UNSET_VAR"}
    p2 = write(tmp_path / "m.yaml", "extends: tiny\nmodel:\n  path: ${DE_UNSET_MODEL}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(str(p2), env={})
    assert "DE_UNSET_MODEL" in e.value.message and "export DE_UNSET_MODEL" in (e.value.hint or "")


def test_digest_changes_with_content_only() -> None:
    assert load_recipe("tiny").digest == load_recipe("tiny").digest
    assert load_recipe("tiny").digest != load_recipe("tiny", ["agent.max_turns=2"]).digest


def test_no_recipe_gives_7b_defaults() -> None:
    r = load_recipe(None)
    assert r.name == "defaults" and r.recipe.model.path == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_literal_secret_is_a_secret_value_for_logs() -> None:
    r = load_recipe("tiny", ["sandbox.token=plain-literal"])
    assert r.secret_values() == ["plain-literal"]


def test_suggestions_handle_swapped_letters() -> None:
    from deepeyes_cli.suggest import closest

    assert closest("tyni", ["tiny", "7b", "32b"]) == "tiny"
    assert closest("mdoel", ["model", "launch"]) == "model"
    assert closest("zzzz", ["model", "launch"]) is None
