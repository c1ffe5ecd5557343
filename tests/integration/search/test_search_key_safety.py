"""The SerpAPI key is never written: not in the cache, the run dir, logs, errors or their tracebacks."""

from __future__ import annotations

import io
import logging
import traceback
from pathlib import Path

import pytest
from PIL import Image

from deepeyes_cli.errors import SearchError
from deepeyes_cli.search.service import SearchService
from deepeyes_cli.search.transfer import export_jsonl
from deepeyes_cli.testing.fake_serpapi import FakeSerpAPI


def _everything_about(err: BaseException) -> str:
    """The traceback a `--debug` run or ``log.exception`` would print, causes and contexts included."""
    return "".join(traceback.format_exception(err)) + repr(err.__cause__) + repr(err.__context__)


def test_key_is_never_stored_even_when_echoed(serpapi_key: str, config_for, tmp_path: Path) -> None:
    with FakeSerpAPI(api_key=serpapi_key, echo_api_key=True) as fake:
        service = SearchService(config_for(fake))
        service.search_text("secret check")
        service.search_image(Image.new("RGB", (64, 64), (5, 6, 7)))
        assert fake.requests[0]["api_key"] == serpapi_key
    buf = io.StringIO()
    export_jsonl(service.cache, buf)
    assert serpapi_key not in buf.getvalue() and '"search_parameters"' in buf.getvalue()
    service.close()
    for f in tmp_path.iterdir():
        if f.is_file():
            assert serpapi_key.encode() not in f.read_bytes(), f


@pytest.mark.parametrize("how", ["refused", "429", "500", "timeout"])
def test_failures_carry_no_key_in_their_chain(how: str, serpapi_key: str, config_for) -> None:
    with FakeSerpAPI(api_key=serpapi_key, faults=[how if how != "timeout" else "slow:1.5"] * 2) as fake:
        url = "http://127.0.0.1:9" if how == "refused" else fake.url
        config = config_for(fake, serpapi={"base_url": url, "retries": 1, "timeout_s": 0.5})
        with pytest.raises(SearchError) as err:
            SearchService(config).search_text(f"leak check {how}")
    assert serpapi_key not in _everything_about(err.value)
    assert err.value.__cause__ is None and err.value.__context__ is None


def test_upload_failure_carries_no_key(serpapi_key: str, config_for) -> None:
    with FakeSerpAPI(api_key=serpapi_key) as fake:
        config = config_for(fake, serpapi={"retries": 0}, images={"upload_max_bytes": 5_000_000})
        noisy = Image.effect_noise((900, 900), 120).convert("RGB")  # > 500 KB as JPEG: SerpAPI refuses it
        with pytest.raises(SearchError, match="answered 400: Image exceeds") as err:
            SearchService(config).search_image(noisy)
    assert serpapi_key not in _everything_about(err.value) and not fake.calls["google_lens"]


def test_request_lines_logged_by_urllib3_are_masked(fake: FakeSerpAPI, config_for,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        SearchService(config_for(fake)).search_text("logged request")
    lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert any("api_key=***" in line for line in lines), lines
    assert not any(fake.api_key and fake.api_key in line for line in lines)


def test_debug_traceback_and_run_dir_hold_no_key(cli, tmp_path: Path, serpapi_key: str) -> None:
    proc = cli("--debug", "search", "text", "fresh query", "-r", "7b", "search.serpapi.base_url=http://127.0.0.1:9",
               "search.serpapi.retries=0", f"search.cache.path={tmp_path / 'c.sqlite'}", "run.log_level=debug",
               cwd=tmp_path)
    assert proc.returncode != 0 and "cannot connect to http://127.0.0.1:9" in proc.stderr
    assert "Traceback" in proc.stderr and serpapi_key not in proc.stderr + proc.stdout
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert serpapi_key.encode() not in p.read_bytes(), p
