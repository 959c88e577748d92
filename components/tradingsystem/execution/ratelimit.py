"""Client-side request limit: stay under the broker's budget instead of hitting 429s."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tradingsystem.common.metrics import RATE_LIMIT_REMAINING
from tradingsystem.common.window import SlidingWindow

WINDOW_S = 60.0  # Alpaca counts requests per minute


class RequestLimiter:
    """At most ``per_min`` requests in any 60 s window; a caller over the limit sleeps until the
    oldest request of the window leaves it. Callers queue on one lock, so waits are first come,
    first served."""

    def __init__(
        self,
        per_min: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._window = SlidingWindow(per_min, WINDOW_S)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        RATE_LIMIT_REMAINING.set(per_min)

    def acquire(self) -> float:
        """Admit one request, sleeping until the window allows it; returns the time waited."""
        with self._lock:
            start = now = self._clock()
            while (pause := self._window.wait(now)) > 0:
                self._sleep(pause)
                now = self._clock()  # a real sleep may end early: ask the window again
            self._window.record(now)
            RATE_LIMIT_REMAINING.set(self._window.remaining(now))
        return now - start
