"""Prometheus metrics of the API server (``GET /metrics``), in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepeyes_cli.agent.trajectory import Trajectory

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_OVERHEAD = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class ServeMetrics:
    def __init__(self, in_flight: Callable[[], float], queued: Callable[[], float]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("deepeyes_serve_requests", "Chat-completion requests by HTTP status.",
                                ["status", "stream"], registry=r)
        self.seconds = Histogram("deepeyes_serve_request_seconds", "Wall time of a chat completion, queue included.",
                                 buckets=_SECONDS, registry=r)
        self.queue_seconds = Histogram("deepeyes_serve_queue_seconds", "Wait for a free slot.", buckets=_SECONDS,
                                       registry=r)
        self.overhead = Histogram("deepeyes_serve_overhead_seconds",
                                  "Server time of a request beyond model generation and tool calls.",
                                  buckets=_OVERHEAD, registry=r)
        self.trajectories = Counter("deepeyes_serve_trajectories", "Trajectories by end reason.", ["end_reason"],
                                    registry=r)
        self.tool_calls = Counter("deepeyes_serve_tool_calls", "Tool calls by tool.", ["tool"], registry=r)
        self.tool_seconds = Counter("deepeyes_serve_tool_seconds", "Time spent in tools.", registry=r)
        self.tokens = Counter("deepeyes_serve_tokens", "Model tokens by kind.", ["kind"], registry=r)
        self.disconnects = Counter("deepeyes_serve_disconnects", "Clients gone before their answer (trajectory "
                                                                 "cancelled).", registry=r)
        Gauge("deepeyes_serve_in_flight", "Trajectories running.", registry=r).set_function(in_flight)
        Gauge("deepeyes_serve_queued", "Requests waiting for a slot.", registry=r).set_function(queued)
        ProcessCollector(registry=r)  # process_cpu_seconds_total, memory, open fds

    def trajectory(self, traj: Trajectory) -> None:
        self.trajectories.labels(traj.end_reason or "cancelled").inc()
        for turn in traj.turns:
            if turn.tool:
                self.tool_calls.labels(turn.tool).inc()
                self.tool_seconds.inc(turn.tool_s or 0.0)
            self.tokens.labels("prompt").inc(turn.prompt_tokens or 0)
            self.tokens.labels("completion").inc(turn.completion_tokens or 0)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
