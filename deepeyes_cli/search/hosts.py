"""Where Google Lens fetches the image from.

* ``upload`` (default): SerpAPI's own image API (``Client.upload_image``) returns an
  ``image_id``; lives in ``serpapi_backend.py`` because it uses the SerpAPI client.
* ``s3``: ``put_object`` into any S3-compatible store, then hand Lens a presigned GET URL.
* ``url_template``: write ``{sha256}.jpg`` into a folder your web server publishes and hand
  Lens the URL built from a template.

Each host takes JPEG bytes (already small enough) and their sha256, and returns the
search parameters that name the image: ``{"url": ...}`` or ``{"image_id": ...}``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from deepeyes_cli.errors import SearchError
from deepeyes_cli.fileio import atomic_output
from deepeyes_cli.search.config import S3HostConfig, UrlTemplateHostConfig


class ImageHost(Protocol):
    def publish(self, jpeg: bytes, sha256: str) -> dict[str, str]: ...


class S3ImageHost:
    """boto3 upload + presigned URL. Credentials come from boto3's usual chain (env, profile, role)."""

    def __init__(self, config: S3HostConfig) -> None:
        if not config.bucket:
            raise SearchError("search.image_host is s3 but search.s3.bucket is not set",
                              hint="set search.s3.bucket (and search.s3.endpoint_url for a non-AWS store)")
        self.config = config
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=self.config.endpoint_url, region_name=self.config.region)
        return self._client

    def publish(self, jpeg: bytes, sha256: str) -> dict[str, str]:
        from botocore.exceptions import BotoCoreError, ClientError

        key = f"{self.config.prefix}{sha256}.jpg"
        try:
            self._s3().put_object(Bucket=self.config.bucket, Key=key, Body=jpeg, ContentType="image/jpeg")
            url = self._s3().generate_presigned_url("get_object", Params={"Bucket": self.config.bucket, "Key": key},
                                                    ExpiresIn=self.config.expires_s)
        except (BotoCoreError, ClientError) as e:
            raise SearchError(f"cannot publish the image to s3://{self.config.bucket}/{key}: {e}",
                              hint="check search.s3.* and the AWS credentials in the environment") from e
        return {"url": str(url)}


class UrlTemplateImageHost:
    def __init__(self, config: UrlTemplateHostConfig) -> None:
        if not config.directory or not config.template:
            raise SearchError("search.image_host is url_template but search.url_template.directory/template "
                              "are not both set",
                              hint="e.g. directory: /srv/www/lens, template: https://host.example/lens/{name}")
        self.directory = Path(config.directory).expanduser()
        self.template = config.template

    def publish(self, jpeg: bytes, sha256: str) -> dict[str, str]:
        name = f"{sha256}.jpg"
        target = self.directory / name
        if not target.exists():
            try:
                with atomic_output(target, binary=True) as f:
                    os.fchmod(f.fileno(), 0o644)  # the web server publishing the folder must read it
                    f.write(jpeg)
            except OSError as e:
                raise SearchError(f"cannot write {target}: {e.strerror}",
                                  hint="search.url_template.directory must be writable") from e
        return {"url": self.template.format(name=name, sha256=sha256)}
