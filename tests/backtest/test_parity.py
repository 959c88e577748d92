"""Parity: the same tick sequence through the live pipeline (the simulator replaying a CSV,
market-data, signal-bridge, risk-manager and execution-engine as processes over ZeroMQ) and
through the backtest gives the same orders: symbol, side, quantity and the risk decision
(approved, or rejected with the same reason).

The pipeline starts on a flat placeholder replay (quotes at 99.99/100.01); once every
service is up and the test listens on the risk manager's bus, the replay file is replaced
by the test sequence and the simulator restarts its replay (``/_sim/reset``). The sequence
opens with a flat lead-in at exactly 100, so every average is exactly 100 in both runs
whatever the services saw before.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from parity_data import placeholder, sequence

sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))
from e2e_helpers import pipeline_settings, post_json, running_pipeline

from tradingsystem.backtest.core import BacktestInputs
from tradingsystem.backtest.data import load_csv
from tradingsystem.backtest.runner import run_backtest
from tradingsystem.common import wire
from tradingsystem.common.bus import Subscriber
from tradingsystem.supervisor import get_json
from tradingsystem_testing import eventually

pytestmark = pytest.mark.e2e

SYMBOLS = ["AAPL", "MSFT"]
Order = tuple[str, str, float, str]  # symbol, side, qty, "approved" or the reject reason


def _decisions_live(sub: Subscriber, want: int, deadline_s: float) -> list[Order]:
    """Orders and rejections from the risk manager's bus until ``want`` arrived and 3 s of quiet."""
    out: list[Order] = []
    deadline = time.monotonic() + deadline_s
    quiet_until = None
    while time.monotonic() < deadline:
        if sub.sock.poll(200) == 0:
            if len(out) >= want and quiet_until is not None and time.monotonic() > quiet_until:
                break
            continue
        msg = sub.recv().msg
        if isinstance(msg, wire.OrderIntent):
            out.append((msg.symbol, msg.side.value, msg.qty, "approved"))
        elif isinstance(msg, wire.Rejection):
            out.append((msg.symbol, msg.side.value, msg.qty, msg.reason.value))
        quiet_until = time.monotonic() + 3.0
    return out


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "replay.csv"
    placeholder(path, SYMBOLS, steps=6000)
    yield path


def test_the_live_pipeline_and_the_backtest_make_the_same_orders(tmp_path: Path, replay: Path) -> None:
    settings = pipeline_settings(
        tmp_path,
        symbols=SYMBOLS,
        signals={
            "strategy": "ma_crossover",
            "params": {"fast": 5, "slow": 15, "average": "sma", "full_strength_pct": 0.3},
            "source": "trades",
        },
        risk={
            "sizing": "strength",
            "order_qty": 20,
            "max_order_qty": 20,
            "max_order_notional": 1550,  # strong signals are rejected (16 shares at ~100)
            "max_position_qty": 20,  # and so are some that would grow a position too far
            "max_orders_per_minute": 1000,  # wall clock live, file time in the backtest
            "max_gross_exposure": 1e9,
            "daily_loss_limit": 1e9,
        },
        sim={"replay_path": str(replay), "tick_rate": 20},
    )
    test_csv = tmp_path / "sequence.csv"
    sequence(test_csv, SYMBOLS, lead_in=30, steps=400, seed=5)
    result, _ = run_backtest(load_csv(test_csv, SYMBOLS), BacktestInputs(settings=settings))
    expected: list[Order] = [
        (d.symbol, d.side.value, d.qty, d.reason or d.decision.value) for d in result.decisions
    ]
    assert len(expected) > 20 and {o[3] for o in expected} >= {
        "approved",
        "max_order_notional",
        "max_position",
    }

    with running_pipeline(settings, tmp_path) as p:
        sub = Subscriber(settings.bus.risk, (wire.TOPIC_ORDER, wire.TOPIC_REJECT))
        try:
            time.sleep(1.0)  # a SUB socket drops what is published before its connect completes
            replay.write_bytes(test_csv.read_bytes())
            status, _ = post_json(p.url("sim", "/_sim/reset"), {})
            assert status == 200
            live = _decisions_live(sub, len(expected), deadline_s=180)
            eventually(
                lambda: get_json(p.url("sim", "/_sim/status"))[1]["replay_done"], "the replay to finish"
            )
        finally:
            sub.sock.close(linger=0)
    assert live == expected
