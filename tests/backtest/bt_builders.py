"""Builders for backtest tests: settings, bars and trades with little typing, and a daily
random walk in cents (deterministic in its seed).

Imported by the test modules (conftest puts this directory on sys.path: importlib mode)."""

from __future__ import annotations

import csv
import math
import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradingsystem.backtest.core import BacktestInputs, BacktestResult, Costs, Event
from tradingsystem.backtest.runner import run_backtest
from tradingsystem.common import wire
from tradingsystem.common.config import Settings
from tradingsystem.risk.engine import TRADING_TZ

DAY_NS = 24 * 3600 * 1_000_000_000
MINUTE_NS = 60 * 1_000_000_000
# 10:00 in New York on a Monday.
T0 = int(datetime(2026, 3, 2, 15, 0, tzinfo=UTC).timestamp()) * 1_000_000_000
BIG = 1e12  # a limit no test reaches


def settings(symbols: tuple[str, ...] = ("SPY",), *, source: str = "bars", **sections: Any) -> Settings:
    """Fixed sizing of 10, limits out of the way unless a test sets them."""
    risk = {
        "sizing": "fixed",
        "order_qty": 10,
        "max_order_qty": BIG,
        "max_order_notional": BIG,
        "max_position_qty": BIG,
        "max_gross_exposure": BIG,
        "daily_loss_limit": BIG,
        "max_orders_per_minute": 1000,
        **sections.pop("risk", {}),
    }
    signals = {
        "strategy": "ma_crossover",
        "params": {"fast": 2, "slow": 3, "average": "sma"},
        "source": source,
        **sections.pop("signals", {}),
    }
    return Settings(symbols=list(symbols), risk=risk, signals=signals, **sections)


def bar(
    ts: int,
    o: float,
    h: float | None = None,
    low: float | None = None,
    c: float | None = None,
    sym: str = "SPY",
) -> wire.Bar:
    c = o if c is None else c
    h = max(o, c) if h is None else h
    low = min(o, c) if low is None else low
    return wire.Bar(symbol=sym, open=o, high=h, low=low, close=c, volume=100.0, start_ts=ts, origin_ts=ts)


def closes(prices: list[float], *, step_ns: int = MINUTE_NS, t0: int = T0, sym: str = "SPY") -> list[Event]:
    """Bars that open and close at the same price: fills at the next open are easy to read."""
    return [bar(t0 + i * step_ns, p, sym=sym) for i, p in enumerate(prices)]


def trade(ts: int, price: float, sym: str = "SPY") -> wire.Trade:
    return wire.Trade(symbol=sym, price=price, size=100.0, exch_ts=ts, origin_ts=ts)


def run(
    events: list[Event], s: Settings | None = None, *, cash: float = 100_000, **inputs: Any
) -> BacktestResult:
    costs = inputs.pop("costs", Costs())
    result, _ = run_backtest(
        events,
        BacktestInputs(settings=s or settings(), initial_cash=Decimal(str(cash)), costs=costs, **inputs),
    )
    return result


# A crossover every few bars: up, down, up ... with sma(2) vs sma(3).
ZIGZAG = [100.0, 100.0, 100.0, 103.0, 106.0, 101.0, 96.0, 99.0, 104.0, 108.0, 102.0, 97.0]


def daily_walk(n: int, seed: int = 3, start: date = date(2019, 1, 2), sym: str = "SPY") -> list[wire.Bar]:
    """``n`` weekday bars in cents, stamped at midnight New York (as Alpaca stamps daily bars)."""
    rng = random.Random(seed)
    price, d = 100.0, start
    out: list[wire.Bar] = []
    while len(out) < n:
        if d.weekday() < 5:
            o = round(price * math.exp(rng.gauss(0, 0.004)), 2)
            c = round(o * math.exp(rng.gauss(0.0002, 0.015)), 2)
            h = round(max(o, c) * (1 + abs(rng.gauss(0, 0.004))), 2)
            low = round(min(o, c) * (1 - abs(rng.gauss(0, 0.004))), 2)
            ts = int(datetime.combine(d, time(), TRADING_TZ).timestamp()) * 1_000_000_000
            out.append(bar(ts, o, h, low, c, sym=sym))
            price = c
        d += timedelta(days=1)
    return out


def write_bars(path: Path, bars: list[wire.Bar], *, dates: bool = False) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "symbol", "open", "high", "low", "close", "volume"])
        for b in bars:
            ts = (
                datetime.fromtimestamp(b.start_ts / 1e9, TRADING_TZ).date().isoformat()
                if dates
                else b.start_ts
            )
            w.writerow([ts, b.symbol, b.open, b.high, b.low, b.close, b.volume])
    return path
