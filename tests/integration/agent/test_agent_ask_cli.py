"""`deepeyes ask` and `deepeyes view` as a user runs them (subprocesses): the tiny model end
to end, answers on the last stdout line, --json/--save, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

from deepeyes_cli.testing.fake_openai import FakeOpenAI, Reply

PHOTO = Path(__file__).resolve().parents[2] / "data" / "street_sign.jpg"
NO_TOOLS = "agent.tools=[]"  # no sandbox to start: the real tools are covered in test_agent_with_tools.py


def test_ask_tiny_end_to_end_with_save_and_json(cli, tmp_path: Path) -> None:
    save = tmp_path / "out" / "traj.jsonl"
    out = cli("ask", str(PHOTO), "What does the sign say?", "--recipe", "tiny", NO_TOOLS, "--save", str(save),
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "turn 1" in out.stderr and "end: " in out.stderr
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1 and run_dirs[0].name.startswith("tiny-ask-")
    record = json.loads((run_dirs[0] / "trajectories.jsonl").read_text().splitlines()[0])
    assert out.stdout.splitlines()[-1] == " ".join((record["final_answer"] or "").split())
    assert record["backend"] == "transformers" and record["end_reason"] in (
        "answered", "no_action", "length", "empty", "max_turns")
    assert record["sample"]["question"] == "What does the sign say?" and record["turns"][0]["completion_ids"]
    assert save.is_file() and (save.parent / "traj.images").is_dir()

    out = cli("ask", str(PHOTO), "What does the sign say?", "--recipe", "tiny", NO_TOOLS, "--json",
              "agent.image_max_pixels=50176", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    ref = record["sample"]["images"][0]
    assert ref["width"] * ref["height"] <= 50176 and Path(ref["path"]).is_file()  # huge input: downscaled


def test_answer_is_the_last_stdout_line_and_a_hung_backend_is_an_error(cli, tmp_path: Path) -> None:
    with FakeOpenAI(lambda req: "<think>It is a stop sign.</think>\n<answer>STOP\nsign</answer>") as fake:
        out = cli("ask", str(PHOTO), "What does the sign say?", "--url", fake.base_url, NO_TOOLS, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "STOP sign" and "end: answered" in out.stderr
    with FakeOpenAI(lambda req: Reply("late", delay_s=1.5)) as fake:
        out = cli("ask", str(PHOTO), "q?", "--url", fake.base_url, NO_TOOLS, "policy.request_timeout_s=0.3",
                  "policy.max_retries=0", "--save", str(tmp_path / "t.jsonl"), cwd=tmp_path, timeout=60)
    assert out.returncode == 1 and out.stdout == "", out.stderr  # a backend failure is an error, not an answer
    assert "error: the openai backend failed:" in out.stderr and "timed out" in out.stderr
    assert "hint: raise agent.generation_timeout_s" in out.stderr and "Traceback" not in out.stderr
    assert json.loads((tmp_path / "t.jsonl").read_text())["end_reason"] == "error"  # kept all the same


def test_a_server_that_refuses_connections_is_a_clear_error(cli, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port the kernel just gave out and nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    out = cli("ask", str(PHOTO), "q?", "--url", url, NO_TOOLS, "policy.max_retries=0", "--json", cwd=tmp_path,
              timeout=60)
    assert out.returncode == 1 and f"error: the openai backend failed: cannot connect to {url}" in out.stderr
    assert f"hint: is the server at {url} running?" in out.stderr and "Traceback" not in out.stderr
    assert json.loads(out.stdout)["end_reason"] == "error"  # --json still prints the record


def test_a_model_that_never_answers_stops_at_max_turns(cli, tmp_path: Path) -> None:
    script = tmp_path / "turns.json"
    script.write_text(json.dumps(["I am thinking."] * 10))
    out = cli("ask", str(PHOTO), "q?", "--backend", "scripted", f"policy.script={script}", NO_TOOLS,
              "agent.on_no_action=remind", "--max-turns", "3", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["end_reason"] == "max_turns" and len(record["turns"]) == 3
    assert record["metadata"]["parse_issues"] == {"no_action": 3}


def test_bad_input_is_a_clear_error(cli, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "cut.jpg").write_bytes(PHOTO.read_bytes()[:2000])
    cases = [
        ([str(tmp_path / "missing.jpg"), "q?"], "error: image not found"),
        ([str(tmp_path / "notes.txt"), "q?"], "is not an image file"),
        ([str(tmp_path / "cut.jpg"), "q?"], "corrupt or truncated"),
        ([str(PHOTO), "   "], "error: the question is empty"),
        (["q?", str(PHOTO)], "the last argument is a file"),
        (["--backend", "nope", str(PHOTO), "q?"], "policy.backend: Input should be"),
    ]
    for args, message in cases:
        out = cli("ask", *args, "--recipe", "tiny", NO_TOOLS, cwd=tmp_path)
        assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
    assert cli("ask", cwd=tmp_path).returncode == 2


def test_dry_run_prints_the_plan(cli, tmp_path: Path) -> None:
    out = cli("ask", str(PHOTO), "q?", "--recipe", "tiny", "--max-turns", "11", "--dry-run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "max_turns: 11" in out.stdout and "policy: transformers (builtin:tiny)" in out.stdout
    assert "tools: code, search, image_search" in out.stdout and not (tmp_path / "runs").exists()


def test_view_writes_a_page(cli, tmp_path: Path) -> None:
    script = tmp_path / "turns.json"
    script.write_text(json.dumps(["<think>x</think><answer>42</answer>"]))
    save = tmp_path / "t.jsonl"
    for question in ("q?", "r?"):  # --save appends
        assert cli("ask", str(PHOTO), question, "--backend", "scripted", f"policy.script={script}", NO_TOOLS,
                   "--save", str(save), cwd=tmp_path).returncode == 0
    records = [json.loads(line) for line in save.read_text().splitlines()]
    assert [r["sample"]["question"] for r in records] == ["q?", "r?"]
    assert len(list((tmp_path / "t.images").iterdir())) == 1  # the same photo, stored once
    out = cli("view", str(save), "-o", str(tmp_path / "page.html"), cwd=tmp_path)
    assert out.returncode == 0 and "2 trajectories" in out.stderr
    assert "data:image/png;base64," in (tmp_path / "page.html").read_text()
    out = cli("view", str(tmp_path / "missing.jsonl"), cwd=tmp_path)
    assert out.returncode == 1 and "trajectory file not found" in out.stderr
