"""Alpaca raw stream messages to wire structs; malformed ones raise MalformedTick."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest

from tradingsystem.marketdata import convert

TS = msgpack.Timestamp.from_unix_nano(1_700_000_000_123_456_789)


def test_trade_quote_bar_convert() -> None:
    t = convert.trade({"T": "t", "S": "AAPL", "i": 5, "p": 190.5, "s": 100, "t": TS}, now_ns=42)
    assert (t.symbol, t.price, t.size, t.exch_ts, t.origin_ts) == (
        "AAPL",
        190.5,
        100.0,
        1_700_000_000_123_456_789,
        42,
    )
    q = convert.quote({"S": "AAPL", "bp": 1.0, "bs": 2, "ap": 1.5, "as": 3, "t": TS}, now_ns=1)
    assert (q.bid, q.bid_size, q.ask, q.ask_size) == (1.0, 2.0, 1.5, 3.0)
    b = convert.bar(
        {"S": "AAPL", "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 10, "t": TS, "n": None, "vw": None}, 1
    )
    assert (b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count) == (
        1,
        2,
        0.5,
        1.5,
        10,
        None,
        None,
    )
    b = convert.bar({"S": "AAPL", "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 10, "t": TS, "n": 3, "vw": 1.2}, 1)
    assert (b.vwap, b.trade_count) == (1.2, 3)


GOOD_TRADE = {"S": "AAPL", "p": 190.5, "s": 100, "t": TS}


@pytest.mark.parametrize(
    "bad",
    [
        {k: v for k, v in GOOD_TRADE.items() if k != "p"},  # missing price
        {**GOOD_TRADE, "p": "190.5"},  # price as string
        {**GOOD_TRADE, "p": True},  # boolean is not a number
        {**GOOD_TRADE, "p": None},
        {**GOOD_TRADE, "t": "2024-01-01T00:00:00Z"},  # not a msgpack Timestamp
        {**GOOD_TRADE, "S": ""},
        {**GOOD_TRADE, "S": 5},
    ],
)
def test_malformed_trades_raise(bad: dict[str, Any]) -> None:
    with pytest.raises(convert.MalformedTick):
        convert.trade(bad, now_ns=1)


@pytest.mark.parametrize("i", [[1], {"a": 1}, 1.5, True])
def test_a_trade_id_that_cannot_key_duplicate_detection_is_malformed(i: object) -> None:
    with pytest.raises(convert.MalformedTick):
        convert.trade_id({**GOOD_TRADE, "i": i})
    assert convert.trade_id({**GOOD_TRADE, "i": 7}) == 7 and convert.trade_id(GOOD_TRADE) is None


def test_malformed_quote_and_bar_raise() -> None:
    with pytest.raises(convert.MalformedTick):
        convert.quote({"S": "AAPL", "bp": 1.0, "ap": 1.5, "as": 3, "t": TS}, 1)
    with pytest.raises(convert.MalformedTick):
        convert.bar({"S": "AAPL", "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 10, "t": TS, "vw": "x"}, 1)


GOOD_BAR = {"S": "AAPL", "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 10, "t": TS}


@pytest.mark.parametrize("n", [math.nan, math.inf, 2.5, "3"])
def test_a_trade_count_that_is_not_a_whole_number_is_malformed(n: object) -> None:
    with pytest.raises(convert.MalformedTick):
        convert.bar({**GOOD_BAR, "n": n}, 1)
    assert convert.bar({**GOOD_BAR, "n": 3.0}, 1).trade_count == 3
