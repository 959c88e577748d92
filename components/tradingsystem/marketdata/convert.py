"""Alpaca stream messages (raw msgpack dicts, ``raw_data=True``) to wire structs.

Raw dicts skip alpaca-py's pydantic models (~4 us per message). The price of that is doing
the type checks here: anything missing or mistyped raises ``MalformedTick``.
"""

from __future__ import annotations

from typing import Any

import msgpack

from tradingsystem.common import wire


class MalformedTick(ValueError):
    pass


# What indexing a message of the wrong shape raises.
_SHAPE_ERRORS = (KeyError, TypeError, AttributeError)


def _ts_ns(t: Any) -> int:
    # The msgpack stream sends ``t`` as a Timestamp ext (type -1); anything else is malformed.
    if isinstance(t, msgpack.Timestamp):
        return int(t.to_unix_nano())
    raise MalformedTick(f"timestamp of type {type(t).__name__}")


def _num(v: Any) -> float:
    if type(v) is float:  # the common case, first
        return v
    # bool is an int subclass: a boolean price is malformed, not 1.0.
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise MalformedTick(f"number expected, got {type(v).__name__}")
    return float(v)


def _count(v: Any) -> int:
    # A count sent as a float must be a whole number: int() of NaN or inf would raise ValueError.
    if isinstance(v, float) and not v.is_integer():
        raise MalformedTick(f"whole number expected, got {v!r}")
    return int(_num(v))


def trade_id(m: dict[str, Any]) -> int | str | None:
    """Alpaca's trade id ``i`` (optional); it keys duplicate detection, so it must be hashable."""
    i = m.get("i")
    if i is None or (isinstance(i, int | str) and not isinstance(i, bool)):
        return i
    raise MalformedTick(f"trade id of type {type(i).__name__}")


def _symbol(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise MalformedTick("symbol missing")
    return v


def trade(m: dict[str, Any], now_ns: int) -> wire.Trade:
    try:
        return wire.Trade(
            symbol=_symbol(m["S"]),
            price=_num(m["p"]),
            size=_num(m["s"]),
            exch_ts=_ts_ns(m["t"]),
            origin_ts=now_ns,
        )
    except _SHAPE_ERRORS as exc:
        raise MalformedTick(f"trade: {exc!r}") from None


def quote(m: dict[str, Any], now_ns: int) -> wire.Quote:
    try:
        return wire.Quote(
            symbol=_symbol(m["S"]),
            bid=_num(m["bp"]),
            bid_size=_num(m["bs"]),
            ask=_num(m["ap"]),
            ask_size=_num(m["as"]),
            exch_ts=_ts_ns(m["t"]),
            origin_ts=now_ns,
        )
    except _SHAPE_ERRORS as exc:
        raise MalformedTick(f"quote: {exc!r}") from None


def bar(m: dict[str, Any], now_ns: int) -> wire.Bar:
    try:
        n = m.get("n")
        vw = m.get("vw")
        return wire.Bar(
            symbol=_symbol(m["S"]),
            open=_num(m["o"]),
            high=_num(m["h"]),
            low=_num(m["l"]),
            close=_num(m["c"]),
            volume=_num(m["v"]),
            start_ts=_ts_ns(m["t"]),
            vwap=None if vw is None else _num(vw),
            trade_count=None if n is None else _count(n),
            origin_ts=now_ns,
        )
    except _SHAPE_ERRORS as exc:
        raise MalformedTick(f"bar: {exc!r}") from None
