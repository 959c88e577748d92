"""Client-side token bucket: stay under the broker's request budget instead of hitting 429s."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tradingsystem.common.metrics import RATE_LIMIT_REMAINING


class TokenBucket:
    """``per_min`` requests per minute, bursts up to ``per_min`` (Alpaca counts per minute)."""

    def __init__(
        self,
        per_min: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._capacity = float(per_min)
        self._rate = per_min / 60.0
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()
        RATE_LIMIT_REMAINING.set(self._tokens)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the time waited."""
        waited = 0.0
        with self._lock:
            self._refill()
            while self._tokens < 1.0:
                pause = (1.0 - self._tokens) / self._rate
                self._sleep(pause)
                waited += pause
                self._refill()
            self._tokens -= 1.0
            RATE_LIMIT_REMAINING.set(int(self._tokens))
        return waited
