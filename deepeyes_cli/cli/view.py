"""`deepeyes view TRAJ.jsonl... -o page.html`: trajectories as a self-contained web page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def view(
    paths: Annotated[list[Path], typer.Argument(metavar="TRAJ.jsonl...", show_default=False,
                                                help="Trajectory JSONL files (ask --save, bench, curate …).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("trajectories.html"),
) -> None:
    """Write an HTML page to read trajectories turn by turn (images inline; filter by
    outcome, tool and error). Open it in any browser; it needs no server."""
    from deepeyes_cli.agent.viewer import write_html
    from deepeyes_cli.cli.console import err_console

    n = write_html(paths, out)
    err_console.print(f"wrote {out} ({n} trajectories, {out.stat().st_size / 1e6:.1f} MB)", highlight=False)
