"""The one injectable executor every launch goes through. Commands are argv lists run
without a shell; tests pass a :class:`RecordingExecutor` and check what would have run."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from deepeyes_cli.errors import LaunchError


class Executor(Protocol):
    def run(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> int:
        """Run to completion (output to the terminal); the exit status."""

    def capture(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> str:
        """Run to completion; stdout (a non-zero exit raises :class:`LaunchError`)."""


class SubprocessExecutor:
    def run(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> int:
        try:
            return subprocess.run(list(argv), env={**os.environ, **env}, cwd=cwd, check=False).returncode
        except FileNotFoundError as e:
            raise LaunchError(f"cannot run {argv[0]}: not found", hint="is it installed and on PATH?") from e

    def capture(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> str:
        try:
            done = subprocess.run(list(argv), env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True,
                                  check=False, timeout=120)
        except FileNotFoundError as e:
            raise LaunchError(f"cannot run {argv[0]}: not found", hint="is it installed and on PATH?") from e
        if done.returncode != 0:
            raise LaunchError(f"{argv[0]} failed (exit {done.returncode}): {done.stderr.strip()[:300]}")
        return done.stdout


@dataclass
class RecordingExecutor:
    """Runs nothing: records each call and answers with ``outputs`` (for tests and dry runs)."""

    outputs: list[str] = field(default_factory=list)
    returncode: int = 0
    calls: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)

    def run(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> int:
        self.calls.append((list(argv), dict(env)))
        return self.returncode

    def capture(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> str:
        self.calls.append((list(argv), dict(env)))
        return self.outputs.pop(0) if self.outputs else ""
