"""Indicator warm-up from the historical bars API, against the simulator."""

from __future__ import annotations

import pytest

from tradingsystem.common import wire
from tradingsystem.common.config import Settings, SignalSettings, SimSettings
from tradingsystem.signals.engine import SignalEngine
from tradingsystem.signals.service import build_engine
from tradingsystem.signals.warmup import fetch_bars, warm
from tradingsystem_testing import free_port
from tradingsystem_testing.sim import SimulatorThread

SYMBOLS = ["AAPL", "MSFT"]


def settings(port: int, bars: int = 50) -> Settings:
    return Settings(
        symbols=SYMBOLS,
        sim=SimSettings(port=port),
        signals=SignalSettings(params={"fast": 3, "slow": 8}, warmup_bars=bars),
    )


def jumps(engine: SignalEngine, last: float) -> list[wire.Signal]:
    """Signals from a 50% jump up then down: either flips a known crossover state."""
    ticks = [
        wire.Trade(symbol="AAPL", price=p, size=1, exch_ts=i) for i, p in enumerate((last * 1.5, last * 0.5))
    ]
    return [sig for t in ticks if (sig := engine.on_tick(t)) is not None]


def test_warm_engine_is_ready_to_signal_on_the_first_ticks() -> None:
    with SimulatorThread(SYMBOLS) as sim:
        s = settings(sim.port)
        bars = fetch_bars(s, "AAPL", 50)
        assert len(bars) == 50
        times = [b["t"] for b in bars]
        assert times == sorted(times)  # oldest first: the most recent 50, in order
        warmed = build_engine(s)
        assert warm(warmed, s) == {"AAPL": 50, "MSFT": 50}
    last = float(bars[-1]["c"])
    assert jumps(warmed, last)  # state known: a jump flips the crossover at once
    assert jumps(build_engine(s), last) == []  # a cold engine cannot signal yet


def test_unreachable_history_starts_cold_without_failing(caplog: pytest.LogCaptureFixture) -> None:
    s = settings(free_port())
    assert warm(build_engine(s), s) == {}
    assert "warm-up failed" in caplog.text
