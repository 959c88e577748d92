"""Fault injection and REST rate limiting, settable at start and at run time.

``Faults`` is plain mutable state read by the REST and stream layers; counters named
``*_next`` fire for the next N occurrences and count down. Set them directly
(``sim.faults.http_429_next = 3``) or with ``POST /_sim/faults {"http_429_next": 3}``.
One-shot stream disconnects are actions, not state: ``Simulator.disconnect``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Faults:
    latency_s: float = 0.0  # added before every REST reply
    rate_limit_per_min: int = 200  # Alpaca's trading limit; 0 = unlimited
    http_429_next: int = 0  # next N REST calls answer 429 (a burst, independent of the limit)
    http_5xx_next: int = 0  # next N REST calls answer ``http_5xx_status``
    http_5xx_status: int = 500
    # The dangerous case: the order IS accepted into the ledger, but the client gets a 504
    # (alpaca-py retries it, then sees 422 duplicate client_order_id) or no answer at all
    # (the connection is dropped after ``hang_s``).
    order_504_next: int = 0
    order_hang_next: int = 0
    hang_s: float = 30.0
    reject_next: int = 0  # next N orders are accepted, then rejected on trade_updates
    malformed_ticks_next: int = 0  # next N data messages are invalid (negative price, crossed quote, ...)
    out_of_order_ticks_next: int = 0  # next N data messages are stamped 5 s in the past

    def take(self, name: str) -> bool:
        """Consume one occurrence of counter ``name``; True if the fault fires now."""
        left = getattr(self, name)
        if left > 0:
            setattr(self, name, left - 1)
            return True
        return False

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update; unknown names or wrong types raise ``ValueError``."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        for name, value in changes.items():
            if name not in fields:
                raise ValueError(f"unknown fault {name!r}; known: {sorted(fields)}")
            kind = type(getattr(self, name))
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"fault {name!r} needs a number >= 0")
            setattr(self, name, kind(value))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RateLimiter:
    """Fixed one-minute windows per key, as reported in Alpaca's X-RateLimit-* headers."""

    def __init__(self) -> None:
        self._window: dict[str, tuple[int, int]] = {}  # key -> (window start, count)

    def hit(self, key: str, limit: int, now: float | None = None) -> tuple[bool, dict[str, str]]:
        """Count one request; return (allowed, headers)."""
        now = time.time() if now is None else now
        start = int(now) - int(now) % 60
        window, count = self._window.get(key, (start, 0))
        if window != start:
            window, count = start, 0
        count += 1
        self._window[key] = (window, count)
        if limit <= 0:
            return True, {}
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - count)),
            "X-RateLimit-Reset": str(window + 60),
        }
        return count <= limit, headers
