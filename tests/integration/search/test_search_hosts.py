"""Image hosts for Google Lens: S3 (against moto's S3 server on loopback) and url_template."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from deepeyes_cli.errors import SearchError
from deepeyes_cli.search.config import S3HostConfig, UrlTemplateHostConfig
from deepeyes_cli.search.hosts import S3ImageHost, UrlTemplateImageHost
from deepeyes_cli.search.service import SearchService
from deepeyes_cli.testing.fake_serpapi import FakeSerpAPI


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(var, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)


def test_s3_host_publishes_a_fetchable_presigned_url(s3_endpoint: str) -> None:
    _bucket(s3_endpoint, "lens")
    host = S3ImageHost(S3HostConfig(bucket="lens", endpoint_url=s3_endpoint, region="us-east-1", expires_s=600))
    where = host.publish(b"\xff\xd8jpeg bytes", "abc123")
    url = where["url"]
    assert url.startswith(f"{s3_endpoint}/lens/deepeyes-search/abc123.jpg?") and "Signature" in url
    assert httpx.get(url).content == b"\xff\xd8jpeg bytes"
    with pytest.raises(SearchError, match="cannot publish"):
        S3ImageHost(S3HostConfig(bucket="no-such-bucket", endpoint_url=s3_endpoint)).publish(b"x", "y")
    with pytest.raises(SearchError, match="bucket is not set"):
        S3ImageHost(S3HostConfig())


def test_image_search_through_s3(s3_endpoint: str, fake: FakeSerpAPI, config_for) -> None:
    _bucket(s3_endpoint, "lens")
    config = config_for(fake, image_host="s3", s3={"bucket": "lens", "endpoint_url": s3_endpoint})
    outcome = SearchService(config).search_image(Image.new("RGB", (300, 200), (200, 100, 0)))
    assert len(outcome.images) == 5 and not fake.uploads
    lens = next(r for r in fake.requests if r["engine"] == "google_lens")
    assert lens["url"].startswith(s3_endpoint) and "image_id" not in lens
    published = Image.open(io.BytesIO(httpx.get(lens["url"]).content))
    assert published.format == "JPEG" and published.size == (300, 200)


def test_url_template_host(tmp_path: Path) -> None:
    host = UrlTemplateImageHost(UrlTemplateHostConfig(directory=str(tmp_path / "www"),
                                                      template="https://cdn.example/lens/{name}?h={sha256}"))
    assert host.publish(b"jpeg", "f00d") == {"url": "https://cdn.example/lens/f00d.jpg?h=f00d"}
    assert (tmp_path / "www" / "f00d.jpg").read_bytes() == b"jpeg"
    with pytest.raises(SearchError, match="url_template"):
        UrlTemplateImageHost(UrlTemplateHostConfig(directory=str(tmp_path)))
