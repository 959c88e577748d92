"""Builders for risk tests: an engine on a fake clock and wire messages with little typing.

Imported by the test modules (conftest puts this directory on sys.path: importlib mode)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from tradingsystem.common.config import RiskSettings
from tradingsystem.common.wire import (
    Action,
    ExecutionReport,
    OrderIntent,
    OrderStatus,
    Quote,
    Signal,
)
from tradingsystem.risk.engine import RiskEngine
from tradingsystem.risk.limits import Limits

SYMBOLS = ("AAPL", "MSFT", "GOOG")
# 10:00 in New York on a Monday: far from the day roll unless a test moves the clock there.
T0 = int(datetime(2026, 3, 2, 15, 0, tzinfo=UTC).timestamp()) * 1_000_000_000


class FakeClock:
    def __init__(self, ns: int = T0) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)


_seq = itertools.count(1)


def make_engine(clock: FakeClock | None = None, *, halted: bool = False, **risk: Any) -> RiskEngine:
    """An engine with the given RiskSettings overrides; fixed sizing of 10 shares unless told.

    Built without the settings' validation: the engine must enforce each limit on its own, also
    in combinations the configuration refuses (e.g. max_order_qty under order_qty).
    """
    rs = RiskSettings.model_construct(**{"sizing": "fixed", **risk})
    return RiskEngine(
        Limits.from_settings(rs),
        SYMBOLS,
        order_qty=rs.order_qty,
        sizing=rs.sizing,
        halted=halted,
        clock=clock or FakeClock(),
    )


def quote(symbol: str, mid: float, half_spread: float = 0.01) -> Quote:
    return Quote(
        symbol=symbol, bid=mid - half_spread, bid_size=100, ask=mid + half_spread, ask_size=100, exch_ts=0
    )


def signal(symbol: str, action: Action, price: float, strength: float = 1.0) -> Signal:
    seq = next(_seq)
    return Signal(
        symbol=symbol,
        action=action,
        strength=strength,
        price=price,
        strategy="t",
        seq=seq,
        origin_ts=T0 + seq,
    )


def report(
    order: OrderIntent,
    fill_qty: float,
    price: float,
    *,
    filled_total: float | None = None,
    status: OrderStatus | None = None,
) -> ExecutionReport:
    total = fill_qty if filled_total is None else filled_total
    if status is None:
        status = OrderStatus.FILLED if total >= order.qty else OrderStatus.PARTIALLY_FILLED
    return ExecutionReport(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        status=status,
        qty=order.qty,
        filled_qty=total,
        last_fill_qty=fill_qty,
        last_fill_price=price if fill_qty else None,
    )


def terminal(
    order: OrderIntent, status: OrderStatus = OrderStatus.CANCELED, filled: float = 0.0
) -> ExecutionReport:
    return ExecutionReport(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        status=status,
        qty=order.qty,
        filled_qty=filled,
    )
