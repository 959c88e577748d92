"""The risk-manager service in-process over real ZeroMQ sockets and its HTTP endpoint, on free ports."""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from risk_builders import quote

from tradingsystem.common.bus import Publisher, Subscriber
from tradingsystem.common.config import Settings
from tradingsystem.common.control import ControlClient
from tradingsystem.common.wire import (
    Action,
    ExecutionReport,
    Heartbeat,
    Msg,
    OrderIntent,
    OrderStatus,
    Rejection,
    RejectReason,
    RiskState,
    RiskStatus,
    Side,
    Signal,
    SyncReply,
    SyncRequest,
    Trade,
)
from tradingsystem.risk.reconcile import BrokerPosition
from tradingsystem.risk.service import RiskService
from tradingsystem.risk.store import read_journal
from tradingsystem_testing import eventually, free_port

DEADLINE_S = 10.0
TOKEN = "risk-test-token-0123456789abcdef"


def bound(pub: Publisher) -> str:
    return pub.sock.getsockopt(zmq.LAST_ENDPOINT).decode()


def http(port: int, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@dataclass
class Harness:
    service: RiskService
    market: Publisher
    signals: Publisher
    execution: Publisher
    out: Subscriber
    port: int
    client: ControlClient  # the control port, with the right token

    def next_decision(self, kind: type[Msg]) -> Any:
        """The next message of ``kind`` from the risk manager (heartbeats skipped)."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if self.out.sock.poll(100):
                msg = self.out.recv().msg
                if isinstance(msg, kind):
                    return msg
                assert isinstance(msg, Heartbeat | RiskStatus | OrderIntent | Rejection | SyncRequest), msg
        raise AssertionError(f"no {kind.__name__} received")

    def state(self) -> dict[str, Any]:
        return self.client.state()[1]

    def control(self, action: str, reason: str = "") -> tuple[int, Any]:
        return self.client.control(action, reason)


def answer_first_sync(h: Harness, head: int = 0) -> None:
    """Play the execution-engine's part of the start-up resync: "my outbox ends at ``head``"."""
    request = h.next_decision(SyncRequest)
    eventually(
        lambda: h.service.resync.last_seq is not None and h.service.resync.pending is None,
        "the first resync",
        tick=lambda: h.execution.publish(
            SyncReply(request_id=request.request_id, head=head, replayed_to=max(request.since, head))
        ),
    )


def start(
    positions: Callable[[], list[BrokerPosition]] | None = None,
    state_dir: str | None = None,
    sync: bool = True,
    **risk: Any,
) -> Iterator[Harness]:
    market = Publisher("tcp://127.0.0.1:*", service="market-data")
    signals = Publisher("tcp://127.0.0.1:*", service="signal-bridge")
    execution = Publisher("tcp://127.0.0.1:*", service="execution-engine")
    settings = Settings(
        symbols=["AAPL", "MSFT"],
        bus={
            "market_data": bound(market),
            "signals": bound(signals),
            "execution": bound(execution),
            "risk": f"tcp://127.0.0.1:{free_port()}",
            "heartbeat_interval_s": 0.05,
        },
        risk={
            "sizing": "fixed",
            "order_qty": 10,
            "reconcile_on_start": positions is not None,
            "state_path": f"{state_dir or tempfile.mkdtemp(prefix='risk-test-')}/risk.sqlite",
            "control_token": TOKEN,
            **risk,
        },
    )
    out = Subscriber(settings.bus.risk)
    service = RiskService(settings, positions=positions, http_port=0, control_port=0)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), name="risk-under-test")
    thread.start()
    assert service.control is not None
    client = ControlClient(f"http://127.0.0.1:{service.control.port}", SecretStr(TOKEN), timeout=5)
    h = Harness(service, market, signals, execution, out, service.http.port, client)
    try:
        eventually(lambda: service.health.ready, "readiness")
        h.next_decision(Heartbeat)  # our subscription is live
        if sync:
            answer_first_sync(h)
        # Re-send the quote until it arrives: the service's SUB may still be joining.
        eventually(
            lambda: "AAPL" in h.state()["marks"],
            "the quote to reach the risk manager",
            tick=lambda: market.publish(quote("AAPL", 100.0)),
        )
        yield h
    finally:
        stop.set()
        thread.join(DEADLINE_S)
        assert not thread.is_alive()
        for sock in (out, market, signals, execution):
            sock.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    yield from start()


def sig(price: float, action: Action = Action.BUY, ts: int = 1) -> Signal:
    return Signal(symbol="AAPL", action=action, strength=1.0, price=price, strategy="t", origin_ts=ts)


def _filled(pos: dict[str, Any] | None, qty: float) -> dict[str, Any] | None:
    """The position once it holds ``qty`` (the fill is processed asynchronously)."""
    return pos if pos is not None and pos["qty"] == qty else None


def test_orders_rejections_fills_and_halt_over_the_bus(harness: Harness) -> None:
    h = harness
    assert http(h.port, "/readyz")[0] == 200
    h.signals.publish(sig(100.0, ts=1))
    order = h.next_decision(OrderIntent)
    assert (order.symbol, order.side, order.qty) == ("AAPL", Side.BUY, 10.0)

    h.signals.publish(sig(150.0, ts=2))  # 50 % away from the market: fat finger
    assert h.next_decision(Rejection).reason is RejectReason.PRICE_BAND

    h.execution.publish(
        ExecutionReport(
            client_order_id=order.client_order_id,
            symbol="AAPL",
            side=Side.BUY,
            status=OrderStatus.FILLED,
            qty=10,
            filled_qty=10,
            last_fill_qty=10,
            last_fill_price=99.5,
            report_seq=1,
        )
    )
    pos = eventually(lambda: _filled(h.state()["positions"].get("AAPL"), 10), "the fill")
    assert pos["avg_price"] == 99.5 and pos["unrealized"] == 5.0

    status, body = h.control("halt", "test")
    assert (status, body["state"]) == (200, "HALTED")
    assert h.next_decision(RiskStatus).state is RiskState.HALTED
    h.signals.publish(sig(100.0, ts=3))
    assert h.next_decision(Rejection).reason is RejectReason.HALTED
    assert h.state()["kill_switch"] is True

    assert h.control("resume")[1]["state"] == "ACTIVE"
    assert h.control("explode")[0] == 400


def test_a_negative_origin_ts_is_rejected_and_control_can_still_halt(harness: Harness) -> None:
    # The id function used to loop forever on it while holding the lock /control needs.
    harness.signals.publish(sig(100.0, ts=-5))
    assert harness.next_decision(Rejection).reason is RejectReason.BAD_SIGNAL
    assert harness.control("halt", "test")[1]["state"] == "HALTED"


def test_malformed_messages_are_counted_and_skipped(harness: Harness) -> None:
    def dropped() -> float:
        return (
            REGISTRY.get_sample_value(
                "tradingsystem_messages_dropped_total", {"service": "risk-manager", "reason": "malformed"}
            )
            or 0.0
        )

    before = dropped()
    harness.signals.sock.send_multipart([b"signal.AAPL", b"\x93garbage"])
    eventually(lambda: dropped() > before, "the malformed message to be counted")
    harness.signals.publish(sig(100.0, ts=4))  # the loop goes on
    assert isinstance(harness.next_decision(OrderIntent), OrderIntent)


def test_positions_seeded_from_the_broker_at_start() -> None:
    gen = start(positions=lambda: [BrokerPosition("AAPL", -5.0, 101.0)])
    h = next(gen)
    try:
        assert h.state()["positions"]["AAPL"]["qty"] == -5
        h.signals.publish(sig(100.0, Action.FLAT, ts=5))  # closing the seeded short is reducing
        order = h.next_decision(OrderIntent)
        assert (order.side, order.qty, order.reducing) == (Side.BUY, 5.0, True)
    finally:
        gen.close()


def test_after_a_restart_signals_are_refused_until_the_first_resync(tmp_path: Path) -> None:
    gen = start(state_dir=str(tmp_path))
    next(gen)
    gen.close()
    gen = start(state_dir=str(tmp_path), sync=False)
    h = next(gen)
    try:
        h.signals.publish(sig(100.0, ts=11))
        assert h.next_decision(Rejection).reason is RejectReason.NOT_SYNCED
        answer_first_sync(h)
        h.signals.publish(sig(100.0, ts=12))
        assert isinstance(h.next_decision(OrderIntent), OrderIntent)
    finally:
        gen.close()


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("tradingsystem_control_refused_total", {"reason": reason}) or 0.0


def raw(port: int, path: str, body: bytes | None = None, authorization: str | None = None) -> int:
    headers = {"Authorization": authorization} if authorization is not None else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        assert exc.code != 401 or exc.headers["WWW-Authenticate"].startswith("Bearer")
        return exc.code


def test_control_without_the_token_is_refused_counted_and_changes_nothing(harness: Harness) -> None:
    port = harness.client.base_url.rsplit(":", 1)[1]
    halt = b'{"action": "halt", "reason": "stranger"}'
    before = {r: refused(r) for r in ("missing", "malformed", "wrong_token")}
    assert raw(int(port), "/control", halt) == 401
    assert raw(int(port), "/state") == 401
    assert raw(int(port), "/control", halt, "Basic dXNlcjpwYXNz") == 401
    assert raw(int(port), "/control", halt, "Bearer " + TOKEN[:-1] + "X") == 403
    assert raw(int(port), "/state", None, "Bearer nope") == 403
    assert {r: refused(r) - before[r] for r in before} == {"missing": 2, "malformed": 1, "wrong_token": 2}
    assert harness.state()["state"] == "ACTIVE"


def test_the_metrics_port_serves_neither_control_nor_state(harness: Harness) -> None:
    auth = "Bearer " + TOKEN
    assert raw(harness.port, "/control", b'{"action": "halt"}', auth) == 404
    assert raw(harness.port, "/state", None, auth) == 404
    assert raw(harness.port, "/metrics") == 200


def test_the_control_port_serves_no_probes_or_metrics(harness: Harness) -> None:
    port = int(harness.client.base_url.rsplit(":", 1)[1])
    assert [raw(port, p, None, "Bearer " + TOKEN) for p in ("/metrics", "/healthz", "/readyz")] == [404] * 3


def test_the_token_appears_in_no_metric() -> None:
    from prometheus_client import generate_latest

    gen = start()
    h = next(gen)
    try:
        h.control("halt", "scan")
        raw(int(h.client.base_url.rsplit(":", 1)[1]), "/state", None, "Bearer " + TOKEN + "x")
        assert TOKEN not in generate_latest(REGISTRY).decode()
    finally:
        gen.close()


def test_a_restart_keeps_the_halt_and_replays_the_intents_the_engine_never_saw(tmp_path: Path) -> None:
    gen = start(state_dir=str(tmp_path))
    h = next(gen)
    try:
        h.signals.publish(sig(100.0, ts=21))
        lost = h.next_decision(OrderIntent)  # published, but no execution-engine got it
        assert h.control("halt", "desk")[0] == 200
    finally:
        gen.close()

    gen = start(state_dir=str(tmp_path), sync=False)
    h = next(gen)
    try:
        state = h.state()
        assert (state["state"], state["kill_switch"], state["open_order_ids"]) == (
            "HALTED",
            True,
            [lost.client_order_id],
        )
        request = h.next_decision(SyncRequest)
        assert lost.client_order_id in request.open
        h.execution.publish(
            SyncReply(request_id=request.request_id, head=0, replayed_to=0, unknown=request.open)
        )
        replay = h.next_decision(OrderIntent)
        assert (replay.client_order_id, replay.qty, replay.approved_ts) == (
            lost.client_order_id,
            lost.qty,
            lost.approved_ts,
        )
    finally:
        gen.close()


def test_without_a_token_the_control_port_is_not_opened(tmp_path: Path) -> None:
    service = RiskService(Settings(risk={"state_path": str(tmp_path / "risk.sqlite")}), http_port=0)
    try:
        assert service.control is None
    finally:
        service.http.server.server_close()
        service.store.close()


def test_every_approved_intent_is_reserved_in_the_file_before_it_is_published(harness: Harness) -> None:
    h = harness
    for ts in range(1, 9):  # a burst: approvals of one drained batch share one write
        h.signals.publish(sig(100.0, ts=ts))
    path = h.service.settings.risk.state_path
    for _ in range(8):
        intent = h.next_decision(OrderIntent)
        # Another reader, as a restart after a kill would read: the journal first, then the
        # table (a save empties the journal only after its commit holds the order).
        journaled = {cid for _, orders in read_journal(path) for cid in orders}
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            stored = db.execute(
                "SELECT 1 FROM risk_open_orders WHERE client_order_id = ?", (intent.client_order_id,)
            ).fetchall()
        assert intent.client_order_id in journaled or stored, f"{intent.client_order_id} published unreserved"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # it dies on purpose
def test_an_intent_published_by_a_process_that_died_before_its_transaction_is_still_reserved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dies(*_: object, **__: object) -> None:
        raise SystemExit("killed between publish and commit")

    gen = start(state_dir=str(tmp_path))
    h = next(gen)
    monkeypatch.setattr(h.service.store, "save", dies)
    h.signals.publish(sig(100.0, ts=7))
    intent = h.next_decision(OrderIntent)  # published, and then the loop died
    eventually(lambda: not h.service.health.ready, "the loop to stop")
    monkeypatch.undo()
    with pytest.raises(StopIteration):
        next(gen)
    again = RiskService(h.service.settings, http_port=0, control_port=0)
    try:
        assert again.engine.replay_intent(intent.client_order_id) == msgspec.structs.replace(
            intent, seq=0, epoch=0, ts=0
        )
    finally:
        again.http.server.server_close()
        if again.control is not None:
            again.control.server.server_close()
        again.store.close()


def test_every_reject_reason_is_exported_at_zero_from_the_start(harness: Harness) -> None:
    # Rejection panels and the reject-ratio rule read 0 on a system that rejects nothing yet.
    body = urllib.request.urlopen(f"http://127.0.0.1:{harness.port}/metrics", timeout=5).read().decode()
    [family] = [f for f in text_string_to_metric_families(body) if f.name == "tradingsystem_risk_rejects"]
    exported = {s.labels["reason"] for s in family.samples if s.name == "tradingsystem_risk_rejects_total"}
    assert exported == {r.value for r in RejectReason}


def test_market_data_is_gap_checked_counted_and_marks_at_the_last_price(harness: Harness) -> None:
    def received() -> float:
        return risk_metric("tradingsystem_messages_received_total", topic="trade")

    def gaps() -> float:
        return risk_metric("tradingsystem_sequence_gap_messages_total", topic="trade")

    def malformed() -> float:
        return risk_metric("tradingsystem_messages_dropped_total", reason="malformed")

    before = (received(), gaps(), malformed())
    h = harness
    h.market.sock.send_multipart([b"trade.AAPL", b"\x93garbage"])
    for price in (101.0, 102.0):
        h.market.publish(Trade(symbol="AAPL", price=price, size=1, exch_ts=1))
    h.market._seq[b"trade.AAPL"] += 2  # as if two trades were lost upstream
    h.market.publish(Trade(symbol="AAPL", price=103.0, size=1, exch_ts=2))
    h.market.publish(Trade(symbol="AAPL", price=-1.0, size=1, exch_ts=3))  # no price: no mark

    eventually(lambda: received() >= before[0] + 4, "four trades received")
    assert (gaps(), malformed()) == (before[1] + 2, before[2] + 1)
    assert h.state()["marks"]["AAPL"] == 103.0


def risk_metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": "risk-manager", **labels}) or 0.0
