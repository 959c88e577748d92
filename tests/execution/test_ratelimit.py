"""Token bucket: a burst of the full budget, then one request per 60/rate seconds."""

from __future__ import annotations

import pytest

from tradingsystem.execution.ratelimit import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_burst_then_paced() -> None:
    clock = FakeClock()
    bucket = TokenBucket(120, clock=clock, sleep=clock.sleep)
    assert all(bucket.acquire() == 0 for _ in range(120))
    assert bucket.acquire() == pytest.approx(0.5)  # 120/min = one per 0.5 s
    clock.now += 10
    assert all(bucket.acquire() == 0 for _ in range(20))
    assert bucket.acquire() > 0
