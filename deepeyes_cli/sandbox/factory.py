"""The one way to get a sandbox: ``make_executor(cfg)``."""

from __future__ import annotations

from deepeyes_cli.sandbox.base import SandboxExecutor
from deepeyes_cli.sandbox.config import SandboxConfig


def make_executor(cfg: SandboxConfig) -> SandboxExecutor:
    """The HTTP client of a shared server when ``cfg.url`` is set, else an in-process pool of
    kernels isolated as ``cfg.isolation`` says. Both are usable as ``async with`` and have
    ``aclose()``; the pool starts its kernels on first use (or on ``__aenter__``)."""
    if cfg.url:
        from deepeyes_cli.sandbox.client import HttpExecutor

        return HttpExecutor(cfg.url, cfg.token, cfg.timeout_s)
    from deepeyes_cli.sandbox.pool import KernelPool

    return KernelPool(cfg)
