"""`curate run`: ingest → difficulty → tool-benefit → synthesize → split → export → report,
from the recipe's ``curate:`` section. Each stage skips itself when its output is complete
for the same inputs and settings, so a rerun after kill -9 redoes only the unfinished part."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from deepeyes_cli.agent.batch import ProgressFn
from deepeyes_cli.curate.store import DataDir
from deepeyes_cli.policy.base import Policy

STAGES = ("ingest", "difficulty", "tool_benefit", "synthesize", "split", "export", "report")

# stage name → a progress callback for it (the CLI's rich bars)
ProgressFactory = Callable[[str], ProgressFn]
StageDone = Callable[[str, dict[str, Any]], None]


async def run_pipeline(recipe: Any, data: DataDir, sources: Sequence[str], make_policy: Callable[[], Policy], *,
                       progress: ProgressFactory | None = None, on_stage: StageDone | None = None,
                       skip: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    from deepeyes_cli.curate.export import export
    from deepeyes_cli.curate.ingest import ingest
    from deepeyes_cli.curate.report import build_report
    from deepeyes_cli.curate.sampling import difficulty, tool_benefit
    from deepeyes_cli.curate.split import split
    from deepeyes_cli.curate.synthesize import synthesize

    held: list[Policy] = []

    def get_policy() -> Policy:
        if not held:
            held.append(make_policy())
        return held[0]

    def bar(name: str) -> Any:
        return progress(name) if progress else None

    results: dict[str, dict[str, Any]] = {}

    def done(name: str, summary: dict[str, Any]) -> None:
        results[name] = summary
        if on_stage:
            on_stage(name, summary)

    try:
        ing_bar = bar("ingest")
        ing = ingest(sources, data.path, recipe.curate,
                     on_progress=(lambda n, _src: ing_bar(n, 0, 0.0)) if ing_bar else None)
        done("ingest", {**ing.to_json(), "skipped": ing.skipped})
        if "difficulty" not in skip:
            done("difficulty", await difficulty(recipe, data, get_policy, bar("difficulty")))
        if "tool_benefit" not in skip:
            done("tool_benefit", await tool_benefit(recipe, data, get_policy, bar("tool_benefit")))
        if held:
            await held.pop().aclose()  # free the base model before the teachers run
        if "synthesize" not in skip:
            syn = bar("synthesize")
            done("synthesize", await synthesize(recipe, data, (lambda d, t, c, _m: syn(d, t, c)) if syn else None))
        done("split", split(recipe, data))
        done("export", export(recipe, data))
        done("report", {"path": str(build_report(data))})
    finally:
        for p in held:
            await p.aclose()
    return results
