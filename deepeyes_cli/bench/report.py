"""A benchmark's report: ``summary.json``, ``results.jsonl`` (one line per item: prediction,
score, who decided it, its trajectory's id), ``report.md``, ``plots/`` and ``report.html``
linking every item to its trajectory on the `deepeyes view` page (``trajectories.html``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepeyes_cli.bench.registry import BenchSpec
from deepeyes_cli.bench.results import ItemResult
from deepeyes_cli.fileio import atomic_write

_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>{{ s.title }}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;vertical-align:top}.ok{background:#e6f4e6}
.bad{background:#fbe6e6}.un{background:#fff6d6}img{max-width:45em;margin:4px}</style></head><body>
<h1>{{ s.title }}</h1>
<p><b>{{ s.headline.label }}: {{ fmt(s.headline.value) }}</b>{% if s.headline.paper_deepeyesv2_7b is not none %}
 (paper, DeepEyesV2-7B: {{ s.headline.paper_deepeyesv2_7b }}){% endif %} — {{ s.headline.definition }}.
 {{ s['items'] }} items, {{ s.scored }} scored, {{ s.unjudged }} unjudged, {{ s.errors }} backend errors.</p>
{% if s.circular %}<p>Circular: {{ fmt(s.circular.accuracy) }} over {{ s.circular.questions }} questions
(vanilla on the same: {{ fmt(s.circular.vanilla_accuracy) }}).</p>{% endif %}
{% for p in plots %}<img src="plots/{{ p }}" alt="{{ p }}">{% endfor %}
<h2>Items</h2>{% if viewer %}<p>Each id opens its trajectory in <a href="trajectories.html">trajectories.html</a>.</p>{% endif %}
<table><tr><th>id</th><th>category</th><th>answer</th><th>prediction</th><th>score</th><th>decided by</th>
<th>turns</th><th>tools</th><th>end</th></tr>
{% for r in results %}<tr class="{{ 'un' if r.score is none else ('ok' if r.score >= 0.5 else 'bad') }}">
<td>{% if viewer and r.trajectory_id %}<a href="trajectories.html#t-{{ r.trajectory_id }}">{{ r.id }}</a>{% else %}{{ r.id }}{% endif %}</td>
<td>{{ r.category }}</td><td>{{ r.answer }}</td><td>{{ (r.prediction or '')[:300] }}</td>
<td>{{ '—' if r.score is none else '%.2f'|format(r.score) }}</td><td>{{ r.decided_by }}{% if r.rule %} ({{ r.rule }}){% endif %}</td>
<td>{{ r.turns }}</td><td>{{ r.tool_calls|dictsort|map('join', ':')|join(' ') }}</td><td>{{ r.end_reason }}</td></tr>
{% endfor %}</table></body></html>"""


def _fmt(v: Any) -> str:
    return "—" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def markdown(spec: BenchSpec, s: dict[str, Any]) -> str:
    h = s["headline"]
    paper = "—" if h["paper_deepeyesv2_7b"] is None else _fmt(h["paper_deepeyesv2_7b"])
    lines = [f"# {s['title']}", "",
             "| benchmark | " + h["label"] + " | paper DeepEyesV2-7B | items | scored | unjudged | errors |",
             "|---|---|---|---|---|---|---|",
             f"| {spec.name} | **{_fmt(h['value'])}** | {paper} | {s['items']} | {s['scored']} | {s['unjudged']} "
             f"| {s['errors']} |", "",
             f"Headline: {h['definition']}." + (f" Over the scored items only: {_fmt(h['scored_only'])}."
                                                 if s["unjudged"] else "")]
    if h["paper_note"]:
        lines.append(f"Note: {h['paper_note']}.")
    run = s.get("run", {})
    if run:
        lines += ["", f"Run: backend {run.get('backend')}, model {run.get('model')}, tools "
                      f"{', '.join(run.get('tools') or []) or 'none'}, at most {run.get('max_turns')} model calls, "
                      f"temperature {run.get('temperature')}."]
    d = s.get("data", {})
    if d:
        lines += [f"Data: {d.get('source')}: {d.get('rows')} rows, {d.get('items')} items, "
                  f"{d.get('malformed')} malformed" + (f" ({'; '.join(d.get('examples', []))})" if d.get("malformed")
                                                       else "") + "."]
    if s.get("circular"):
        c = s["circular"]
        lines += ["", f"Circular evaluation: **{_fmt(c['accuracy'])}** over {c['questions']} questions "
                      f"(vanilla on the same questions: {_fmt(c['vanilla_accuracy'])}); {c['definition']}."]
    lines += ["", "## Per category", "", "| category | items | accuracy | mean tool calls | with tools |",
              "|---|---|---|---|---|"]
    for cat, v in s["by_category"].items():
        t = s["tool_use"].get(cat, {})
        lines.append(f"| {cat} | {v['n']} | {_fmt(v['accuracy'])} | {t.get('mean_tool_calls', 0)} | "
                     f"{100 * t.get('share_with_tools', 0):.0f}% |")
    for name, table in s["breakdowns"].items():
        lines += ["", f"## By {name}", "", "| " + name + " | " + " | ".join(next(iter(table.values()), {}).keys())
                  + " |", "|---" * (1 + len(next(iter(table.values()), {}))) + "|"]
        lines += [f"| {k} | " + " | ".join(_fmt(x) for x in v.values()) + " |" for k, v in table.items()]
    lines += ["", "## Errors and decisions", "",
              "Ended: " + ", ".join(f"{k} {v}" for k, v in s["end_reasons"].items()) + f"; without an <answer>: "
              f"{s.get('no_answer', 0)} (their last response was scored, as the original did).",
              "Decided by: " + ", ".join(f"{k} {v}" for k, v in s["decided_by"].items()) + ".",
              "Turns: " + ", ".join(f"{k}: {v}" for k, v in s["turns"].items()) + ".", "",
              "![accuracy](plots/accuracy_by_category.png) ![tools](plots/tool_use_by_category.png)",
              "![turns](plots/turns_histogram.png) ![errors](plots/errors.png)", ""]
    return "\n".join(lines)


def write_report(out: Path, spec: BenchSpec, summary: dict[str, Any], results: Sequence[ItemResult],
                 viewer: bool = True) -> None:
    from jinja2 import Environment

    from deepeyes_cli.bench.plots import PLOTS, write_plots
    from deepeyes_cli.bench.runner import shard_paths

    atomic_write(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n")
    atomic_write(out / "results.jsonl", "".join(r.model_dump_json() + "\n" for r in results))
    atomic_write(out / "report.md", markdown(spec, summary))
    write_plots(summary, out / "plots")
    shards = shard_paths(out)
    has_viewer = viewer and bool(shards)
    if has_viewer:
        from deepeyes_cli.agent.viewer import write_html

        write_html(shards, out / "trajectories.html")
    page = Environment(autoescape=True).from_string(_HTML).render(s=summary, results=results, plots=PLOTS,
                                                                   viewer=has_viewer, fmt=_fmt)
    atomic_write(out / "report.html", page)
