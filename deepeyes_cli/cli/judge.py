"""`deepeyes judge TRAJ.jsonl [--recipe …] [-o scored.jsonl]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deepeyes_cli.cli.options import DryRunOpt, OverridesArg, RecipeOpt, RunDirOpt

if TYPE_CHECKING:
    from deepeyes_cli.rewards.scorefile import JudgeSummary


def _plan(trajectories: Path, output: Path | None, rescore: bool) -> Any:
    def plan(resolved: Any) -> list[str]:
        from deepeyes_cli.rewards.reward import default_cache_path

        r = resolved.recipe.reward
        j = r.judge
        judge = (f"judge {j.model or '(first model listed)'} at {j.base_url}, {j.concurrency} in flight, "
                 f"{j.max_retries} retries, {j.timeout_s:g} s time-out, prompts {j.prompt_version}"
                 if j.base_url else "no judge endpoint: answers no rule decides are left unjudged")
        return [f"read {trajectories}" + ("" if rescore else " (records already scored are kept)"),
                f"format rules{' (strict)' if r.strict_format else ''}; matching: {r.matching}; "
                f"score = {r.accuracy_weight:g}·acc·(1 − p) + {r.format_weight:g}·format, p = {r.search_penalty:g}",
                judge,
                f"judge cache {default_cache_path(r, resolved.recipe.run.cache_dir)}",
                f"write {output or trajectories} (journal {(output or trajectories).name}.judging.jsonl)"]
    return plan


def judge(
    trajectories: Annotated[Path, typer.Argument(show_default=False, metavar="TRAJ.jsonl",
                                                 help="Trajectory JSONL to score.")],
    recipe: RecipeOpt = None,
    overrides: OverridesArg = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", show_default=False,
                                                help="Write scored records here (default: in place).")] = None,
    rescore: Annotated[bool, typer.Option("--rescore", help="Score again records that already carry a reward.")] = False,
    run_dir: RunDirOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Score trajectories: format rules, answer-matching rules, then the cached LLM judge.

    Resumable: re-run the same command after an interruption. Unjudged records (judge
    unavailable) are tried again on the next run.
    """
    from deepeyes_cli.cli.options import start_stage
    from deepeyes_cli.errors import InputError

    if not trajectories.is_file():
        raise InputError(f"no such trajectory file: {trajectories}", hint="pass a .jsonl written by the agent loop")
    stage = start_stage("judge", recipe, overrides, run_dir=run_dir, dry_run=dry_run,
                        plan=_plan(trajectories, output, rescore))
    if stage is None:
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from deepeyes_cli.cli.console import err_console
    from deepeyes_cli.rewards.reward import RewardScorer, default_cache_path
    from deepeyes_cli.rewards.scorefile import judge_file

    cfg = stage.recipe.reward
    scorer = RewardScorer.from_config(cfg, default_cache_path(cfg, stage.recipe.run.cache_dir))
    progress = Progress(TextColumn("judging"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err_console, transient=True)
    task = progress.add_task("judge", total=None)

    def on_progress(done: int, total: int) -> None:
        progress.start()  # on the first report: a file that cannot be read leaves no empty bar behind
        progress.update(task, completed=done, total=total)

    try:
        summary = judge_file(scorer, trajectories, output, rescore=rescore, on_progress=on_progress)
    except KeyboardInterrupt:
        progress.stop()
        from deepeyes_cli.errors import Interrupted
        from deepeyes_cli.rewards.scorefile import journal_path

        raise Interrupted("interrupted", hint=f"finished records are kept in {journal_path(output or trajectories)}; "
                                              "run the same command again to go on") from None
    finally:
        progress.stop()
    (stage.run_dir.path / "judge_summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    _print_summary(summary, cfg.judge.base_url is None)


def _print_summary(s: JudgeSummary, no_endpoint: bool) -> None:
    from rich.table import Table

    from deepeyes_cli.cli.console import console, print_warning

    table = Table(title=f"{s.output} — {s.records} records")
    for col in ("data_source", "records", "scored", "accuracy", "mean score", "format ok"):
        table.add_column(col, justify="left" if col == "data_source" else "right")
    for name, st in sorted(s.by_source.items()):
        table.add_row(name, str(st.records), str(st.scored),
                      "—" if st.accuracy is None else f"{st.accuracy:.1%}",
                      f"{st.score_sum / st.scored:.3f}" if st.scored else "—", f"{st.format_ok}/{st.records}")
    console.print(table)
    total = max(1, sum(s.decided_by.values()))
    shares = ", ".join(f"{k} {v} ({v / total:.0%})" for k, v in s.decided_by.most_common())
    console.print(f"decided by: {shares or 'nothing scored'}", highlight=False)
    console.print(f"this run: {s.scored_now} scored, {s.resumed} resumed, {s.kept} kept; judge calls {s.judge_calls} "
                  f"({s.judge_retries} retries), cache hits {s.cache_hits}, tokens {s.prompt_tokens}+"
                  f"{s.completion_tokens}, cost ${s.cost_usd:.4f}, {s.elapsed_s:.1f} s", highlight=False)
    if s.unjudged:
        print_warning(f"{s.unjudged} records are unjudged (no score); run the command again to retry them"
                      + ("; set reward.judge.base_url to use a judge" if no_endpoint else ""))
