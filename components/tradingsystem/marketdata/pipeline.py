"""Raw Alpaca messages -> converted, validated (and optionally aggregated) ticks, with drop counts.

No I/O (but one log line per kind of defect): accepted ticks go to ``emit``; rejected ones only increment
``tradingsystem_messages_dropped_total{service="market-data", reason=...}``. The service
wires ``emit`` to its PUB socket; tests wire it to a list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from tradingsystem.common import wire
from tradingsystem.common.config import Mode, Settings
from tradingsystem.common.metrics import LAST_TICK_TIMESTAMP, MESSAGES_DROPPED
from tradingsystem.common.services import MARKET_DATA
from tradingsystem.marketdata import convert
from tradingsystem.marketdata.bars import BarAggregator
from tradingsystem.marketdata.validation import DropReason, TickValidator

SERVICE = MARKET_DATA.name

log = logging.getLogger(__name__)

Tick = wire.Trade | wire.Quote | wire.Bar
T = TypeVar("T", wire.Trade, wire.Quote, wire.Bar)
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
        self._last_ns: dict[str, int] = {}  # set on the gauges by ``flush_metrics``
        self._errors_logged: set[type[Exception]] = set()

    def on_trade(self, m: dict[str, Any], now: int) -> None:
        t = self._admit(convert.trade, m, now, with_id=True)
        if t is None:
            return
        if self.forward_trades:
            self._emit(t, "trade")
        if self.aggregator is not None:
            b = self.aggregator.add(t)
            if b is not None:
                self._emit(b, "bar")

    def on_quote(self, m: dict[str, Any], now: int) -> None:
        q = self._admit(convert.quote, m, now)
        if q is not None:
            self._emit(q, "quote")

    def on_bar(self, m: dict[str, Any], now: int) -> None:
        b = self._admit(convert.bar, m, now)
        if b is not None:
            self._emit(b, "bar")

    def on_timer(self, now: int) -> None:
        """Close aggregated bars whose interval ended (quiet symbols)."""
        if self.aggregator is not None:
            for b in self.aggregator.due(now):
                self._emit(b, "bar")

    def _admit(
        self, conv: Callable[[dict[str, Any], int], T], m: dict[str, Any], now: int, with_id: bool = False
    ) -> T | None:
        """The converted tick if it passes validation; else None, with the drop counted.

        Never raises: alpaca-py hands a frame's messages to the handler one by one, and an
        exception would end the frame, losing the valid ticks after the bad one.
        """
        try:
            tick = conv(m, now)
            reason = self.validator.check(tick, now, convert.trade_id(m) if with_id else None)
        except convert.MalformedTick:
            reason = DropReason.MALFORMED
        except Exception as exc:
            reason = DropReason.INTERNAL_ERROR
            if type(exc) not in self._errors_logged:  # once per kind of defect, not per tick
                self._errors_logged.add(type(exc))
                log.exception("tick handling failed; dropping the message and counting it")
        if reason is not None:
            self._dropped[reason].inc()
            return None
        self._last_ns[tick.symbol] = now
        return tick

    def flush_metrics(self) -> None:
        """Set the last-tick gauges (the service calls this on its timer, not per tick)."""
        for symbol, ns in self._last_ns.items():
            self._last_ts[symbol].set(ns / 1e9)
        self._last_ns.clear()
