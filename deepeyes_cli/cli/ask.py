"""`deepeyes ask IMAGE... "question" [key=value ...]`: one question, streamed turn by turn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deepeyes_cli.cli.options import DryRunOpt, RecipeOpt, RunDirOpt

if TYPE_CHECKING:
    from deepeyes_cli.agent.records import LoopEvent

_MAX_SHOWN = 3000  # characters of one tool output shown on the terminal


def split_args(args: list[str]) -> tuple[list[str], str, list[str]]:
    """Positional words to (images, question, overrides): overrides are `a.b=c` words, the
    question is the last other word, the images the ones before it."""
    from deepeyes_cli.errors import InputError
    from deepeyes_cli.recipe.loader import is_override

    overrides = [a for a in args if is_override(a)]
    rest = [a for a in args if not is_override(a)]
    if not rest:
        raise InputError("no question given", hint='deepeyes ask IMAGE... "question"')
    *images, question = rest
    if Path(question).is_file():
        raise InputError(f"the last argument is a file ({question}), not a question",
                         hint='put the question last: deepeyes ask photo.jpg "What is it?"')
    return images, question, overrides


class TurnPrinter:
    """Streams loop events to the terminal (stderr): thinking, code, tool calls and output,
    image files, the answer."""

    def __init__(self, images_dir: Path) -> None:
        from deepeyes_cli.cli.console import err_console

        self.console = err_console
        self.images_dir = images_dir

    def __call__(self, event: LoopEvent) -> None:
        from rich.text import Text

        c = self.console
        if event.kind == "assistant" and event.turn is not None and event.message is not None:
            c.rule(f"turn {event.turn.index + 1}", style="dim")
            self._assistant(event.message.text)
        elif event.kind == "observation" and event.message is not None:
            self._observation(event)
        elif event.kind == "end":
            t = event.trajectory
            reason = t.end_reason or "interrupted"
            summary = f"end: {reason} after {len(t.turns)} turn(s) in {t.wall_s or 0:.2f} s"
            if t.metadata.get("error"):
                summary += f" ({t.metadata['error']})"
            c.print(Text(summary, style="bold"), soft_wrap=True)

    def _assistant(self, text: str) -> None:
        from rich.panel import Panel
        from rich.syntax import Syntax
        from rich.text import Text

        from deepeyes_cli.protocol.parser import extract_code, split_segments

        for mode, piece in split_segments(text):
            if mode == "code":
                code = extract_code(piece) or piece
                self.console.print(Panel(Syntax(code, "python", background_color="default", word_wrap=True),
                                         title="code", title_align="left", border_style="blue"))
            elif mode in ("tool_call", "answer", "think"):
                label, style = {"tool_call": ("tool call", "bold magenta"), "answer": ("answer", "bold green"),
                                "think": ("think", "bold")}[mode]
                body = (piece.strip(), "italic") if mode == "think" else (piece.strip(), "")
                self.console.print(Text.assemble((label + " ", style), body), soft_wrap=True)
            else:
                self.console.print(Text(piece.strip(), style="dim"), soft_wrap=True)

    def _observation(self, event: LoopEvent) -> None:
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        from deepeyes_cli.agent.ask import save_event_images
        from deepeyes_cli.protocol.tags import (
            TOOL_RESPONSE_CLOSE,
            TOOL_RESPONSE_OPEN,
            parse_code_result,
        )

        assert event.message is not None
        tool = event.turn.tool if event.turn is not None and event.turn.tool else None
        text = event.message.text
        parts = parse_code_result(text) if tool == "code" else None
        if parts is not None:  # the template's fences and headings are noise on a terminal
            stdout, stderr = (_clip(p.strip("\n")) for p in parts)
            body = Group(*([Text(stdout)] if stdout else []),
                         *([Text.assemble(("stderr ", "bold red"), stderr)] if stderr else []),
                         *([] if stdout or stderr else [Text("(no output)", style="dim")]))
        else:
            inner = text.removeprefix(TOOL_RESPONSE_OPEN + "\n").removesuffix("\n" + TOOL_RESPONSE_CLOSE)
            body = Group(Text(_clip(inner)))
        title = f"{tool} result" if tool else "feedback (the turn could not be carried out)"
        self.console.print(Panel(body, title=title, title_align="left",
                                 border_style="cyan" if tool else "yellow"))
        for path in save_event_images(event, self.images_dir):
            self.console.print(Text.assemble(("image ", "bold cyan"), str(path)), soft_wrap=True)


def _clip(text: str) -> str:
    if len(text) <= _MAX_SHOWN:
        return text
    return text[:_MAX_SHOWN] + f"\n… ({len(text) - _MAX_SHOWN} more characters)"


def _plan(images: list[str], question: str) -> Any:
    def plan(resolved: Any) -> list[str]:
        r = resolved.recipe
        model = r.policy.url if r.policy.backend == "openai" else r.model.path
        return [f"load {len(images)} image(s), at most {r.agent.image_max_pixels} pixels each: {', '.join(images)}",
                f"policy: {r.policy.backend} ({model})", f"tools: {', '.join(r.agent.tools) or 'none'}",
                f"up to {r.agent.max_turns} turns: {question!r}"]
    return plan


def _api_key(r: Any) -> str | None:
    import os

    return r.policy.api_key or os.environ.get("OPENAI_API_KEY")


def _served_agent(r: Any) -> str | None:
    from deepeyes_cli.agent.remote import served_agent

    return served_agent(r.policy.url, _api_key(r))


def ask(
    args: Annotated[list[str], typer.Argument(metavar='IMAGE... "QUESTION" [KEY=VALUE]...', show_default=False,
                                              help="Image files, then the question; recipe overrides anywhere.")],
    recipe: RecipeOpt = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Checkpoint: local dir, hub id or builtin:tiny.",
                                              show_default=False)] = None,
    backend: Annotated[str | None, typer.Option(help="transformers | vllm | openai | scripted.",
                                                show_default=False)] = None,
    url: Annotated[str | None, typer.Option(help="OpenAI-compatible server (implies --backend openai); a "
                                                 "`deepeyes serve` URL runs the whole loop there.",
                                            show_default=False)] = None,
    answer: Annotated[str | None, typer.Option(help="The expected answer, recorded for `deepeyes judge`.",
                                               show_default=False)] = None,
    max_turns: Annotated[int | None, typer.Option(min=1, help="Model turns at most.", show_default=False)] = None,
    save: Annotated[Path | None, typer.Option(help="Append the trajectory to this JSONL (images beside it).",
                                              show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the trajectory record instead of the answer.")] = False,
    run_dir: RunDirOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Ask a question about images: the model thinks, runs code, searches and answers.

    Each turn streams to stderr; the answer is the last line on stdout. A backend or
    sandbox failure is an error (exit 1); the trajectory is saved all the same."""
    import contextlib
    import json
    import sys

    from deepeyes_cli.agent.ask import ask as run_ask
    from deepeyes_cli.agent.ask import load_question, record_for_stdout, run_failure
    from deepeyes_cli.agent.trajectory import append_jsonl
    from deepeyes_cli.cli.console import err_console
    from deepeyes_cli.cli.options import start_stage

    images, question, overrides = split_args(args)
    flags = [f"model.path={model}"] if model else []
    if url:
        flags += [f"policy.url={url}", "policy.backend=openai"]
        if model:
            flags.append(f"policy.model_name={model}")
    if backend:
        flags.append(f"policy.backend={backend}")
    if max_turns:
        flags.append(f"agent.max_turns={max_turns}")
    stage = start_stage("ask", recipe, [*overrides, *flags], run_dir=run_dir, dry_run=dry_run,
                        plan=_plan(images, question))
    if stage is None:
        return
    r = stage.recipe
    task = load_question(images, question, r.agent.image_max_pixels, r.agent.max_images, answer=answer)
    from deepeyes_cli.policy.factory import make_policy

    printer = TurnPrinter(stage.run_dir.path / "images")
    served = _served_agent(r) if url else None
    if served is not None:  # a `deepeyes serve`: the whole loop runs there
        from deepeyes_cli.agent.remote import ask_remote

        traj = ask_remote(r.policy.url, _api_key(r), task, model=r.policy.model_name or served, max_turns=max_turns,
                          observer=printer, timeout_s=r.policy.request_timeout_s)
    else:
        # stdout carries only the answer (or the record): libraries that print while loading
        # (DeepSpeed's accelerator notice …) are sent to stderr
        with contextlib.redirect_stdout(sys.stderr):
            with err_console.status(f"loading the {r.policy.backend} policy …"):
                policy = make_policy(r)
            traj = run_ask(r, task, policy, observer=printer, recipe_digest=stage.resolved.digest)
    out = stage.run_dir.path / "trajectories.jsonl"
    append_jsonl(out, [traj])
    if save is not None:
        append_jsonl(save, [traj])
    failure = run_failure(traj, r, save or out)
    if json_out:
        typer.echo(json.dumps(record_for_stdout(traj, out), ensure_ascii=False))
    elif failure is None:
        if traj.final_answer is None:
            err_console.print(f"no answer (end: {traj.end_reason})", style="yellow", highlight=False)
        typer.echo(" ".join((traj.final_answer or "").split()))
    if failure is not None:
        raise failure
