"""The whole pipeline over real ZeroMQ on 127.0.0.1: simulator -> market-data -> signal-bridge
-> risk-manager -> execution-engine -> simulator, each service its own process.

One pipeline for the module; the tests run in file order and build on each other: ticks
flow and a strategy fires, orders fill, malformed ticks injected by the simulator are
dropped and counted, the order-rate limit and the kill switch reject, and once trading is
halted and settled the risk manager's books equal the simulator's ledger exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from e2e_helpers import (
    control,
    ledger,
    metric,
    pipeline_settings,
    post_json,
    rejects,
    risk_state,
    running_pipeline,
)

from tradingsystem.common.services import start_order
from tradingsystem.supervisor import Pipeline, get_json
from tradingsystem_testing import eventually

pytestmark = pytest.mark.e2e

SYMBOLS = ["AAPL", "MSFT"]
ORDERS_PER_MINUTE = 30
MALFORMED = 9
# What market-data calls the simulator's malformed ticks (negative price, crossed quote, bad bar).
MALFORMED_REASONS = ("bad_price", "crossed_quote", "bad_bar")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    workdir: Path = tmp_path_factory.mktemp("pipeline")
    settings = pipeline_settings(
        workdir,
        symbols=SYMBOLS,
        # A fast crossover on trades: a few signals per second at 10 steps/s.
        signals={"strategy": "ma_crossover", "params": {"fast": 3, "slow": 12}, "source": "trades"},
        risk={"sizing": "fixed", "order_qty": 5, "max_orders_per_minute": ORDERS_PER_MINUTE},
        sim={"seed": 42, "tick_rate": 10},
    )
    with running_pipeline(settings, workdir) as p:
        yield p


def test_the_supervisor_started_the_simulator_then_consumers_first(pipeline: Pipeline) -> None:
    # Pipeline.start waits for each /readyz before the next process: procs is the start order.
    assert list(pipeline.procs) == [s.name for s in start_order(with_sim=True)]
    assert list(pipeline.procs) == ["sim", "execution-engine", "risk-manager", "market-data", "signal-bridge"]


def test_ticks_flow_a_strategy_fires_and_orders_fill(pipeline: Pipeline) -> None:
    eventually(
        lambda: metric(pipeline, "market-data", "tradingsystem_marketdata_ticks_total"),
        "ticks at market-data",
    )
    eventually(lambda: metric(pipeline, "signal-bridge", "tradingsystem_signals_total"), "signals")
    eventually(
        lambda: metric(pipeline, "risk-manager", "tradingsystem_risk_orders_approved_total"),
        "approved orders",
    )
    eventually(lambda: metric(pipeline, "execution-engine", "tradingsystem_fills_total") >= 2, "fills")
    snap = ledger(pipeline)
    assert snap["fills"], "the simulator saw no fill"
    assert all(o["client_order_id"].startswith("ts-") for o in snap["orders"])


def _malformed_drops(p: Pipeline) -> float:
    return sum(
        metric(p, "market-data", "tradingsystem_messages_dropped_total", service="market-data", reason=r)
        for r in MALFORMED_REASONS
    )


def test_malformed_ticks_are_rejected_and_counted(pipeline: Pipeline) -> None:
    assert _malformed_drops(pipeline) == 0
    status, _ = post_json(pipeline.url("sim", "/_sim/faults"), {"malformed_ticks_next": MALFORMED})
    assert status == 200
    eventually(lambda: _faults_left(pipeline) == 0, "the simulator to send every malformed tick")
    eventually(lambda: _malformed_drops(pipeline) == MALFORMED, "every malformed tick counted")
    # Valid ticks keep flowing afterwards and nothing else is counted as malformed.
    ticks = metric(pipeline, "market-data", "tradingsystem_marketdata_ticks_total")
    eventually(
        lambda: metric(pipeline, "market-data", "tradingsystem_marketdata_ticks_total") > ticks + 20,
        "valid ticks after the faults",
    )
    assert _malformed_drops(pipeline) == MALFORMED


def _faults_left(p: Pipeline) -> bool:
    status, faults = get_json(p.url("sim", "/_sim/faults"))
    return status == 200 and faults["malformed_ticks_next"] == 0


def test_order_rate_limit_rejects(pipeline: Pipeline) -> None:
    eventually(lambda: rejects(pipeline, "order_rate"), "order_rate rejects")


def test_kill_switch_halts_every_order(pipeline: Pipeline) -> None:
    assert control(pipeline, "halt", "e2e kill switch")["state"] == "HALTED"
    first = eventually(lambda: rejects(pipeline, "halted"), "a halted reject")
    # Decisions taken before the halt are counted before the first halted reject (one thread).
    approved = metric(pipeline, "risk-manager", "tradingsystem_risk_orders_approved_total")
    eventually(lambda: rejects(pipeline, "halted") >= first + 3, "more halted rejects")
    assert metric(pipeline, "risk-manager", "tradingsystem_risk_orders_approved_total") == approved
    state = risk_state(pipeline)
    assert state["state"] == "HALTED" and state["kill_switch"] is True


def _wait_settled(p: Pipeline) -> dict[str, object]:
    """Every approved order has reached a final state at the broker and been reported back."""

    def settled() -> dict[str, object] | None:
        snap = ledger(p)
        if any(o["status"] in ("new", "partially_filled") for o in snap["orders"]):
            return None
        if risk_state(p)["open_orders"] != 0:
            return None
        if metric(p, "execution-engine", "tradingsystem_fills_total") != len(snap["fills"]):
            return None
        return snap

    return eventually(settled, "open orders to settle")


def test_positions_and_pnl_match_the_simulator_ledger_exactly(pipeline: Pipeline) -> None:
    snap = _wait_settled(pipeline)
    state = risk_state(pipeline)
    orders, fills = snap["orders"], snap["fills"]
    assert isinstance(orders, list) and isinstance(fills, list)

    # Every approved order reached the broker exactly once, under a unique client_order_id.
    cids = [o["client_order_id"] for o in orders]
    assert len(set(cids)) == len(cids)
    approved = metric(pipeline, "risk-manager", "tradingsystem_risk_orders_approved_total")
    assert len(orders) == approved
    assert all(o["status"] == "filled" for o in orders)
    # ... and every fill was reported by the execution engine.
    assert metric(pipeline, "execution-engine", "tradingsystem_fills_total") == len(fills)
    assert metric(pipeline, "execution-engine", "tradingsystem_orders_total", state="filled") == len(orders)
    assert {f["client_order_id"] for f in fills} == set(cids)

    # Positions, average prices and realized P&L: the same decimals on both sides.
    book = state["positions"]
    ledger_positions = snap["positions"]
    assert isinstance(ledger_positions, dict)
    for symbol in sorted(set(book) | set(ledger_positions)):
        mine = book.get(symbol, {"qty": 0.0, "avg_price": 0.0, "realized": 0.0})
        theirs = ledger_positions.get(symbol, {"qty": "0", "avg_entry_price": "0", "realized_pl": "0"})
        assert mine["qty"] == float(theirs["qty"]), symbol
        assert mine["avg_price"] == float(theirs["avg_entry_price"]), symbol
        assert mine["realized"] == float(theirs["realized_pl"]), symbol
    realized = sum((Decimal(p["realized_pl"]) for p in ledger_positions.values()), Decimal(0))
    assert state["pnl"]["realized"] == float(realized.quantize(Decimal("0.01")))
    # The comparison is only meaningful if positions were both opened and closed.
    assert len(fills) >= 4
    assert any(Decimal(p["realized_pl"]) != 0 for p in ledger_positions.values())
