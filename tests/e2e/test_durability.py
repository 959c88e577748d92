"""Nothing forgotten across restarts: kill -9 and SIGTERM of real service processes during
simulated trading, over real ZeroMQ, against the simulator.

One pipeline for the module; each test injects one fault, restarts the process as Kubernetes
would (same config, same state files), then halts trading, waits until it settles and checks
the three books — the risk manager's, the broker's ledger and the execution-engine's store —
are equal, that the broker never saw a duplicate client_order_id or an order sent later than
the age limit, and that no position ever exceeded its limit at the broker.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e_helpers import (
    control,
    metric,
    pipeline_settings,
    post_json,
    running_pipeline,
    settings_yaml,
)

from tradingsystem.sim.auth import DEFAULT_KEY_ID, DEFAULT_SECRET
from tradingsystem.supervisor import Pipeline
from tradingsystem_testing import durability as checks
from tradingsystem_testing import eventually
from tradingsystem_testing.durability import risk_state, store_rows

pytestmark = pytest.mark.e2e

SYMBOLS = ["AAPL", "MSFT"]
MAX_POSITION = 40
MAX_AGE_S = 8.0


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    workdir: Path = tmp_path_factory.mktemp("durability")
    settings = pipeline_settings(
        workdir,
        symbols=SYMBOLS,
        signals={"strategy": "ma_crossover", "params": {"fast": 3, "slow": 12}, "source": "trades"},
        risk={
            "sizing": "fixed",
            "order_qty": 5,
            "max_order_qty": MAX_POSITION,  # at most a position (RISK_LIMIT_RULES); orders are 5
            "max_position_qty": MAX_POSITION,
            "max_orders_per_minute": 120,
            "resync_interval_s": 1.0,
        },
        execution={"resubmit_max_age_s": MAX_AGE_S, "request_timeout_s": 5, "max_queued_intents": 5},
        sim={"seed": 11, "tick_rate": 10},
    )
    with running_pipeline(settings, workdir) as p:
        eventually(lambda: metric(p, "execution-engine", "tradingsystem_fills_total") >= 2, "first fills")
        yield p


def db(p: Pipeline) -> Path:
    return Path(p.settings.execution.db_path)


def faults(p: Pipeline, **changes: Any) -> None:
    status, _ = post_json(p.url("sim", "/_sim/faults"), changes)
    assert status == 200


def restart(p: Pipeline, name: str, sig: int = signal.SIGKILL, **risk: Any) -> None:
    """Kill ``name`` with ``sig`` and start it again as Kubernetes would: same state files."""
    p.stop_process(name, sig)
    if risk:
        p.settings = p.settings.model_copy(
            update={"risk": p.settings.risk.model_copy(update=risk)}, deep=True
        )
        p.config_path.write_text(settings_yaml(p.settings))
    p.start_process(name)
    p.wait_ready(name, timeout=90)


def approved(p: Pipeline) -> float:
    return metric(p, "risk-manager", "tradingsystem_risk_orders_approved_total")


def settle_and_check(p: Pipeline) -> None:
    checks.settle_and_check(p, db(p), max_age_s=MAX_AGE_S, max_position=MAX_POSITION)


def pending_at_broker(p: Pipeline) -> str | None:
    """A client_order_id the broker holds while the engine still has it PENDING_SUBMIT."""
    pending = {row[0] for row in store_rows(db(p)) if row[4] == "pending_submit"}
    orders = requests.get(p.url("sim", "/_sim/ledger"), timeout=5).json()["orders"]
    return next((o["client_order_id"] for o in orders if o["client_order_id"] in pending), None)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill9", "sigterm"])
def test_execution_engine_restart_with_fills_landing_while_down(pipeline: Pipeline, sig: int) -> None:
    p = pipeline
    restarts = metric(p, "risk-manager", "tradingsystem_publisher_restarts_total")
    # The broker takes the next order but holds its answer: the engine dies not knowing it filled.
    faults(p, order_hang_next=1, hang_s=4.0)
    cid = eventually(lambda: pending_at_broker(p), "an order filled at the broker, unconfirmed at the engine")
    p.stop_process("execution-engine", sig)
    before = approved(p)
    # Approvals go on while the engine is down: published to nobody, replayed on resync.
    eventually(lambda: approved(p) >= before + 2, "approvals while the engine is down")
    p.start_process("execution-engine")
    p.wait_ready("execution-engine", timeout=90)
    eventually(
        lambda: metric(p, "risk-manager", "tradingsystem_publisher_restarts_total") > restarts,
        "the risk manager to see the new engine",
    )
    settle_and_check(p)
    assert cid not in (risk_state(p) or {}).get("open_order_ids", [cid])


def test_risk_manager_kill9_while_halted_comes_back_halted(pipeline: Pipeline) -> None:
    p = pipeline
    control(p, "halt", "operator pressed the button")
    restart(p, "risk-manager")
    state = risk_state(p) or {}
    assert (state["state"], state["kill_switch"]) == ("HALTED", True)
    rejected = metric(p, "risk-manager", "tradingsystem_risk_rejects_total", reason="halted")
    eventually(
        lambda: metric(p, "risk-manager", "tradingsystem_risk_rejects_total", reason="halted") > rejected,
        "signals rejected as halted after the restart",
    )
    assert metric(p, "risk-manager", "tradingsystem_risk_orders_approved_total") == 0
    control(p, "resume", "test over")
    settle_and_check(p)


def test_risk_manager_kill9_while_latched_by_the_loss_breaker(pipeline: Pipeline) -> None:
    p = pipeline
    # Any loss trips a 1-cent limit (a fill at the ask is marked at the lower mid).
    restart(p, "risk-manager", signal.SIGTERM, daily_loss_limit=0.01)
    eventually(lambda: (risk_state(p) or {}).get("circuit_breaker"), "the circuit breaker")
    # Back with a generous limit: the loss alone would not trip it; the latch must hold the day.
    restart(p, "risk-manager", signal.SIGKILL, daily_loss_limit=5000.0)
    state = risk_state(p) or {}
    assert (state["state"], state["circuit_breaker"]) == ("HALTED", True)
    control(p, "resume", "limit raised")
    assert (risk_state(p) or {})["state"] == "ACTIVE"
    settle_and_check(p)


def test_risk_manager_kill9_with_open_orders_at_the_broker(pipeline: Pipeline) -> None:
    p = pipeline
    auth = {"APCA-API-KEY-ID": DEFAULT_KEY_ID, "APCA-API-SECRET-KEY": DEFAULT_SECRET}
    body = {
        "symbol": "AAPL",
        "qty": "30",
        "side": "buy",
        "type": "limit",
        "limit_price": "1.00",  # far below the market: stays open
        "time_in_force": "day",
        "client_order_id": "resting-1",
    }
    resp = requests.post(p.url("sim", "/v2/orders"), json=body, headers=auth, timeout=5)
    assert resp.status_code == 200, resp.text
    restart(p, "risk-manager")
    state = eventually(
        lambda: (s := risk_state(p)) and "resting-1" in s["open_order_ids"] and s, "the resting order counted"
    )
    eventually(
        lambda: metric(p, "risk-manager", "tradingsystem_risk_open_orders") >= 1,
        "the risk manager's own open-order gauge to count it",
    )
    # Counted as if it filled: the worst case includes the position with 30 more AAPL.
    pos = state["positions"].get("AAPL", {"qty": 0.0})["qty"]
    assert state["worst_case_gross_exposure"] >= abs(pos + 30) * state["marks"]["AAPL"] - 0.01
    requests.delete(p.url("sim", f"/v2/orders/{resp.json()['id']}"), headers=auth, timeout=5)
    eventually(
        lambda: "resting-1" not in (risk_state(p) or {"open_order_ids": ["resting-1"]})["open_order_ids"],
        "the canceled resting order released (no phantom)",
    )
    settle_and_check(p)


def test_a_broker_slow_for_a_minute_sends_nothing_stale(pipeline: Pipeline) -> None:
    p = pipeline
    stale = metric(p, "execution-engine", "tradingsystem_execution_rejects_total", reason="stale")
    full = metric(p, "execution-engine", "tradingsystem_execution_rejects_total", reason="queue_full")
    faults(p, latency_s=3.0)
    try:
        eventually(
            lambda: (
                metric(p, "execution-engine", "tradingsystem_execution_rejects_total", reason="stale") > stale
                or metric(p, "execution-engine", "tradingsystem_execution_rejects_total", reason="queue_full")
                > full
            ),
            "orders rejected as stale or over the queue bound behind the slow broker",
            timeout=90,
        )
        slow_until = time.monotonic() + 60
        eventually(lambda: time.monotonic() > slow_until, "a minute of slow broker while trading", timeout=90)
    finally:
        faults(p, latency_s=0.0)
    settle_and_check(p)
