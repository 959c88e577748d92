"""Aggregation of validated trades into fixed-length bars aligned to the epoch.

A bar closes when a trade of a later interval arrives, or, for a quiet symbol, when the
clock passes its end (``due``), so a bar is never held back waiting for the next trade.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradingsystem.common import wire

_NS = 1_000_000_000


@dataclass(slots=True)
class _Open:
    start_ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    notional: float
    count: int

    def to_bar(self, symbol: str, origin_ts: int) -> wire.Bar:
        return wire.Bar(
            symbol=symbol,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            start_ts=self.start_ts,
            vwap=self.notional / self.volume if self.volume else None,
            trade_count=self.count,
            origin_ts=origin_ts,
        )


class BarAggregator:
    def __init__(self, interval_s: int) -> None:
        if interval_s <= 0:
            raise ValueError("bar interval must be positive")
        self._ns = interval_s * _NS
        self._open: dict[str, _Open] = {}
        self._closed: dict[str, int] = {}  # start of the last bar emitted, per symbol

    def add(self, t: wire.Trade) -> wire.Bar | None:
        """Fold a trade in; return the previous bar of its symbol if this trade closed it."""
        start = t.exch_ts - t.exch_ts % self._ns
        if start <= self._closed.get(t.symbol, -1):
            return None  # too late: its bar is already out, and bars are never re-sent
        cur = self._open.get(t.symbol)
        if cur is not None and start <= cur.start_ts:
            # Same interval (or a tolerated late trade): extend the open bar.
            cur.high = max(cur.high, t.price)
            cur.low = min(cur.low, t.price)
            cur.close = t.price
            cur.volume += t.size
            cur.notional += t.price * t.size
            cur.count += 1
            return None
        self._open[t.symbol] = _Open(start, t.price, t.price, t.price, t.price, t.size, t.price * t.size, 1)
        if cur is None:
            return None
        self._closed[t.symbol] = cur.start_ts
        # The closing trade caused the bar to be emitted: it carries its receive time.
        return cur.to_bar(t.symbol, t.origin_ts)

    def due(self, now_ns: int) -> list[wire.Bar]:
        """Close every bar whose interval has ended by ``now_ns``."""
        done = [sym for sym, cur in self._open.items() if cur.start_ts + self._ns <= now_ns]
        for sym in done:
            self._closed[sym] = self._open[sym].start_ts
        return [self._open.pop(sym).to_bar(sym, now_ns) for sym in done]
