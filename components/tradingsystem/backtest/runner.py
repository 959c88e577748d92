"""Glue between the configuration and the pure core: build the live signal engine from the
settings, run, summarise. No I/O beyond reading the optional model file."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tradingsystem.backtest.core import BacktestInputs, BacktestResult, Event, run
from tradingsystem.backtest.metrics import Summary, summarize
from tradingsystem.common.config import Settings
from tradingsystem.signals.engine import SignalEngine
from tradingsystem.signals.service import build_engine


def build_signal_engine(settings: Settings) -> SignalEngine:
    """The signal-bridge's own constructor: a bad strategy, parameter or model file raises
    ``ConfigError`` naming the field. The common features are computed only for a model
    (a live signal also carries them for observability; no decision reads them otherwise)."""
    return build_engine(settings, features=False)


def run_backtest(
    events: Sequence[Event],
    inputs: BacktestInputs,
    engine: SignalEngine | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[BacktestResult, Summary]:
    engine = engine if engine is not None else build_signal_engine(inputs.settings)
    result = run(events, inputs, engine, progress=progress)
    return result, summarize(result)
