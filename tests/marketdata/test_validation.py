"""Every drop reason of the tick validator, and that good ticks pass."""

from __future__ import annotations

import math

import pytest

from tradingsystem.common import wire
from tradingsystem.marketdata.validation import ALPACA_BAR_NS, DropReason, TickValidator

S = 1_000_000_000
NOW = 1_700_000_000 * S


def validator() -> TickValidator:
    return TickValidator(["AAPL", "MSFT"], stale_after_s=30, max_backwards_s=1, max_future_s=5)


def trade(price: float = 100.0, size: float = 10, ts: int = NOW, symbol: str = "AAPL") -> wire.Trade:
    return wire.Trade(symbol=symbol, price=price, size=size, exch_ts=ts)


def quote(bid: float = 99.9, ask: float = 100.1, ts: int = NOW, bs: float = 1, as_: float = 1) -> wire.Quote:
    return wire.Quote(symbol="AAPL", bid=bid, bid_size=bs, ask=ask, ask_size=as_, exch_ts=ts)


def bar(
    o: float = 100,
    h: float = 101,
    lo: float = 99,
    c: float = 100.5,
    start: int = NOW - ALPACA_BAR_NS,
    vwap: float | None = None,
    n: int | None = None,
) -> wire.Bar:
    return wire.Bar(
        symbol="AAPL",
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=1000,
        start_ts=start,
        vwap=vwap,
        trade_count=n,
    )


def test_good_ticks_pass() -> None:
    v = validator()
    assert v.check(trade(), NOW, trade_id=1) is None
    assert v.check(quote(), NOW) is None
    assert v.check(quote(bid=100.0, ask=100.0, ts=NOW + 1), NOW) is None  # locked market is legal
    assert v.check(bar(), NOW) is None
    assert v.check(bar(vwap=100.2, n=12, start=NOW), NOW) is None


@pytest.mark.parametrize(
    ("tick", "reason"),
    [
        (trade(symbol="TSLA"), DropReason.UNKNOWN_SYMBOL),
        (trade(price=0.0), DropReason.BAD_PRICE),
        (trade(price=-1.0), DropReason.BAD_PRICE),
        (trade(price=math.nan), DropReason.BAD_PRICE),
        (trade(price=math.inf), DropReason.BAD_PRICE),
        (trade(size=0), DropReason.BAD_SIZE),
        (trade(size=math.nan), DropReason.BAD_SIZE),
        (quote(bid=0.0), DropReason.BAD_PRICE),
        (quote(ask=math.inf), DropReason.BAD_PRICE),
        (quote(bs=-1), DropReason.BAD_SIZE),
        (quote(bid=100.2, ask=100.1), DropReason.CROSSED_QUOTE),
        (bar(h=98, lo=99, o=98.5, c=98.5), DropReason.BAD_BAR),
        (bar(c=102), DropReason.BAD_BAR),
        (bar(o=-1), DropReason.BAD_PRICE),
        (bar(vwap=math.nan), DropReason.BAD_PRICE),
        (bar(vwap=0.0), DropReason.BAD_PRICE),
        (bar(n=-1), DropReason.BAD_SIZE),
        (trade(ts=NOW - 31 * S), DropReason.STALE),
        (quote(ts=NOW - 31 * S), DropReason.STALE),
        (bar(start=NOW - ALPACA_BAR_NS - 31 * S), DropReason.STALE),
        (trade(ts=NOW + 6 * S), DropReason.FUTURE),
    ],
    ids=lambda x: x.value if isinstance(x, DropReason) else "",
)
def test_each_bad_tick_is_dropped_with_its_reason(
    tick: wire.Trade | wire.Quote | wire.Bar, reason: DropReason
) -> None:
    assert validator().check(tick, NOW) is reason


def test_bar_is_stale_from_its_end_not_its_start() -> None:
    # A minute bar arrives ~60 s after its open time: that is fresh, not 60 s stale.
    assert validator().check(bar(start=NOW - ALPACA_BAR_NS - 2 * S), NOW) is None


def test_backwards_timestamps_within_tolerance_pass_beyond_are_dropped() -> None:
    v = validator()
    assert v.check(trade(ts=NOW), NOW, trade_id=1) is None
    assert v.check(trade(ts=NOW - S // 2), NOW, trade_id=2) is None  # 0.5 s back: tolerated
    assert v.check(trade(ts=NOW - 2 * S), NOW, trade_id=3) is DropReason.OUT_OF_ORDER
    # The newest timestamp is per symbol and per kind: other streams are unaffected.
    assert v.check(trade(ts=NOW - 2 * S, symbol="MSFT"), NOW, trade_id=4) is None
    assert v.check(quote(ts=NOW - 2 * S), NOW) is None


def test_rejected_ticks_do_not_move_the_clock() -> None:
    v = validator()
    assert v.check(trade(ts=NOW + 6 * S), NOW) is DropReason.FUTURE
    assert v.check(trade(ts=NOW), NOW, trade_id=1) is None


def test_duplicate_trades_by_id_and_by_content() -> None:
    v = validator()
    assert v.check(trade(), NOW, trade_id=7) is None
    assert v.check(trade(price=101.0), NOW, trade_id=7) is DropReason.DUPLICATE
    assert v.check(trade(), NOW, trade_id=8) is None  # same content, new id: a real second trade
    assert v.check(trade(price=102.0), NOW) is None
    assert v.check(trade(price=102.0), NOW) is DropReason.DUPLICATE


def test_duplicate_quotes_and_bars() -> None:
    v = validator()
    assert v.check(quote(), NOW) is None
    assert v.check(quote(), NOW) is DropReason.DUPLICATE
    assert v.check(quote(bid=99.8), NOW) is None
    assert v.check(bar(), NOW) is None
    assert v.check(bar(c=100.2), NOW) is DropReason.DUPLICATE


def test_duplicate_memory_is_bounded() -> None:
    v = validator()
    for i in range(5000):
        assert v.check(trade(ts=NOW + i), NOW, trade_id=i) is None
    # Only a recent window is remembered, old ids are forgotten (memory stays bounded).
    assert v.check(trade(ts=NOW + 5000), NOW, trade_id=4999) is DropReason.DUPLICATE
    assert v.check(trade(ts=NOW + 5000), NOW, trade_id=0) is None


def test_replayed_ticks_skip_only_the_wall_clock_checks() -> None:
    v = TickValidator(["AAPL"], stale_after_s=30, max_backwards_s=1, max_future_s=5, wall_clock=False)
    year_ago = NOW - 365 * 86_400 * S
    assert v.check(trade(ts=year_ago), NOW, trade_id=1) is None
    assert v.check(trade(ts=year_ago - 2 * S), NOW, trade_id=2) is DropReason.OUT_OF_ORDER
    assert v.check(trade(price=-1, ts=year_ago), NOW, trade_id=3) is DropReason.BAD_PRICE
