"""Fault test: kill -9 the execution-engine process mid-order, restart it.

The simulator accepts the order but holds the HTTP response, so the engine dies with the
order live at the broker and only a PENDING_SUBMIT row on disk. The restarted engine must
find the order by client_order_id instead of placing it again, adopt its fill, agree with
the broker's positions, and keep trading.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import requests

from tradingsystem.common.bus import Publisher, Subscriber
from tradingsystem.common.wire import TOPIC_EXEC, ExecutionReport, OrderIntent, OrderStatus, Side, SyncRequest
from tradingsystem.execution.store import OrderStore
from tradingsystem.risk.resync import ReportVerdict, Resync
from tradingsystem_testing import eventually
from tradingsystem_testing.sim import SimulatorThread

from .conftest import SYMBOL, ledger_orders, ledger_positions, sim_env


class EngineProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = env["TS_EXECUTION__HTTP_PORT"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tradingsystem.cli", "execution-engine"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.proc.stderr.read().decode() if self.proc.stderr else ""
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self, sig: int) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        if self.proc.stderr:
            self.proc.stderr.close()
        return rc


@pytest.fixture
def engines() -> Iterator[list[EngineProcess]]:
    started: list[EngineProcess] = []
    yield started
    for e in started:
        e.stop(signal.SIGKILL)


def _status(db: Path, cid: str) -> str | None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        row = con.execute("SELECT status FROM orders WHERE client_order_id=?", (cid,)).fetchone()
    return row[0] if row else None


def _intent(qty: float) -> OrderIntent:
    return OrderIntent(client_order_id=f"k-{uuid.uuid4().hex[:12]}", symbol=SYMBOL, side=Side.BUY, qty=qty)


def _order_held_by_the_broker(
    sim: SimulatorThread,
    env: dict[str, str],
    engines: list[EngineProcess],
    risk: Publisher,
    *,
    qty: float,
    hang_s: float,
) -> tuple[EngineProcess, OrderIntent]:
    """An engine started and one order placed, live at the broker, whose HTTP answer the
    simulator holds for ``hang_s``."""
    engine = EngineProcess(env)
    engines.append(engine)
    eventually(engine.ready, "first engine ready", timeout=20)
    sim.faults.hang_s = hang_s
    sim.faults.order_hang_next = 1
    intent = _intent(qty)
    # Re-sent until it arrives (PUB/SUB slow joiner); the engine dedupes by cid.
    eventually(
        lambda: risk.publish(intent) and ledger_orders(sim, intent.client_order_id), "order at the broker"
    )
    return engine, intent


def test_kill9_mid_order_then_restart(
    sim: SimulatorThread, tmp_path: Path, engines: list[EngineProcess]
) -> None:
    env = sim_env(sim, tmp_path, request_timeout_s=30)
    db = Path(env["TS_EXECUTION__DB_PATH"])
    risk = Publisher(env["TS_BUS__RISK"], service="risk-manager")
    try:
        first, intent = _order_held_by_the_broker(sim, env, engines, risk, qty=5, hang_s=20.0)
        assert _status(db, intent.client_order_id) == OrderStatus.PENDING_SUBMIT.value
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # response still held by the sim

        second = EngineProcess(env)
        engines.append(second)
        eventually(second.ready, "restarted engine ready (reconciled)", timeout=20)
        assert _status(db, intent.client_order_id) == OrderStatus.FILLED.value
        assert len(ledger_orders(sim, intent.client_order_id)) == 1

        # It keeps trading after the restart, and reports the fill.
        reports = Subscriber(env["TS_BUS__EXECUTION"], [TOPIC_EXEC])
        try:
            nxt = _intent(2)
            filled: list[ExecutionReport] = []

            def fill_reported() -> bool:
                risk.publish(nxt)
                while reports.sock.poll(50):
                    msg = reports.recv().msg
                    if isinstance(msg, ExecutionReport) and msg.status is OrderStatus.FILLED:
                        filled.append(msg)
                return any(r.client_order_id == nxt.client_order_id for r in filled)

            eventually(fill_reported, "fill report after restart", timeout=15)
        finally:
            reports.close()
        assert second.stop(signal.SIGTERM) == 0
    finally:
        risk.close()

    for cid in (intent.client_order_id, nxt.client_order_id):
        assert len(ledger_orders(sim, cid)) == 1
    broker = ledger_positions(sim)
    assert broker == {SYMBOL: 7.0}
    store = OrderStore(db)
    assert store.positions() == broker
    store.close()


def test_kill9_before_the_order_reached_the_broker(
    sim: SimulatorThread, tmp_path: Path, engines: list[EngineProcess]
) -> None:
    """Killed while the broker answers 503: the restart finds nothing by cid and places it once."""
    env = sim_env(sim, tmp_path, max_attempts=1000)
    db = Path(env["TS_EXECUTION__DB_PATH"])
    risk = Publisher(env["TS_BUS__RISK"], service="risk-manager")
    try:
        first = EngineProcess(env)
        engines.append(first)
        eventually(first.ready, "first engine ready", timeout=20)
        sim.faults.http_5xx_status = 503
        sim.faults.http_5xx_next = 1_000_000
        intent = _intent(3)
        eventually(lambda: risk.publish(intent) and _status(db, intent.client_order_id), "intent persisted")
        first.stop(signal.SIGKILL)
        sim.faults.http_5xx_next = 0
        assert ledger_orders(sim, intent.client_order_id) == []

        second = EngineProcess(env)
        engines.append(second)
        eventually(second.ready, "restarted engine ready (reconciled)", timeout=20)
        assert _status(db, intent.client_order_id) == OrderStatus.FILLED.value
        assert second.stop(signal.SIGTERM) == 0
    finally:
        risk.close()
    assert len(ledger_orders(sim, intent.client_order_id)) == 1
    store = OrderStore(db)
    assert store.positions() == ledger_positions(sim) == {SYMBOL: 3.0}
    store.close()


def test_a_machine_crash_that_loses_the_unsynced_reports_gets_them_again_under_new_numbers(
    sim: SimulatorThread, tmp_path: Path, engines: list[EngineProcess]
) -> None:
    """Reports of an order the broker holds are published before their fsync. A machine crash
    is simulated by killing the engine and putting its store back to what was fsynced (the
    PENDING_SUBMIT row, copied while the broker held the order's response): the restarted
    engine must report the broker's state again under numbers never used before, chained
    below what the risk manager already applied, with one broker order and equal positions."""
    env = sim_env(sim, tmp_path, request_timeout_s=30)
    db = Path(env["TS_EXECUTION__DB_PATH"])
    durable = tmp_path / "fsynced.sqlite"
    risk = Publisher(env["TS_BUS__RISK"], service="risk-manager")
    reports = Subscriber(env["TS_BUS__EXECUTION"], [TOPIC_EXEC])
    seen: list[ExecutionReport] = []

    def reported(cid: str, status: OrderStatus) -> bool:
        while reports.sock.poll(50):
            msg = reports.recv().msg
            if isinstance(msg, ExecutionReport):
                seen.append(msg)
        return any(r.client_order_id == cid and r.status is status for r in seen)

    try:
        first, intent = _order_held_by_the_broker(sim, env, engines, risk, qty=4, hang_s=2.0)
        with closing(sqlite3.connect(durable)) as copy, closing(sqlite3.connect(db)) as live:
            live.backup(copy)  # the PENDING_SUBMIT commit: all a machine crash must leave
        eventually(lambda: reported(intent.client_order_id, OrderStatus.FILLED), "fill reported", timeout=20)
        applied = max(r.report_seq for r in seen)
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(durable, db)
        assert _status(db, intent.client_order_id) == OrderStatus.PENDING_SUBMIT.value

        seen.clear()
        second = EngineProcess(env)
        engines.append(second)
        eventually(second.ready, "restarted engine ready (reconciled)", timeout=20)
        # As the risk manager does: "every report after the last one I applied".
        since = SyncRequest(request_id=1, since=applied)
        eventually(
            lambda: risk.publish(since) and reported(intent.client_order_id, OrderStatus.FILLED),
            "fill reported again",
            timeout=20,
        )
        again = next(r for r in seen if r.client_order_id == intent.client_order_id)
        assert again.report_seq > applied and again.prev_seq < applied
        resync = Resync(applied, interval_s=5.0)
        assert resync.on_report(again.report_seq, again.prev_seq) is ReportVerdict.RESUMED
        assert second.stop(signal.SIGTERM) == 0
    finally:
        reports.close()
        risk.close()
    assert len(ledger_orders(sim, intent.client_order_id)) == 1
    store = OrderStore(db)
    assert store.positions() == ledger_positions(sim) == {SYMBOL: 4.0}
    store.close()
