"""market-data: Alpaca stock stream -> validated ticks -> PUB.

``MarketDataService`` is the whole service minus process concerns, so tests run it in a
thread on free ports; ``run(settings)`` adds logging, signal handling and the HTTP port.
One thread owns the asyncio loop of the stream and the PUB socket.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from tradingsystem.broker import credentials, data_stream_url
from tradingsystem.common import wire
from tradingsystem.common.bus import Publisher, load_curve
from tradingsystem.common.config import Settings
from tradingsystem.common.metrics import MESSAGES_OUT, TICKS
from tradingsystem.common.runtime import (
    BackgroundLoop,
    Health,
    HttpEndpoint,
    install_signal_handlers,
    setup_logging,
)
from tradingsystem.marketdata.backoff import Backoff
from tradingsystem.marketdata.pipeline import SERVICE, Tick, TickPipeline
from tradingsystem.marketdata.stream import AlpacaStream

_TIMER_S = 0.1  # granularity of heartbeats, bar timers and stop checks

log = logging.getLogger(__name__)


class MarketDataService(BackgroundLoop):
    name = SERVICE

    def __init__(self, settings: Settings, health: Health | None = None) -> None:
        self.settings = settings
        self.health = health or Health(SERVICE)
        self.pipeline = TickPipeline(settings, self._emit)
        # Bound metric children once: a label lookup per tick is measurable. Ticks are
        # counted in plain ints and added to the counters on the timer (every ``_TIMER_S``):
        # two locked counter increments per tick cost more than the SDK's own work on it.
        self._out = {k: MESSAGES_OUT.labels(SERVICE, k) for k in ("trade", "quote", "bar")}
        self._ticks = {k: TICKS.labels(k) for k in ("trade", "quote", "bar")}
        self._counts = dict.fromkeys(self._out, 0)
        self._pub: Publisher | None = None
        super().__init__()
        self.connected = False

    # --- lifecycle -------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Serve until ``stop`` (or ``self.stop()``) is set."""
        if stop is not None:
            self._stop = stop
        s = self.settings
        curve = load_curve(s.bus.curve.keys_dir, SERVICE) if s.bus.curve.enabled else None
        self._pub = Publisher(s.bus.bind_endpoint(s.bus.market_data), service=SERVICE, curve=curve)
        key, secret = credentials(s)
        stream = AlpacaStream(
            key,
            secret,
            feed=s.alpaca.feed,
            url=data_stream_url(s),
            backoff=Backoff(s.market_data.reconnect_min_s, s.market_data.reconnect_max_s),
            on_connection=self._on_connection,
        )
        self._subscribe(stream)
        try:
            asyncio.run(stream.serve(self._stop, self._on_timer, _TIMER_S))
        finally:
            self._flush_metrics()
            self.health.set_ready(False, stream="stopped")
            self._pub.close()

    def _subscribe(self, stream: AlpacaStream) -> None:
        md, symbols, p = self.settings.market_data, self.settings.symbols, self.pipeline
        if md.trades or p.aggregator is not None:
            stream.subscribe_trades(_handler(p.on_trade), *symbols)
        if md.quotes:
            stream.subscribe_quotes(_handler(p.on_quote), *symbols)
        # Our own aggregated bars replace Alpaca's minute bars on the bar topic.
        if md.bars and p.aggregator is None:
            stream.subscribe_bars(_handler(p.on_bar), *symbols)

    def _on_connection(self, up: bool) -> None:
        self.connected = up
        self.health.set_ready(up, stream="connected" if up else "disconnected")

    def _on_timer(self) -> None:
        assert self._pub is not None
        state = "connected" if self.connected else "disconnected"
        self._pub.heartbeat(state, self.settings.bus.heartbeat_interval_s)
        self.pipeline.on_timer(wire.now_ns())
        self._flush_metrics()

    def _flush_metrics(self) -> None:
        for kind, n in self._counts.items():
            if n:
                self._out[kind].inc(n)
                self._ticks[kind].inc(n)
                self._counts[kind] = 0
        self.pipeline.flush_metrics()

    def _emit(self, msg: Tick, kind: str) -> None:
        assert self._pub is not None
        self._pub.publish(msg)
        self._counts[kind] += 1


def _handler(fn: Callable[[dict[str, Any], int], None]) -> Any:
    """alpaca-py insists on coroutine handlers; the work is synchronous and stamps receive time."""

    async def handler(msg: dict[str, Any]) -> None:
        fn(msg, time.time_ns())

    return handler


def run(settings: Settings) -> int:
    setup_logging(settings.log_level, settings.log_format, SERVICE)
    stop = threading.Event()
    install_signal_handlers(stop)
    health = Health(SERVICE)
    http = HttpEndpoint(settings.bus.bind_host, settings.market_data.http_port, health).start()
    log.info(
        "market-data starting",
        extra={
            "fields": {"mode": settings.mode.value, "symbols": settings.symbols, "feed": settings.alpaca.feed}
        },
    )
    try:
        MarketDataService(settings, health).run(stop)
    finally:
        http.stop()
    log.info("market-data stopped")
    return 0
