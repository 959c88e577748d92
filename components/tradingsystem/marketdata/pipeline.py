"""Raw Alpaca messages -> converted, validated (and optionally aggregated) ticks, with drop counts.

No I/O: accepted ticks go to ``emit``; rejected ones only increment
``tradingsystem_messages_dropped_total{service="market-data", reason=...}``. The service
wires ``emit`` to its PUB socket; tests wire it to a list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tradingsystem.common import wire
from tradingsystem.common.config import Mode, Settings
from tradingsystem.common.metrics import LAST_TICK_TIMESTAMP, MESSAGES_DROPPED
from tradingsystem.common.services import MARKET_DATA
from tradingsystem.marketdata import convert
from tradingsystem.marketdata.bars import BarAggregator
from tradingsystem.marketdata.validation import DropReason, TickValidator

SERVICE = MARKET_DATA.name

Tick = wire.Trade | wire.Quote | wire.Bar
Emit = Callable[[Tick, str], None]  # (message, kind: "trade" | "quote" | "bar")


class TickPipeline:
    def __init__(self, settings: Settings, emit: Emit) -> None:
        md = settings.market_data
        self.validator = TickValidator(
            settings.symbols,
            stale_after_s=md.stale_after_s,
            max_backwards_s=md.max_backwards_s,
            max_future_s=md.max_future_s,
            # A simulator replaying a recording stamps ticks with their recorded times.
            wall_clock=not (settings.mode is Mode.SIM and settings.sim.replay_path is not None),
        )
        self.aggregator = BarAggregator(md.bar_interval_s) if md.bar_interval_s else None
        self.forward_trades = md.trades
        self._emit = emit
        # Bound metric children once: a label lookup per tick is measurable.
        self._dropped = {r: MESSAGES_DROPPED.labels(SERVICE, r.value) for r in DropReason}
        self._last_ts = {s: LAST_TICK_TIMESTAMP.labels(s) for s in settings.symbols}

    def on_trade(self, m: dict[str, Any], now: int) -> None:
        try:
            t = convert.trade(m, now)
        except convert.MalformedTick:
            self._dropped[DropReason.MALFORMED].inc()
            return
        if not self._accept(t, now, m.get("i")):
            return
        if self.forward_trades:
            self._emit(t, "trade")
        if self.aggregator is not None:
            b = self.aggregator.add(t)
            if b is not None:
                self._emit(b, "bar")

    def on_quote(self, m: dict[str, Any], now: int) -> None:
        try:
            q = convert.quote(m, now)
        except convert.MalformedTick:
            self._dropped[DropReason.MALFORMED].inc()
            return
        if self._accept(q, now):
            self._emit(q, "quote")

    def on_bar(self, m: dict[str, Any], now: int) -> None:
        try:
            b = convert.bar(m, now)
        except convert.MalformedTick:
            self._dropped[DropReason.MALFORMED].inc()
            return
        if self._accept(b, now):
            self._emit(b, "bar")

    def on_timer(self, now: int) -> None:
        """Close aggregated bars whose interval ended (quiet symbols)."""
        if self.aggregator is not None:
            for b in self.aggregator.due(now):
                self._emit(b, "bar")

    def _accept(self, tick: Tick, now: int, trade_id: object = None) -> bool:
        reason = self.validator.check(tick, now, trade_id)
        if reason is not None:
            self._dropped[reason].inc()
            return False
        self._last_ts[tick.symbol].set(now / 1e9)
        return True
