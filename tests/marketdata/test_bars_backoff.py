"""Trade-to-bar aggregation and the reconnect backoff policy."""

from __future__ import annotations

import random

import pytest

from tradingsystem.common import wire
from tradingsystem.marketdata.backoff import Backoff
from tradingsystem.marketdata.bars import BarAggregator

S = 1_000_000_000
T0 = 1_700_000_040 * S  # a multiple of 5 s


def tr(sec: float, price: float, size: float = 1, symbol: str = "AAPL", origin: int = 0) -> wire.Trade:
    return wire.Trade(symbol=symbol, price=price, size=size, exch_ts=T0 + int(sec * S), origin_ts=origin)


def test_bar_closes_when_a_trade_of_the_next_interval_arrives() -> None:
    agg = BarAggregator(5)
    assert agg.add(tr(0.0, 10, 1)) is None
    assert agg.add(tr(1.0, 12, 3)) is None
    assert agg.add(tr(2.0, 9, 2)) is None
    assert agg.add(tr(4.9, 11, 4)) is None
    assert agg.add(tr(0.5, 10, 1, symbol="MSFT")) is None  # other symbols are independent
    b = agg.add(tr(5.0, 13, 1, origin=777))
    assert b is not None
    assert (b.symbol, b.start_ts, b.open, b.high, b.low, b.close, b.volume, b.trade_count) == (
        "AAPL",
        T0,
        10,
        12,
        9,
        11,
        10,
        4,
    )
    assert b.vwap == pytest.approx((10 * 1 + 12 * 3 + 9 * 2 + 11 * 4) / 10)
    assert b.origin_ts == 777  # latency is measured from the trade that closed the bar


def test_quiet_symbol_bar_is_closed_by_the_clock_and_late_trades_are_ignored() -> None:
    agg = BarAggregator(5)
    agg.add(tr(1.0, 10))
    assert agg.due(T0 + 4 * S) == []
    (b,) = agg.due(T0 + 5 * S)
    assert (b.start_ts, b.close, b.trade_count) == (T0, 10, 1)
    assert agg.add(tr(4.0, 99)) is None  # its bar was already published
    assert agg.due(T0 + 60 * S) == []
    assert agg.add(tr(7.0, 11)) is None
    (b2,) = agg.due(T0 + 10 * S)
    assert (b2.start_ts, b2.open) == (T0 + 5 * S, 11)


def test_backoff_grows_exponentially_with_jitter_within_bounds() -> None:
    bo = Backoff(0.5, 8.0, random.Random(1))
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (50, 8.0)]:
        delays = [bo.delay(attempt) for _ in range(200)]
        assert all(0.5 <= d <= cap for d in delays)
        if cap > 0.5:
            assert max(delays) - min(delays) > (cap - 0.5) / 2  # jittered, not fixed
            assert max(delays) > cap * 0.75  # and really reaches towards the cap


def test_backoff_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)
