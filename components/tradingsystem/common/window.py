"""A sliding-window event limit, shared by the risk manager's orders/min and the broker client."""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """At most ``limit`` events in any half-open window ``[t, t + window)``. No I/O: the caller
    passes the time (any unit, as long as ``window`` uses the same one).

    It keeps the times of the last ``limit`` events; one more is allowed once the oldest of them
    has left the window. Unlike a token bucket or fixed windows, a burst straddling a boundary
    cannot double the rate.
    """

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] + self.window <= now:
            self._times.popleft()

    def wait(self, now: float) -> float:
        """How long from ``now`` until one more event is allowed (0 if it is allowed now)."""
        self._expire(now)
        if len(self._times) < self.limit:
            return 0
        return self._times[0] + self.window - now

    def allows(self, now: float) -> bool:
        return self.wait(now) == 0

    def remaining(self, now: float) -> int:
        """Events still allowed at ``now``."""
        self._expire(now)
        return self.limit - len(self._times)

    def record(self, now: float) -> None:
        self._times.append(now)
