"""The broker retry policy against the real simulator's fault injection: never a lost or a
duplicated order, never a retried 4xx."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from tradingsystem.common.config import Settings, load_settings
from tradingsystem.common.wire import OrderIntent, OrderStatus, Side
from tradingsystem.execution.broker import Broker, HeldByBroker, Rejected, TooOld, Unavailable
from tradingsystem.execution.orders import Order
from tradingsystem_testing.sim import SimulatorThread

from .conftest import SYMBOL, ledger_orders, metric

REQ = "tradingsystem_broker_requests_total"


def _order(symbol: str = SYMBOL) -> Order:
    cid = f"t-{uuid.uuid4().hex[:12]}"
    return Order.from_intent(OrderIntent(client_order_id=cid, symbol=symbol, side=Side.BUY, qty=3), 1)


def _broker(settings: Settings, sleeps: list[float]) -> Broker:
    # Backoff pauses are recorded instead of slept: the policy, not the wall clock, is under test.
    return Broker(settings, sleep=sleeps.append)


def _calls(endpoint: str) -> float:
    return metric(REQ, endpoint=endpoint)


def test_429_burst_is_retried_to_exactly_one_order(
    sim: SimulatorThread, make_settings: Callable[..., Settings]
) -> None:
    sleeps: list[float] = []
    broker, order = _broker(make_settings(), sleeps), _order()
    sim.faults.http_429_next = 3
    lookups = _calls("get_order_by_cid")
    bo = broker.submit(order)
    assert bo["client_order_id"] == order.client_order_id
    assert len(sleeps) == 3
    assert _calls("get_order_by_cid") == lookups  # a 429 is not ambiguous: nothing to look up
    assert len(ledger_orders(sim, order.client_order_id)) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_looks_up_before_resubmitting(
    sim: SimulatorThread, make_settings: Callable[..., Settings], status: int
) -> None:
    broker, order = _broker(make_settings(), []), _order()
    sim.faults.http_5xx_status = status
    sim.faults.http_5xx_next = 2
    lookups = _calls("get_order_by_cid")
    broker.submit(order)
    assert _calls("get_order_by_cid") > lookups
    assert len(ledger_orders(sim, order.client_order_id)) == 1


def test_504_after_accept_adopts_the_existing_order(
    sim: SimulatorThread, make_settings: Callable[..., Settings]
) -> None:
    broker, order = _broker(make_settings(), []), _order()
    sim.faults.order_504_next = 1
    posts = _calls("submit_order")
    bo = broker.submit(order)
    assert _calls("submit_order") == posts + 1  # found by cid: never sent again
    assert bo["status"] == "filled"
    assert len(ledger_orders(sim, order.client_order_id)) == 1


def test_timeout_after_accept_adopts_the_existing_order(
    sim: SimulatorThread, make_settings: Callable[..., Settings]
) -> None:
    broker, order = _broker(make_settings(request_timeout_s=0.3), []), _order()
    sim.faults.hang_s = 2.0
    sim.faults.order_hang_next = 1
    errors = metric("tradingsystem_broker_errors_total", code="transport")
    posts = _calls("submit_order")
    broker.submit(order)
    assert metric("tradingsystem_broker_errors_total", code="transport") == errors + 1
    assert _calls("submit_order") == posts + 1
    assert len(ledger_orders(sim, order.client_order_id)) == 1


def test_resubmit_of_an_existing_order_is_adopted_not_duplicated(
    sim: SimulatorThread, make_settings: Callable[..., Settings]
) -> None:
    broker, order = _broker(make_settings(), []), _order()
    first = broker.submit(order)
    again = broker.submit(order)  # as a replay without may_exist would: 422 duplicate -> adopt
    assert again["id"] == first["id"]
    assert len(ledger_orders(sim, order.client_order_id)) == 1


def test_4xx_is_final_and_not_retried(sim: SimulatorThread, make_settings: Callable[..., Settings]) -> None:
    sleeps: list[float] = []
    broker, order = _broker(make_settings(), sleeps), _order(symbol="NOPE")
    posts = _calls("submit_order")
    with pytest.raises(Rejected) as exc:
        broker.submit(order)
    assert exc.value.status == 422 and "not found" in exc.value.message
    assert _calls("submit_order") == posts + 1 and sleeps == []


def test_bad_credentials_403_not_retried(
    sim: SimulatorThread, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_settings()  # the TS_* environment for this simulator
    monkeypatch.setenv("ALPACA_API_KEY", "WRONG")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "WRONG-SECRET")
    bad = load_settings()
    sleeps: list[float] = []
    with pytest.raises(Rejected) as exc:
        _broker(bad, sleeps).submit(_order())
    assert exc.value.status == 403 and sleeps == []
    assert "WRONG-SECRET" not in str(exc.value)


def test_persistent_5xx_gives_up_as_unknown_not_rejected(
    sim: SimulatorThread, make_settings: Callable[..., Settings]
) -> None:
    broker, order = _broker(make_settings(max_attempts=3), []), _order()
    sim.faults.http_5xx_next = 100
    with pytest.raises(Unavailable):
        broker.submit(order)
    assert order.status is OrderStatus.PENDING_SUBMIT
    sim.faults.http_5xx_next = 0
    assert ledger_orders(sim, order.client_order_id) == []


def test_422_duplicate_is_proof_the_broker_holds_the_order_even_when_the_lookup_lags(
    sim: SimulatorThread, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, order = _broker(make_settings(), []), _order()
    broker.submit(order)
    # The one thing the simulator cannot do: a lookup by cid that does not see the order yet.
    monkeypatch.setattr(broker, "_lookup", lambda cid: None)
    with pytest.raises(HeldByBroker):
        broker.submit(order)  # 422 "client_order_id must be unique", lookup 404: not Rejected
    assert len(ledger_orders(sim, order.client_order_id)) == 1


def test_no_post_starts_past_the_orders_age_limit(
    sim: SimulatorThread, make_settings: Callable[..., Settings]
) -> None:
    broker, order = _broker(make_settings(), []), _order()
    with pytest.raises(TooOld) as exc:
        broker.submit(order, not_after_ns=1)
    assert not exc.value.may_exist
    assert ledger_orders(sim, order.client_order_id) == []
