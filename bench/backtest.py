"""Backtest speed: bars per second through the whole backtest (signal engine, risk engine,
fills, equity curve) on one symbol, against a floor measured in the same run: the live
signal engine alone over the same bars (the strategy's own cost, which no backtest of it can
beat). Goal (issue #16): one million bars in under 30 s on a 2-core machine.
"""

from __future__ import annotations

import math
import os
import random
import time

from bench.table import render
from tradingsystem.backtest.core import BacktestInputs, Event
from tradingsystem.backtest.runner import build_signal_engine, run_backtest
from tradingsystem.common import wire
from tradingsystem.common.config import Settings

GOAL_S = 30.0
MINUTE_NS = 60 * 1_000_000_000
START_NS = 1_704_205_800 * 1_000_000_000  # 2024-01-02 14:30 UTC


def minute_bars(n: int, symbol: str = "SPY", seed: int = 1) -> list[Event]:
    """``n`` one-minute bars of a random walk in cents (deterministic in ``seed``)."""
    rng = random.Random(seed)
    price = 400.0
    out: list[Event] = []
    for i in range(n):
        o = price
        c = round(o * math.exp(rng.gauss(0.0, 0.0008)), 2)
        h = round(max(o, c) + abs(rng.gauss(0.0, 0.05)), 2)
        low = round(min(o, c) - abs(rng.gauss(0.0, 0.05)), 2)
        ts = START_NS + i * MINUTE_NS
        out.append(
            wire.Bar(symbol=symbol, open=o, high=h, low=low, close=c, volume=100.0, start_ts=ts, origin_ts=ts)
        )
        price = c
    return out


def settings() -> Settings:
    return Settings(
        symbols=["SPY"],
        signals={"strategy": "ma_crossover", "params": {"fast": 10, "slow": 30}, "source": "bars"},
        risk={"order_qty": 10, "max_order_notional": 1e9, "max_gross_exposure": 1e9},
    )


def main(quick: bool = False) -> None:
    n = 100_000 if quick else 1_000_000
    t0 = time.perf_counter()
    bars = minute_bars(n)
    gen_s = time.perf_counter() - t0
    s = settings()

    engine = build_signal_engine(s)
    t0, c0 = time.perf_counter(), time.process_time()
    for b in bars:
        engine.on_tick(b)  # type: ignore[arg-type]
    floor_s, floor_cpu = time.perf_counter() - t0, time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    _, summary = run_backtest(bars, BacktestInputs(settings=s))
    run_s, run_cpu = time.perf_counter() - t0, time.process_time() - c0

    # CPU seconds are shown beside wall seconds: on a shared host the wall clock also counts
    # the time other processes held the cores.
    rows = [
        ("signal engine alone (floor)", n, floor_s, floor_cpu, n / floor_s, 1.0),
        ("backtest: signals+risk+fills+equity+summary", n, run_s, run_cpu, n / run_s, run_s / floor_s),
    ]
    print(render(("what", "bars", "wall s", "cpu s", "bars/s (wall)", "x floor"), rows))
    print(
        f"\n{summary.orders:,} orders, {summary.trades:,} round trips, {summary.rejections:,} rejections; "
        f"bar generation {gen_s:.1f}s (not counted)"
    )
    if not quick:
        load = os.getloadavg()[0]

        def verdict(s: float) -> str:
            return "met" if s < GOAL_S else "MISSED"

        print(
            f"goal: {n:,} bars in < {GOAL_S:.0f}s: wall {run_s:.1f}s {verdict(run_s)}, "
            f"cpu {run_cpu:.1f}s {verdict(run_cpu)} (load average {load:.1f} on {os.cpu_count()} cores)"
        )
