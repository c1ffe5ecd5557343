"""Run directories: ``runs/<recipe>-<stage>-<UTC time>/``.

A run directory holds everything needed to understand and repeat a stage: the resolved
recipe (secrets shown as their ``${ENV_VAR}`` placeholders), every command line that ran
in it, package versions, the git commit, logs, and a small state file that stages use to
resume. Opening an existing directory resumes it; nothing already there is overwritten.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock

from deepeyes_cli import __version__
from deepeyes_cli.errors import RunDirError
from deepeyes_cli.fileio import atomic_write
from deepeyes_cli.recipe.loader import ResolvedRecipe

log = logging.getLogger(__name__)

TRACKED_PACKAGES = (
    "deepeyes-cli", "torch", "transformers", "tokenizers", "accelerate", "deepspeed", "datasets",
    "vllm", "torchvision", "qwen-vl-utils", "pydantic", "typer", "jupyter_client", "ipykernel",
    "serpapi", "fastapi", "uvicorn", "numpy", "pillow",
)
_SECRET_FLAG = re.compile(r"^--?(token|api[-_]?key|password|secret)$", re.I)
_SECRET_OVERRIDE = re.compile(r"^[\w.-]*(api_key|token|password|secret)[\w-]*=", re.I)


def utc_stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def _iso(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")


def redact_argv(argv: Sequence[str], secrets: Iterable[str] = ()) -> list[str]:
    """Hide secret flag values, secret overrides and known secret strings in a command line."""
    secrets = [s for s in secrets if s]
    out: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        flag, eq, _ = word.partition("=")
        if _SECRET_FLAG.match(flag):
            if eq:
                out.append(f"{flag}=***")
            else:
                out.append(word)
                hide_next = True
            continue
        if _SECRET_OVERRIDE.match(word):
            out.append(word.split("=", 1)[0] + "=***")
            continue
        for s in secrets:
            word = word.replace(s, "***")
        out.append(word)
    return out


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_info(directory: Path) -> dict[str, Any] | None:
    """Commit, branch and dirtiness of the git checkout holding ``directory``, if any."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        return {
            "root": git("rev-parse", "--show-toplevel"),
            "commit": commit,
            "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class RunDir:
    path: Path
    stage: str
    resumed: bool
    secrets: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, resolved: ResolvedRecipe, stage: str, argv: Sequence[str],
             run_dir: str | Path | None = None, now: datetime | None = None) -> RunDir:
        """Create ``runs/<recipe>-<stage>-<UTC time>/``, or resume ``run_dir`` if it exists."""
        if run_dir is None:
            root = Path(resolved.recipe.run.runs_dir)
            path = root / f"{resolved.name}-{stage}-{utc_stamp(now)}"
            n = 1
            while path.exists():  # two runs started in the same second
                n += 1
                path = root / f"{resolved.name}-{stage}-{utc_stamp(now)}-{n}"
        else:
            path = Path(run_dir)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"run directory {path} exists and is not a directory",
                              hint="pass another --run-dir")
        resumed = (path / "run.json").is_file()
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / "logs").mkdir(exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create run directory {path}: {e.strerror}",
                              hint="check permissions, or pass another --run-dir") from e
        rd = cls(path, stage, resumed, resolved.secret_values())
        with FileLock(str(path / ".lock"), timeout=30):
            rd._record(resolved, argv, now)
        return rd

    def _record(self, resolved: ResolvedRecipe, argv: Sequence[str], now: datetime | None) -> None:
        info = self.info()
        recipe_file = "recipe.yaml"
        if (self.path / "recipe.yaml").exists() and info.get("digest") not in (None, resolved.digest):
            # Resumed with a different recipe: keep the first, store this one beside it.
            recipe_file = f"recipe.{utc_stamp(now)}.yaml"
            log.warning("recipe differs from the one this run started with; saved as %s", recipe_file)
        if not (self.path / recipe_file).exists():
            atomic_write(self.path / recipe_file, resolved.to_yaml(redact=True))
        command = " ".join(shlex.quote(w) for w in redact_argv(argv, self.secrets))
        with open(self.path / "command.txt", "a", encoding="utf-8") as f:
            f.write(f"# {_iso(now)} {self.stage}\n{command}\n")
        invocation = {"time": _iso(now), "stage": self.stage, "argv": redact_argv(argv, self.secrets),
                      "digest": resolved.digest, "recipe_file": recipe_file}
        info.setdefault("created", _iso(now))
        info.setdefault("recipe", resolved.name)
        info.setdefault("digest", resolved.digest)
        info.setdefault("stage", self.stage)
        info["deepeyes_version"] = __version__
        info.setdefault("invocations", []).append(invocation)
        atomic_write(self.path / "run.json", json.dumps(info, indent=2) + "\n")
        atomic_write(self.path / "versions.json", json.dumps({
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "packages": package_versions(),
        }, indent=2) + "\n")
        atomic_write(self.path / "git.json", json.dumps({
            "deepeyes": git_info(Path(__file__).resolve().parent),
            "cwd": git_info(Path.cwd()),
        }, indent=2) + "\n")

    # ------------------------------------------------------------------ contents

    def info(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.path / "run.json").read_text()))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise RunDirError(f"{self.path / 'run.json'} is unreadable: {e}",
                              hint="pass a fresh --run-dir, or repair the file") from e

    def log_path(self) -> Path:
        return self.path / "logs" / f"{self.stage}.log"

    def read_state(self) -> dict[str, Any]:
        """The stage's resume state (empty for a new run)."""
        p = self.path / "state.json"
        if not p.exists():
            return {}
        try:
            return dict(json.loads(p.read_text()))
        except (OSError, ValueError) as e:
            raise RunDirError(f"{p} is unreadable: {e}", hint="delete it to start the stage over") from e

    def write_state(self, state: dict[str, Any]) -> None:
        atomic_write(self.path / "state.json", json.dumps(state, indent=2, default=str) + "\n")
