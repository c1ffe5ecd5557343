"""Single-flight across processes sharing one cache file, timed by conditions, not delays:
a failed leader's request is tried again by one waiting process, and a leader whose call
outlasts its lease several times over keeps it by renewing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from deepeyes_cli.search.cache import SearchCache
from deepeyes_cli.testing.fake_serpapi import FakeSerpAPI

WORKER = """
import json, sys
from deepeyes_cli.errors import DeepeyesError
from deepeyes_cli.search.config import SearchConfig
from deepeyes_cli.search.service import SearchService
service = SearchService(SearchConfig.model_validate_json(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
try:
    out = service.search_text("one question for all")
    print(json.dumps({"text": out.text, "cache": out.cache}), flush=True)
except DeepeyesError as e:
    print(json.dumps({"error": str(e)}), flush=True)
"""


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[3])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _start(config_json: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", WORKER, config_json], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def _until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _answer(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _lease_row(cache: SearchCache) -> tuple | None:
    return cache.connection().execute("SELECT owner, expires FROM leases").fetchone()


def test_a_failed_leader_is_retried_by_a_waiting_process(serpapi_key: str, config_for) -> None:
    with FakeSerpAPI(api_key=serpapi_key, faults=["hold,400"]) as fake:
        config = config_for(fake)
        cache = SearchCache(config.cache.path or "")
        leader, follower = _start(config.model_dump_json()), _start(config.model_dump_json())
        try:
            _go(leader)
            _until(lambda: fake.holding == 1, "the leader's call to reach upstream")
            owner = _lease_row(cache)
            assert owner is not None  # the leader holds the lease while its call is in flight
            _go(follower)  # it finds the key claimed and waits on the lease
            fake.release()  # the leader's call fails (a 400 is not retried)
            first, second = _answer(leader), _answer(follower)
        finally:
            for p in (leader, follower):
                if p.poll() is None:
                    p.kill()
    assert "400" in first["error"]
    assert second["cache"] == "miss" and "one question for all" in second["text"]
    assert fake.calls["google"] == 2  # the follower asked once more, after the leader
    assert _lease_row(cache) is None


def test_a_leader_slower_than_its_lease_keeps_it(serpapi_key: str, config_for) -> None:
    """The upstream call is held until the leader has renewed its lease past three lease
    periods; the waiting processes never take it over, so upstream is asked once."""
    lease_s = 1.0
    with FakeSerpAPI(api_key=serpapi_key, faults=["hold"]) as fake:
        config = config_for(fake, cache={"lease_s": lease_s})
        cache = SearchCache(config.cache.path or "")
        procs = [_start(config.model_dump_json()) for _ in range(3)]
        try:
            _go(procs[0])
            _until(lambda: fake.holding == 1, "the leader's call to reach upstream")
            row = _lease_row(cache)
            assert row is not None
            owner, first_expiry = row
            for p in procs[1:]:
                _go(p)
            _until(lambda: (_lease_row(cache) or ("", 0.0))[1] > first_expiry + 3 * lease_s,
                   "the leader to renew its lease three lease periods on")
            assert _lease_row(cache)[0] == owner  # still the leader's: nobody took it over
            fake.release()
            outs = [_answer(p) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
    assert fake.calls["google"] == 1
    statuses = [o["cache"] for o in outs]
    assert statuses[0] == "miss" and set(statuses[1:]) <= {"shared", "hit"}
    assert len({o["text"] for o in outs}) == 1
