"""Prometheus metrics of a sandbox server: cells by status and duration, from the requests;
sessions, kernels and restarts, read from the pool at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from deepeyes_cli.sandbox.base import CellResult
    from deepeyes_cli.sandbox.pool import KernelPool

_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _PoolCollector(Collector):
    def __init__(self, pool: KernelPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Any]:
        stats = self.pool.stats()
        for key, help_text in (("sessions", "Sessions open now"), ("queued_sessions", "Sessions waiting for room"),
                               ("ready_kernels", "Kernels started and idle"),
                               ("starting_kernels", "Kernels being started"), ("max_sessions", "Session limit")):
            yield GaugeMetricFamily(f"deepeyes_sandbox_{key}", help_text, value=stats.get(key, 0))
        for key, help_text in (("sessions_opened", "Sessions opened"), ("sessions_reaped", "Idle sessions closed"),
                               ("sessions_evicted", "Idle sessions closed to make room at max_sessions"),
                               ("kernel_restarts", "Kernels restarted after a crash or a stuck cell"),
                               ("start_failures", "Kernels that failed to start")):
            yield CounterMetricFamily(f"deepeyes_sandbox_{key}", help_text, value=stats.get(key, 0))


class SandboxMetrics:
    def __init__(self, registry: CollectorRegistry, pool: KernelPool) -> None:
        self.cells = Counter("deepeyes_sandbox_cells", "Cells run, by outcome", ["status"], registry=registry)
        self.seconds = Histogram("deepeyes_sandbox_cell_seconds", "Time to answer a cell request",
                                 buckets=_BUCKETS, registry=registry)
        self.images = Counter("deepeyes_sandbox_images", "Images returned", registry=registry)
        registry.register(_PoolCollector(pool))

    def observe(self, result: CellResult, seconds: float) -> None:
        self.cells.labels(result.status).inc()
        self.seconds.observe(seconds)
        self.images.inc(len(result.images))
