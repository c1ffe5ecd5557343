"""The ready pool grows with the arrival rate of new sessions, between pool_size and 4x it."""

from __future__ import annotations

import time

from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.sandbox.pool import ARRIVAL_WINDOW_S, KernelPool


def test_ready_target_follows_the_arrival_rate() -> None:
    pool = KernelPool(SandboxConfig(pool_size=4, max_sessions=32))  # nothing is started by this
    assert pool._target_ready() == 4  # no arrivals: pool_size
    now = time.monotonic()
    pool._start_s = 0.5
    pool._arrivals.extend(now - i * (1 / 8) for i in reversed(range(int(8 * ARRIVAL_WINDOW_S) - 1)))  # 8/s
    assert pool._target_ready() == 6  # 1.5 x 8/s x 0.5 s
    pool._start_s = 5.0  # a loaded machine: capped at 4 x pool_size
    assert pool._target_ready() == 16
    pool._arrivals.clear()
    pool._arrivals.append(now - ARRIVAL_WINDOW_S - 1)  # old arrivals are forgotten
    assert pool._target_ready() == 4 and not pool._arrivals
    assert KernelPool(SandboxConfig(pool_size=0))._target_ready() == 0  # pool_size 0: nothing started ahead
