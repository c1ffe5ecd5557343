"""`deepeyes --help` must not import the heavy stack (it would take seconds)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["torch", "transformers", "vllm", "deepspeed", "datasets", "accelerate", "jupyter_client",
         "serpapi", "docker", "fastapi", "PIL", "numpy"]

PROBE = """
import json, sys
from deepeyes_cli.cli.main import app
args = {args!r}
try:
    app(args=args, prog_name="deepeyes")
except SystemExit:
    pass
print("\\nMODULES=" + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
"""


def _heavy_imported(args: list[str]) -> list[str]:
    code = PROBE.format(args=args, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = [x for x in out.stdout.splitlines() if x.startswith("MODULES=")]
    assert line, out.stderr
    return list(json.loads(line[-1][len("MODULES="):]))


def _all_command_paths() -> list[list[str]]:
    import typer

    from deepeyes_cli.cli.main import app

    paths: list[list[str]] = []

    def visit(cmd: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            visit(sub, [*path, name])

    visit(typer.main.get_command(app), [])
    return paths


def test_importing_cli_module_imports_nothing_heavy() -> None:
    code = ("import sys, json; import deepeyes_cli.cli.main; "
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("path", _all_command_paths(), ids=lambda p: " ".join(p) or "deepeyes")
def test_help_imports_nothing_heavy(path: list[str]) -> None:
    assert _heavy_imported([*path, "--help"]) == []
