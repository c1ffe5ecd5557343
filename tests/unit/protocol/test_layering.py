"""The protocol is the floor: nothing in it may import a package of ours that stands on it,
not even for type checking (that is how a floor starts to lean on its rooms)."""

from __future__ import annotations

import ast
from pathlib import Path

import deepeyes_cli.protocol

ALLOWED = ("deepeyes_cli.protocol", "deepeyes_cli.errors")


def _our_imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return [n for n in names if n.startswith("deepeyes_cli")]


def test_protocol_imports_nothing_above_it() -> None:
    folder = Path(deepeyes_cli.protocol.__file__).parent
    bad = {f"{p.name}: {m}" for p in folder.glob("*.py") for m in _our_imports(p) if not m.startswith(ALLOWED)}
    assert not bad, f"protocol modules import upward: {sorted(bad)}"


def test_the_check_sees_type_checking_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from deepeyes_cli.agent.config import X\n")
    assert _our_imports(probe) == ["deepeyes_cli.agent.config"]
