"""Many worker processes on one cache file: replay determinism, single-flight, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from deepeyes_cli.search.cache import SearchCache
from deepeyes_cli.search.service import SearchService
from deepeyes_cli.testing.fake_serpapi import FakeSerpAPI

REPLAY = """
import asyncio, hashlib, json, sys
from PIL import Image
from deepeyes_cli.search.config import SearchConfig
from deepeyes_cli.tools.base import ToolContext, call_tool
from deepeyes_cli.tools.search import ImageSearchTool, SearchHandle, SearchTool
handle = SearchHandle(SearchConfig.model_validate_json(sys.argv[1]), None)
ctx = ToolContext("t", images=[Image.new("RGB", (64, 48), (30, 60, 90))])
text = asyncio.run(call_tool(SearchTool(handle), {"query": "Replay me"}, ctx))
image = asyncio.run(call_tool(ImageSearchTool(handle), {}, ctx))
print(json.dumps({"text": text.text, "image": image.text, "cache": [text.metadata["cache"], image.metadata["cache"]],
                  "pixels": [hashlib.sha256(im.tobytes()).hexdigest() for im in image.images]}))
"""

SAME_QUERY = """
import json, sys
from deepeyes_cli.search.config import SearchConfig
from deepeyes_cli.search.service import SearchService
service = SearchService(SearchConfig.model_validate_json(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
out = service.search_text("one question for all")
print(json.dumps({"text": out.text, "cache": out.cache}), flush=True)
"""

WRITER = """
import os, sys, time
from deepeyes_cli.search.cache import CacheEntry, SearchCache
from deepeyes_cli.search.types import Hit, sha256_bytes
cache = SearchCache(sys.argv[1])
i = 0
while True:
    blob = os.urandom(20000)
    sha = sha256_bytes(blob)
    cache.put(CacheEntry(f"k{i}", "serpapi", "image", f"s{i}", {}, [Hit(f"t{i}", thumbnail=sha)], "shown",
                         time.time(), 1.0, 0.1, raw={"i": i, "pad": "x" * 2000}), {sha: blob})
    print(i, flush=True)
    i += 1
"""


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[3])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_replay_is_identical_across_processes(fake: FakeSerpAPI, config_for) -> None:
    live = SearchService(config_for(fake))
    recorded_text = live.search_text("Replay me").text
    recorded_image = live.search_image(Image.new("RGB", (64, 48), (30, 60, 90))).text
    live.close()
    replay = config_for(None, mode="replay").model_dump_json()  # no server behind it: cache only
    outs = [json.loads(subprocess.run([sys.executable, "-c", REPLAY, replay], capture_output=True, text=True,
                                      env=_env(), timeout=120, check=True).stdout) for _ in range(2)]
    assert outs[0] == outs[1]
    assert outs[0]["text"] == recorded_text and outs[0]["image"] == recorded_image
    assert outs[0]["cache"] == ["hit", "hit"] and len(outs[0]["pixels"]) == 5
    assert fake.calls["google"] == 1 and fake.calls["google_lens"] == 1


def _same_query_in(n: int, config_json: str) -> list[dict]:
    """Start ``n`` worker processes, let them ask the same question at once, return their answers."""
    procs = [subprocess.Popen([sys.executable, "-c", SAME_QUERY, config_json], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for _ in range(n)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        return [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def test_identical_requests_from_several_processes_make_one_call(serpapi_key: str, config_for) -> None:
    with FakeSerpAPI(api_key=serpapi_key, delay_s=1.0) as slow:
        outs = _same_query_in(4, config_for(slow).model_dump_json())
    assert slow.calls["google"] == 1
    assert len({o["text"] for o in outs}) == 1
    assert sorted(o["cache"] for o in outs).count("miss") == 1


# A leader slower than its lease: test_search_flight_processes.py (waits on the lease's renewals).


def test_kill_9_during_writes_leaves_a_sound_cache(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout is not None
    last = -1
    while last < 150:
        line = proc.stdout.readline()
        assert line, "writer died"
        last = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    cache = SearchCache(path)
    assert cache.integrity_ok()
    entries = list(cache.iter_entries())
    assert len(entries) >= last + 1  # every write reported as done survived
    for entry in entries:
        sha = entry.hits[0].thumbnail
        assert sha and len(cache.get_blobs([sha])[sha]) == 20000
    cache.put(entries[0], {})  # and the file is writable again


def test_a_killed_leader_does_not_block_the_others(fake: FakeSerpAPI, config_for) -> None:
    fake.add_faults("slow:1.5")  # the first worker's call hangs upstream …
    config = config_for(fake, cache={"lease_s": 120})
    proc = subprocess.Popen([sys.executable, "-c", SAME_QUERY, config.model_dump_json()], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdin is not None and proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    cache = SearchCache(config.cache.path or "")
    deadline = time.monotonic() + 60
    while not fake.calls["google"]:  # its request reached upstream, so it holds the lease
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert cache.connection().execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 1
    os.kill(proc.pid, signal.SIGKILL)  # … and is killed while holding the lease
    proc.wait(timeout=30)
    start = time.monotonic()
    service = SearchService(config)
    out = service.search_text("one question for all")
    assert out.cache == "miss" and time.monotonic() - start < 10  # not the 120 s lease
    # The killed worker's paid call may have been billed: it is settled as lost and still counts.
    statuses = [row[0] for row in cache.connection().execute("SELECT status FROM calls ORDER BY id")]
    assert statuses == ["lost", "ok"] and service.budget.used()["paid_calls"] == 2
    assert cache.stats()["unsettled_calls"] == 1 and not service.leases.held("any")
    service.close()
