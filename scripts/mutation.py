"""Mutation testing of the pure core modules with mutmut, one module at a time.

For each target of ``scripts/mutation_targets.toml`` (or the modules named on the command
line) this builds a scratch copy under ``runs/mutation/<module>/`` holding the package, the
target's test files and a mutmut config that mutates only that module and runs only those
tests, runs ``mutmut run`` there (niced, one worker: the machine is shared), and prints one
JSON object: per module the mutants killed, survived and untested, the share killed, and
the names of the survivors (``mutmut show NAME`` in the scratch dir prints the diff).
Exits 1 when a module is below ``--goal`` (80 %). ``--table`` prints every module's latest figures
(``runs/mutation/latest.json``) as markdown rows for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
TARGETS = REPO / "scripts" / "mutation_targets.toml"
KILLED = ("killed", "timeout", "segfault", "caught by type check")
# what `mutmut results --all true` prints per mutant: "    name: status"
_RESULT = re.compile(r"^\s*(\S+): (.+)$")
_SQL = re.compile(r"\b(select|insert|delete|update|pragma|create|where|from|group by|order by|values|vacuum)\b",
                  re.I)


def sql_case_only(diff: str) -> bool:
    """A mutant that only changes the letter case of SQL text: SQLite reads keywords and
    identifiers case-insensitively, so it cannot change behaviour (an equivalent mutant)."""
    minus = [ln[1:] for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return bool(minus) and len(minus) == len(plus) and all(
        a != b and a.lower() == b.lower() and _SQL.search(a) for a, b in zip(minus, plus, strict=True))


def load_targets(path: Path = TARGETS) -> list[dict[str, object]]:
    return list(tomllib.loads(path.read_text())["target"])


def scratch_dir(module: str) -> Path:
    return REPO / "runs" / "mutation" / module.removesuffix(".py").replace("/", ".")


def prepare(module: str, tests: list[str], work: Path) -> None:
    """A fresh copy of the package and the target's tests, with a mutmut config of its own."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(REPO / "deepeyes_cli", work / "deepeyes_cli",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    files = {"tests/conftest.py"} | {t.split("::")[0] for t in tests}
    # helpers a test imports from its own folder (e.g. agent_test_helpers.py)
    for t in list(files):
        files |= {str(p.relative_to(REPO)) for p in (REPO / t).parent.glob("*helpers*.py")}
        files |= {str(p.relative_to(REPO)) for p in (REPO / t).parent.glob("conftest.py")}
    for f in sorted(files):
        src = REPO / f
        if not src.exists():
            raise SystemExit(f"error: {f} (a test of {module}) does not exist\n"
                             f"hint: fix its [[target]] in {TARGETS.relative_to(REPO)}")
        (work / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, work / f)
    if (REPO / "tests" / "data").is_dir():
        shutil.copytree(REPO / "tests" / "data", work / "tests" / "data")
    pytest_conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    (work / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["deepeyes_cli"]\n'
        f"only_mutate = [{json.dumps(module)}]\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        'pytest_add_cli_args = ["-q", "-p", "no:cacheprovider", "-m", "not slow"]\n'
        "use_git_change_detection = false\n"
        "\n[tool.pytest.ini_options]\n"
        f"markers = {json.dumps(pytest_conf['markers'])}\n"
        'asyncio_mode = "auto"\n'
        'asyncio_default_fixture_loop_scope = "function"\n'
        "timeout = 120\n")


def run_target(module: str, tests: list[str], log: Path, resume: bool = False) -> dict[str, object]:
    work = scratch_dir(module)
    if not (resume and (work / "mutants").is_dir()):
        prepare(module, tests, work)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(work)  # the mutated copy, never the installed package
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    start = time.time()
    with log.open("a" if resume else "w") as out:
        rc = subprocess.run(["nice", "-n", "10", sys.executable, "-m", "mutmut", "run", "--max-children", "1"],
                            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    # keep what a terminal would show last on each line (mutmut redraws its spinner with \r)
    log.write_text("".join(line.rsplit("\r", 1)[-1] for line in log.read_text().splitlines(keepends=True)))
    listing = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work, env=env,
                             capture_output=True, text=True).stdout
    status: dict[str, str] = {}
    for line in listing.splitlines():
        m = _RESULT.match(line)
        if m and "__mutmut_" in m.group(1):
            status[m.group(1)] = m.group(2).strip()
    # A node id holding a backslash cannot be selected again: mutmut's run of it fails, and the
    # failure would count as a kill. Such a target's figures are void until its ids are fixed.
    stats_file = work / "mutants" / "mutmut-stats.json"
    tests_seen = {t for ts in json.loads(stats_file.read_text()).get("tests_by_mangled_function_name", {}).values()
                  for t in ts} if stats_file.exists() else set()
    unselectable = sorted(t for t in tests_seen if "\\\\" in t)
    killed = sum(s in KILLED for s in status.values())
    survivors = sorted(n for n, s in status.items() if s == "survived")
    equivalent = [n for n in survivors if sql_case_only(subprocess.run(
        [sys.executable, "-m", "mutmut", "show", n], cwd=work, env=env, capture_output=True, text=True).stdout)]
    survivors = [n for n in survivors if n not in equivalent]
    untested = sorted(n for n, s in status.items() if s == "no tests")
    counted = killed + len(survivors) + len(untested)  # equivalent mutants count neither way
    return {"module": module, "mutants": len(status), "killed": killed, "survived": len(survivors),
            "equivalent_sql_case": len(equivalent),
            "no_tests": len(untested), "killed_share": round(killed / counted, 3) if counted else None,
            "survivors": survivors, "untested": untested, "mutmut_rc": rc,
            "error": f"{len(unselectable)} test ids hold a backslash (e.g. {unselectable[0]}): give them ids"
            if unselectable else None, "seconds": round(time.time() - start),
            "log": str(log.resolve().relative_to(REPO))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: every target)")
    parser.add_argument("--targets", type=Path, default=TARGETS, help="the list of targets (TOML)")
    parser.add_argument("--resume", action="store_true",
                        help="keep a module's earlier scratch dir and results; test only mutants not yet tested")
    parser.add_argument("--goal", type=float, default=0.8, help="least share of mutants killed per module")
    parser.add_argument("--table", action="store_true", help="print the latest figures as markdown rows, run nothing")
    args = parser.parse_args(argv)
    if args.table:
        print(table())
        return 0
    targets = load_targets(args.targets)
    if args.modules:
        known = {str(t["module"]): t for t in targets}
        missing = [m for m in args.modules if m not in known]
        if missing:
            print(f"error: not a mutation target: {', '.join(missing)}\nhint: add it to {TARGETS.relative_to(REPO)}",
                  file=sys.stderr)
            return 1
        targets = [known[m] for m in args.modules]
    results = []
    for t in targets:
        module, tests = str(t["module"]), [str(x) for x in t["tests"]]  # type: ignore[attr-defined]
        log = scratch_dir(module).parent / (scratch_dir(module).name + ".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        results.append(run_target(module, tests, log, args.resume))
        print(json.dumps({k: v for k, v in results[-1].items() if k not in ("survivors", "untested")},
                         ensure_ascii=False),
              file=sys.stderr, flush=True)
    below = [r["module"] for r in results
             if r["error"] or r["killed_share"] is None or r["killed_share"] < args.goal]
    summary = {"goal": args.goal, "modules": results, "below_goal": below}
    print(json.dumps(summary, indent=2))
    # every module's latest figures, kept across runs (runs of single modules add up)
    latest_file = REPO / "runs" / "mutation" / "latest.json"
    latest = json.loads(latest_file.read_text()) if latest_file.exists() else {}
    latest.update({str(r["module"]): r for r in results})
    latest_file.write_text(json.dumps(latest, indent=2))
    return 1 if below else 0


def table(latest_file: Path = REPO / "runs" / "mutation" / "latest.json") -> str:
    """Markdown rows (module, goal, measured) of every module's latest figures."""
    rows = []
    for module, r in sorted(json.loads(latest_file.read_text()).items()):
        share = "void" if r.get("error") or r["killed_share"] is None else f"{100 * r['killed_share']:.1f} %"
        equivalent = f", {r['equivalent_sql_case']} SQL-case equivalent" if r.get("equivalent_sql_case") else ""
        rows.append(f"| `{module}` | ≥ 80 % killed | {share}: {r['killed']} killed, {r['survived']} survived, "
                    f"{r['no_tests']} untested of {r['mutants']}{equivalent} ({r['seconds']} s) |")
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
