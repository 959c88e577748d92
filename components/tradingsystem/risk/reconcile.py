"""Start-up reconciliation: the positions the broker holds, so limits start from the truth.

Pluggable: the service takes any ``() -> list[BrokerPosition]``; this module provides the
one that asks Alpaca (or the simulator in ``sim`` mode) with alpaca-py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tradingsystem.broker import trading_client
from tradingsystem.common.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    symbol: str
    qty: float  # signed: negative for a short
    avg_entry_price: float


PositionSource = Callable[[], list[BrokerPosition]]


def parse_position(row: dict[str, Any]) -> BrokerPosition:
    """One ``GET /v2/positions`` row; Alpaca sends numbers as strings and a side."""
    qty = abs(float(row["qty"]))
    return BrokerPosition(
        symbol=str(row["symbol"]),
        qty=-qty if row.get("side") == "short" else qty,
        avg_entry_price=float(row["avg_entry_price"]),
    )


def alpaca_positions(settings: Settings) -> PositionSource:
    # The same account and URL as the execution engine (simulator, paper or live by mode).
    client = trading_client(settings, settings.execution.request_timeout_s)

    def fetch() -> list[BrokerPosition]:
        rows = client.get_all_positions()
        return [parse_position(row) for row in rows]  # type: ignore[arg-type]

    return fetch


def fetch_with_retry(
    source: PositionSource, stop: threading.Event, attempts: int = 8, first_delay_s: float = 0.5
) -> list[BrokerPosition] | None:
    """Positions, or None if the broker did not answer after ``attempts`` (or on stop)."""
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return source()
        except Exception as exc:  # any transport or API error: retry, then give up loudly
            # type name only: alpaca-py errors can carry request details
            log.warning(
                "broker positions unavailable (attempt %d/%d): %s", attempt, attempts, type(exc).__name__
            )
        if stop.wait(delay):
            return None
        delay = min(delay * 2, 8.0)
    return None


__all__ = ["BrokerPosition", "PositionSource", "alpaca_positions", "fetch_with_retry", "parse_position"]
