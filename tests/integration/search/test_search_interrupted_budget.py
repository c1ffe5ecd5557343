"""A search cut short by Ctrl-C still counts against the run's budget (SerpAPI may have billed
it), through the real path: `deepeyes search text` interrupted while its call is in flight,
then the same run asking again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from deepeyes_cli.search.cache import SearchCache
from deepeyes_cli.testing.fake_serpapi import FakeSerpAPI

KEY = "sk-fake-0123456789abcdef"


def _search(fake: FakeSerpAPI, cache: Path, cwd: Path, query: str) -> subprocess.Popen[str]:
    root = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "SERPAPI_API_KEY": KEY, "NO_COLOR": "1", "COLUMNS": "200",
           "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "deepeyes_cli", "search", "text", query, "-r", "tiny",
                             "search.backend=serpapi", f"search.serpapi.base_url={fake.url}",
                             "search.serpapi.retries=0", f"search.cache.path={cache}",
                             "search.budget.max_calls_per_run=1", "search.budget.run_id=budget-run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)


def test_a_search_cut_short_by_ctrl_c_still_counts_against_the_run(tmp_path: Path) -> None:
    cache_path = tmp_path / "cache.sqlite"
    with FakeSerpAPI(api_key=KEY, faults=["hold"]) as fake:
        proc = _search(fake, cache_path, tmp_path, "a question cut short")
        deadline = time.monotonic() + 120
        while fake.holding < 1:  # the call reached upstream (and may be billed there)
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        fake.release()
        assert proc.returncode == 130 and "error: interrupted" in err and "Traceback" not in err, err
        cache = SearchCache(cache_path)
        rows = cache.connection().execute("SELECT run_id, status FROM calls").fetchall()
        assert rows == [("budget-run", "interrupted")]
        assert cache.stats()["unsettled_calls"] == 1 and cache.stats()["entries"] == 0
        # the same run asks something else: its one paid call is spent, upstream is not asked
        again = _search(fake, cache_path, tmp_path, "another question")
        _, err = again.communicate(timeout=120)
        assert again.returncode == 1 and "search budget spent (1 of 1 paid calls in run budget-run)" in err, err
        assert fake.calls["google"] == 1
