"""Warm the indicators at start with recent 1-minute bars from the historical data API.

Without this a 30-period average needs 30 inputs after every restart before it can signal.
Failure to fetch is logged and the service starts cold: history improves signals but is not
needed to produce them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from alpaca.common.enums import Sort
from alpaca.data.enums import DataFeed
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame

from tradingsystem.broker import historical_data_client
from tradingsystem.common.config import Settings
from tradingsystem.signals.engine import SignalEngine

log = logging.getLogger(__name__)

LOOKBACK = timedelta(days=7)  # covers weekends and holidays before the last N minute bars
REQUEST_TIMEOUT_S = 10.0


def fetch_bars(settings: Settings, symbol: str, count: int) -> list[dict[str, Any]]:
    """The last ``count`` minute bars of ``symbol``, oldest first (raw Alpaca dicts)."""
    req = StockBarsRequest(
        symbol_or_symbols=symbol,
        timeframe=TimeFrame.Minute,
        start=datetime.now(UTC) - LOOKBACK,
        limit=count,
        sort=Sort.DESC,
        feed=DataFeed(settings.alpaca.feed),
    )
    # A stalled server must not block the start: the client has a timeout on every request.
    raw = historical_data_client(settings, REQUEST_TIMEOUT_S).get_stock_bars(req)
    bars = raw.get(symbol, []) if isinstance(raw, dict) else []
    return list(reversed(bars))


def warm(engine: SignalEngine, settings: Settings) -> dict[str, int]:
    """Feed history into ``engine`` (no signals come out of it); return bars used per symbol."""
    used: dict[str, int] = {}
    for symbol in settings.symbols:
        try:
            bars = fetch_bars(settings, symbol, settings.signals.warmup_bars)
            for b in bars:
                engine.warm(symbol, float(b["c"]), float(b["h"]), float(b["l"]))
        except Exception as exc:  # any failure (network, auth, format) only costs the warm start
            log.warning(
                "warm-up failed; starting cold",
                extra={"fields": {"symbol": symbol, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}},
            )
            continue
        used[symbol] = len(bars)
    log.info("indicators warmed", extra={"fields": {"bars": used}})
    return used
