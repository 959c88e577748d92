"""Every risk limit, exercised across processes: signals from the live signal-bridge are
rejected by the risk-manager with that limit's reason.

One pipeline for the module; each case restarts only the risk manager with one limit set
tight (it reconciles its positions from the simulator at start, as after a real restart),
while the simulator, market-data, signal-bridge and execution-engine keep running. The
strategy is an RSI(3) mean reversion on quotes: it fires a few times a second and can
signal the same side repeatedly, so positions accumulate and every limit gets tested.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    control,
    metric,
    pipeline_settings,
    rejects,
    restart_risk_manager,
    risk_state,
    running_pipeline,
)

from tradingsystem.supervisor import Pipeline
from tradingsystem_testing import eventually

pytestmark = pytest.mark.e2e

SYMBOLS = ["AAPL", "MSFT"]
ORDER_QTY = 10
BASE_RISK: dict[str, Any] = {"sizing": "fixed", "order_qty": ORDER_QTY}

# Seed 7 starts AAPL at $267.36 and MSFT at $409.68: one order of ORDER_QTY is $2,674 or $4,097.
ONE_ORDER_FITS = 5_000.0  # dollars: one order fits, a position plus another order does not

# (reject reason, the tight limit). Each limit is set so that an order growing a position
# (most often any order) breaks it, within what the configuration accepts: order_qty <=
# max_order_qty <= max_position_qty and max_order_notional <= max_gross_exposure, so
# max_order_qty itself cannot be set under the order size here (tests/risk covers that check).
# The first case is also the configuration the pipeline starts with, so it starts flat: once
# one symbol holds a position (or a pending order), opening the other one is over
# max_open_positions.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("max_open_positions", {"max_open_positions": 1}),
    ("max_position", {"max_position_qty": ORDER_QTY, "max_order_qty": ORDER_QTY}),
    ("max_order_notional", {"max_order_notional": 1.0}),
    ("max_gross_exposure", {"max_gross_exposure": ONE_ORDER_FITS, "max_order_notional": ONE_ORDER_FITS}),
    # Signals carry the quote's mid; by the time one arrives the reference is mostly the
    # trade that followed that quote (at the bid or the ask), so a tiny band rejects it.
    ("price_band", {"price_band_pct": 1e-6}),
    ("order_rate", {"max_orders_per_minute": 1}),
    # Any loss at all trips the breaker (a fill at the ask is marked at the lower mid).
    ("daily_loss_limit", {"daily_loss_limit": 0.01}),
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    workdir: Path = tmp_path_factory.mktemp("limits")
    settings = pipeline_settings(
        workdir,
        symbols=SYMBOLS,
        signals={"strategy": "rsi_reversion", "params": {"period": 3}, "source": "quotes"},
        risk={**BASE_RISK, **CASES[0][1]},
        sim={"seed": 7, "tick_rate": 10},
    )
    with running_pipeline(settings, workdir) as p:
        yield p


def _configure(p: Pipeline, limit: dict[str, Any]) -> None:
    wanted = {**BASE_RISK, **limit}
    current = p.settings.risk.model_dump()
    defaults = type(p.settings.risk)().model_dump()
    # Every limit not named here goes back to its default, so only one limit is tight; the
    # ports, the state file and the control token stay as the pipeline set them.
    keep = {k for k in defaults if k in ("http_port", "state_path") or k.startswith("control_")}
    target = {**{k: v for k, v in defaults.items() if k not in keep}, **wanted}
    if any(current[k] != v for k, v in target.items()):
        restart_risk_manager(p, **target)


@pytest.mark.parametrize(("reason", "limit"), CASES, ids=[c[0] for c in CASES])
def test_tight_limit_rejects_with_its_reason(pipeline: Pipeline, reason: str, limit: dict[str, Any]) -> None:
    _configure(pipeline, limit)
    configured = risk_state(pipeline)["limits"]
    for name, value in limit.items():  # the running process took the new configuration
        if name == "price_band_pct":
            name, value = "price_band", value / 100
        assert configured[name] == pytest.approx(value), name
    eventually(lambda: rejects(pipeline, reason), f"{reason} rejects")
    if reason == "order_rate":
        # A fresh process: its window holds at most the one order allowed per minute.
        assert metric(pipeline, "risk-manager", "tradingsystem_risk_orders_approved_total") <= 1
    if reason == "daily_loss_limit":
        state = risk_state(pipeline)
        assert state["state"] == "HALTED" and state["circuit_breaker"] is True


def test_kill_switch_rejects_as_halted(pipeline: Pipeline) -> None:
    _configure(pipeline, {})
    assert control(pipeline, "halt", "e2e")["state"] == "HALTED"
    first = eventually(lambda: rejects(pipeline, "halted"), "a halted reject")
    approved = metric(pipeline, "risk-manager", "tradingsystem_risk_orders_approved_total")
    eventually(lambda: rejects(pipeline, "halted") >= first + 3, "more halted rejects")
    assert metric(pipeline, "risk-manager", "tradingsystem_risk_orders_approved_total") == approved
    assert control(pipeline, "resume", "e2e")["state"] == "ACTIVE"
    eventually(
        lambda: metric(pipeline, "risk-manager", "tradingsystem_risk_orders_approved_total") > approved,
        "approvals after resume",
    )
