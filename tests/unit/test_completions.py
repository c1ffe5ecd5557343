from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from deepeyes_cli.cli.completions import FILES, SHELLS, generate

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_files_are_up_to_date(shell: str) -> None:
    path = REPO / "completions" / FILES[shell]
    assert path.read_text() == generate(shell), f"{path} is stale: run `make completions`"


def _bash_complete(words: list[str]) -> list[str]:
    script = REPO / "completions" / FILES["bash"]
    quoted = " ".join(f"'{w}'" for w in words)
    code = (f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
            "_deepeyes; printf '%s\\n' \"${COMPREPLY[@]}\"")
    out = subprocess.run(["bash", "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return out.stdout.split()


def test_bash_completes_commands_options_and_recipes() -> None:
    assert {"recipes", "model", "completions"} <= set(_bash_complete(["deepeyes", ""]))
    assert set(_bash_complete(["deepeyes", "recipes", ""])) == {"ls", "show", "cp", "validate"}
    assert "--max-new-tokens" in _bash_complete(["deepeyes", "model", "check", "--m"])
    assert {"tiny", "7b", "32b"} <= set(_bash_complete(["deepeyes", "model", "check", "--recipe", ""]))


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_parse(shell: str) -> None:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed")
    subprocess.run([exe, "-n", str(REPO / "completions" / FILES[shell])], check=True)


def test_fish_completes_subcommands_and_recipes() -> None:
    fish = shutil.which("fish")
    if fish is None:
        pytest.skip("fish is not installed")
    script = REPO / "completions" / FILES["fish"]

    def complete(line: str) -> list[str]:
        out = subprocess.run([fish, "-c", f"source {script}; complete -C '{line}'"], capture_output=True,
                             text=True, check=True, cwd=REPO)
        return [x.split("\t")[0] for x in out.stdout.splitlines()]

    assert set(complete("deepeyes recipes ")) == {"cp", "ls", "show", "validate"}
    assert {"tiny", "7b", "32b"} <= set(complete("deepeyes model check --recipe "))
