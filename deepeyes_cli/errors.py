"""Typed errors. Each carries a one-line message and a hint for the user.

Core modules raise these; the CLI renders them as ``error: …`` / ``hint: …`` on
stderr and exits 1, without a traceback unless ``--debug`` is given.
"""

from __future__ import annotations


class DeepeyesError(Exception):
    """An expected failure caused by input, configuration or environment."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class RecipeError(DeepeyesError):
    """A recipe file or override is invalid."""


class ModelError(DeepeyesError):
    """A model or processor cannot be found or loaded."""


class RunDirError(DeepeyesError):
    """A run directory cannot be created or resumed."""


class LaunchError(DeepeyesError):
    """A distributed launch cannot be prepared."""


class SandboxError(DeepeyesError):
    """The code sandbox cannot start or serve a session."""


class ToolError(DeepeyesError):
    """A tool failed; the agent loop shows the message to the model instead of raising."""


class SearchError(DeepeyesError):
    """A search backend or the search cache failed."""


class BackendError(DeepeyesError):
    """A policy backend (transformers, vLLM, OpenAI-compatible) failed."""


class InputError(DeepeyesError):
    """A user-supplied file or argument is unusable (missing image, empty question …)."""


class JudgeError(DeepeyesError):
    """The LLM judge or its cache is misconfigured or unreachable in a way retries cannot fix."""


class Interrupted(DeepeyesError):
    """Ctrl-C, with a stage-specific hint on how to go on (exit 130, like a shell)."""

    exit_code = 130
