"""Reconnect delays: exponential backoff with jitter.

The delay is uniform in ``[min_s, cap]`` where ``cap`` doubles per attempt up to ``max_s``:
the jitter spreads reconnects of many clients after a shared outage, and the floor keeps
one client from hammering a server that closes every connection at once.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("backoff needs 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect ``attempt`` (1 = first retry after a disconnect)."""
        cap = min(self.max_s, self.min_s * 2 ** min(max(attempt - 1, 0), 32))
        return self.min_s + self._rng.uniform(0, cap - self.min_s) if cap > self.min_s else self.min_s
