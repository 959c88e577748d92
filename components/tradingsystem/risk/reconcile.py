"""Start-up reconciliation: the positions and open orders the broker holds, so limits start
from the truth (an open order forgotten across a restart could double a position).

Pluggable: the service takes any ``() -> list[BrokerPosition]`` and
``() -> list[BrokerOpenOrder]``; this module provides the ones that ask Alpaca (or the
simulator in ``sim`` mode) with alpaca-py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tradingsystem.broker import trading_client
from tradingsystem.common.config import Settings
from tradingsystem.common.wire import Side

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    symbol: str
    qty: float  # signed: negative for a short
    avg_entry_price: float


@dataclass(frozen=True, slots=True)
class BrokerOpenOrder:
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    filled_qty: float


PositionSource = Callable[[], list[BrokerPosition]]
OpenOrderSource = Callable[[], list[BrokerOpenOrder]]


def parse_open_order(row: dict[str, Any]) -> BrokerOpenOrder:
    """One ``GET /v2/orders?status=open`` row."""
    return BrokerOpenOrder(
        client_order_id=str(row["client_order_id"]),
        symbol=str(row["symbol"]),
        side=Side(str(row["side"])),
        qty=float(row.get("qty") or 0),
        filled_qty=float(row.get("filled_qty") or 0),
    )


def parse_position(row: dict[str, Any]) -> BrokerPosition:
    """One ``GET /v2/positions`` row; Alpaca sends numbers as strings and a side."""
    qty = abs(float(row["qty"]))
    return BrokerPosition(
        symbol=str(row["symbol"]),
        qty=-qty if row.get("side") == "short" else qty,
        avg_entry_price=float(row["avg_entry_price"]),
    )


def _client(settings: Settings) -> Any:
    # The same account and URL as the execution engine (simulator, paper or live by mode).
    return trading_client(settings, settings.execution.request_timeout_s)


def alpaca_positions(settings: Settings) -> PositionSource:
    client = _client(settings)

    def fetch() -> list[BrokerPosition]:
        rows = client.get_all_positions()
        return [parse_position(row) for row in rows]

    return fetch


def alpaca_open_orders(settings: Settings) -> OpenOrderSource:
    from alpaca.trading.enums import QueryOrderStatus
    from alpaca.trading.requests import GetOrdersRequest

    client = _client(settings)
    request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500)

    def fetch() -> list[BrokerOpenOrder]:
        return [parse_open_order(row) for row in client.get_orders(request)]

    return fetch


def fetch_with_retry(
    source: Callable[[], list[T]], stop: threading.Event, attempts: int = 8, first_delay_s: float = 0.5
) -> list[T] | None:
    """The source's rows, or None if the broker did not answer after ``attempts`` (or on stop)."""
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return source()
        except Exception as exc:  # any transport or API error: retry, then give up loudly
            # type name only: alpaca-py errors can carry request details
            log.warning("broker state unavailable (attempt %d/%d): %s", attempt, attempts, type(exc).__name__)
        if stop.wait(delay):
            return None
        delay = min(delay * 2, 8.0)
    return None


__all__ = [
    "BrokerOpenOrder",
    "BrokerPosition",
    "OpenOrderSource",
    "PositionSource",
    "alpaca_open_orders",
    "alpaca_positions",
    "fetch_with_retry",
    "parse_open_order",
    "parse_position",
]
