"""Tick validation: a pure decision per tick, with the per-symbol state it needs.

``TickValidator.check(tick, now_ns)`` returns ``None`` (forward it) or a ``DropReason``;
it never does I/O, so every reason is unit-tested without a stream. The service counts
drops by reason and forwards only accepted ticks.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from tradingsystem.common import wire

_NS = 1_000_000_000
# Alpaca's streamed bars are minute bars stamped with their open time: they arrive a
# minute after ``t``, so staleness is measured from the bar's end.
ALPACA_BAR_NS = 60 * _NS
_DUP_WINDOW = 1024  # recent trade keys remembered per symbol


class DropReason(enum.StrEnum):
    MALFORMED = "malformed"  # missing or mistyped fields (set by the converter)
    UNKNOWN_SYMBOL = "unknown_symbol"
    BAD_PRICE = "bad_price"  # not finite or <= 0 (a bar's VWAP too)
    BAD_SIZE = "bad_size"  # not finite or < 0 (trades: <= 0; a bar's trade count too)
    CROSSED_QUOTE = "crossed_quote"  # bid > ask
    BAD_BAR = "bad_bar"  # high < low, or open/close outside [low, high]
    STALE = "stale"  # older than stale_after_s on arrival
    FUTURE = "future"  # ahead of our clock by more than max_future_s
    OUT_OF_ORDER = "out_of_order"  # older than the symbol's newest tick by more than max_backwards_s
    DUPLICATE = "duplicate"
    INTERNAL_ERROR = "internal_error"  # handling the message raised: a defect, logged (set by the pipeline)


_INF = math.inf


def _positive(*xs: float) -> bool:
    return all(math.isfinite(x) and x > 0 for x in xs)


def _non_negative(*xs: float) -> bool:
    return all(math.isfinite(x) and x >= 0 for x in xs)


@dataclass(slots=True)
class _SymbolState:
    newest_ts: dict[type, int] = field(default_factory=dict)  # per tick kind
    trade_keys: set[tuple[object, ...]] = field(default_factory=set)
    trade_order: deque[tuple[object, ...]] = field(default_factory=deque)
    last_quote: tuple[float, ...] | None = None
    last_bar_ts: int | None = None


class TickValidator:
    def __init__(
        self,
        symbols: Iterable[str],
        *,
        stale_after_s: float,
        max_backwards_s: float,
        max_future_s: float,
        wall_clock: bool = True,
    ) -> None:
        """``wall_clock=False`` skips the stale/future checks, for replays of recorded ticks."""
        self._state = {s: _SymbolState() for s in symbols}
        self._wall_clock = wall_clock
        self._stale_ns = int(stale_after_s * _NS)
        self._back_ns = int(max_backwards_s * _NS)
        self._future_ns = int(max_future_s * _NS)

    def check(
        self, tick: wire.Trade | wire.Quote | wire.Bar, now_ns: int, trade_id: object = None
    ) -> DropReason | None:
        """Decide on one tick. ``trade_id`` (Alpaca's ``i``) sharpens duplicate detection."""
        st = self._state.get(tick.symbol)
        if st is None:
            return DropReason.UNKNOWN_SYMBOL
        if isinstance(tick, wire.Trade):
            reason = self._trade_fields(tick)
            ts, end_ts = tick.exch_ts, tick.exch_ts
        elif isinstance(tick, wire.Quote):
            reason = self._quote_fields(tick)
            ts, end_ts = tick.exch_ts, tick.exch_ts
        else:
            reason = self._bar_fields(tick)
            ts, end_ts = tick.start_ts, tick.start_ts + ALPACA_BAR_NS
        if reason is not None:
            return reason
        reason = self._timing(st, type(tick), ts, end_ts, now_ns)
        if reason is not None:
            return reason
        if self._is_duplicate(st, tick, trade_id):
            return DropReason.DUPLICATE
        kind = type(tick)
        if ts > st.newest_ts.get(kind, 0):
            st.newest_ts[kind] = ts
        return None

    # Trades and quotes are the per-tick path: the checks are spelled out (``0 < x < inf`` is
    # ``_positive``; NaN fails every comparison), without a generator per tick.
    @staticmethod
    def _trade_fields(t: wire.Trade) -> DropReason | None:
        if not 0.0 < t.price < _INF:
            return DropReason.BAD_PRICE
        if not 0.0 < t.size < _INF:
            return DropReason.BAD_SIZE
        return None

    @staticmethod
    def _quote_fields(q: wire.Quote) -> DropReason | None:
        if not (0.0 < q.bid < _INF and 0.0 < q.ask < _INF):
            return DropReason.BAD_PRICE
        if not (0.0 <= q.bid_size < _INF and 0.0 <= q.ask_size < _INF):
            return DropReason.BAD_SIZE
        if q.bid > q.ask:
            return DropReason.CROSSED_QUOTE
        return None

    @staticmethod
    def _bar_fields(b: wire.Bar) -> DropReason | None:
        if not _positive(b.open, b.high, b.low, b.close) or (b.vwap is not None and not _positive(b.vwap)):
            return DropReason.BAD_PRICE
        if not _non_negative(b.volume) or (b.trade_count is not None and b.trade_count < 0):
            return DropReason.BAD_SIZE
        if b.high < b.low or not (b.low <= b.open <= b.high and b.low <= b.close <= b.high):
            return DropReason.BAD_BAR
        return None

    def _timing(self, st: _SymbolState, kind: type, ts: int, end_ts: int, now_ns: int) -> DropReason | None:
        if self._wall_clock:
            if ts - now_ns > self._future_ns:
                return DropReason.FUTURE
            if now_ns - end_ts > self._stale_ns:
                return DropReason.STALE
        newest = st.newest_ts.get(kind)
        if newest is not None and newest - ts > self._back_ns:
            return DropReason.OUT_OF_ORDER
        return None

    @staticmethod
    def _is_duplicate(st: _SymbolState, tick: wire.Trade | wire.Quote | wire.Bar, trade_id: object) -> bool:
        if isinstance(tick, wire.Trade):
            # Without an id, the same timestamp, price and size twice is taken as a resend.
            key = ("i", trade_id) if trade_id is not None else (tick.exch_ts, tick.price, tick.size)
            if key in st.trade_keys:
                return True
            st.trade_keys.add(key)
            st.trade_order.append(key)
            if len(st.trade_order) > _DUP_WINDOW:
                st.trade_keys.discard(st.trade_order.popleft())
            return False
        if isinstance(tick, wire.Quote):
            q = (float(tick.exch_ts), tick.bid, tick.bid_size, tick.ask, tick.ask_size)
            if q == st.last_quote:
                return True
            st.last_quote = q
            return False
        if tick.start_ts == st.last_bar_ts:
            return True
        st.last_bar_ts = tick.start_ts
        return False
