"""Shared fixtures for the training tests: synthetic trajectories made by the real loop
(scripted policy, offline search) and the tiny model's processor."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_recipe():
    from deepeyes_cli.recipe.loader import load_recipe

    return load_recipe("tiny").recipe


@pytest.fixture(scope="session")
def processor(tiny_model_dir: Path, tiny_recipe):
    from deepeyes_cli.train.sft import load_sft_processor

    return load_sft_processor(tiny_recipe, str(tiny_model_dir))


@pytest.fixture(scope="session")
def traj_file(tmp_path_factory: pytest.TempPathFactory, tiny_recipe) -> Path:
    from deepeyes_cli.testing.sft_data import write_sft_trajectories

    return write_sft_trajectories(tiny_recipe, tmp_path_factory.mktemp("sftdata") / "train.jsonl", 12, seed=3)
