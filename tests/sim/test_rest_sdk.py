"""alpaca-py's TradingClient and StockHistoricalDataClient, unmodified, against the simulator."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest, StockLatestQuoteRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderStatus, QueryOrderStatus
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    StopLimitOrderRequest,
    StopOrderRequest,
)

from tradingsystem.sim.auth import DEFAULT_KEY_ID, DEFAULT_SECRET
from tradingsystem.sim.prices import start_price
from tradingsystem.sim.server import HISTORY_BARS
from tradingsystem_testing import eventually
from tradingsystem_testing.sim import SimulatorThread

KEYS = {"APCA-API-KEY-ID": DEFAULT_KEY_ID, "APCA-API-SECRET-KEY": DEFAULT_SECRET}


def market(cid: str, side: str = "buy", qty: float = 5) -> MarketOrderRequest:
    return MarketOrderRequest(symbol="AAPL", qty=qty, side=side, time_in_force="day", client_order_id=cid)


def far_limit(cid: str) -> LimitOrderRequest:
    return LimitOrderRequest(
        symbol="AAPL", qty=1, side="buy", time_in_force="gtc", limit_price=1.00, client_order_id=cid
    )


def test_account_clock_and_assets(trading: TradingClient) -> None:
    account = trading.get_account()
    assert account.status == "ACTIVE" and Decimal(account.cash) == 100_000
    assert trading.get_clock().is_open is True
    assert sorted(a.symbol for a in trading.get_all_assets()) == ["AAPL", "MSFT"]


def test_submit_get_and_cancel_by_client_order_id(trading: TradingClient, sim: SimulatorThread) -> None:
    resting = trading.submit_order(far_limit("rest-1"))
    assert resting.status == OrderStatus.NEW and resting.client_order_id == "rest-1"
    assert trading.get_order_by_client_id("rest-1").id == resting.id
    trading.cancel_order_by_id(resting.id)
    assert trading.get_order_by_id(resting.id).status == OrderStatus.CANCELED
    with pytest.raises(APIError) as exc:
        trading.cancel_order_by_id(resting.id)
    assert exc.value.status_code == 422 and exc.value.code == 42210000

    filled = trading.submit_order(market("mkt-1"))
    fetched = trading.get_order_by_client_id("mkt-1")
    assert fetched.status == OrderStatus.FILLED and fetched.filled_qty == "5"
    fill = sim.call(lambda: sim.ledger.fills[-1])
    assert fill.order_id == str(filled.id) and Decimal(fetched.filled_avg_price) == fill.price


def test_every_order_type_and_time_in_force_is_accepted(trading: TradingClient) -> None:
    reqs = [
        StopOrderRequest(symbol="MSFT", qty=1, side="buy", time_in_force="gtc", stop_price=9999),
        StopLimitOrderRequest(
            symbol="MSFT", qty=1, side="sell", time_in_force="day", stop_price=1, limit_price=0.5
        ),
        LimitOrderRequest(symbol="MSFT", qty=1, side="buy", time_in_force="ioc", limit_price=1),
        LimitOrderRequest(symbol="MSFT", qty=1, side="buy", time_in_force="fok", limit_price=1),
    ]
    statuses = [trading.submit_order(r).status for r in reqs]
    assert statuses == [OrderStatus.NEW, OrderStatus.NEW, OrderStatus.CANCELED, OrderStatus.CANCELED]
    open_orders = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    closed = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED, symbols=["MSFT"]))
    assert len(open_orders) == 2 and len(closed) == 2
    canceled = trading.cancel_orders()
    assert {c.status for c in canceled} == {200} and len(canceled) == 2
    assert trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN)) == []


def test_duplicate_client_order_id_is_422(trading: TradingClient, sim: SimulatorThread) -> None:
    trading.submit_order(market("dup-1"))
    with pytest.raises(APIError) as exc:
        trading.submit_order(market("dup-1"))
    assert exc.value.status_code == 422 and exc.value.code == 40010001
    assert "unique" in exc.value.message
    assert sim.call(lambda: len(sim.ledger.orders)) == 1


def test_validation_errors_and_not_found(trading: TradingClient, sim: SimulatorThread) -> None:
    with pytest.raises(APIError) as exc:
        trading.submit_order(MarketOrderRequest(symbol="ZZZZ", qty=1, side="buy", time_in_force="day"))
    assert exc.value.status_code == 422 and exc.value.code == 40010001
    # The SDK validates request objects client-side, so send a malformed body directly.
    r = requests.post(
        f"{sim.base_url}/v2/orders",
        json={"symbol": "AAPL", "qty": 1, "side": "buy", "type": "limit", "time_in_force": "day"},
        headers=KEYS,
        timeout=5,
    )
    assert r.status_code == 422 and r.json()["code"] == 40010001
    with pytest.raises(APIError) as exc:
        trading.get_order_by_client_id("never-sent")
    assert exc.value.status_code == 404 and exc.value.code == 40410000
    with pytest.raises(APIError) as exc:
        trading.get_open_position("AAPL")
    assert exc.value.status_code == 404


def test_insufficient_buying_power_is_403(trading: TradingClient) -> None:
    with pytest.raises(APIError) as exc:
        trading.submit_order(market("big", qty=1_000_000))
    assert exc.value.status_code == 403 and exc.value.code == 40310000


def test_wrong_keys_are_403(sim: SimulatorThread) -> None:
    client = TradingClient("SIMKEY", "wrong", url_override=sim.base_url)
    with pytest.raises(APIError) as exc:
        client.get_account()
    assert exc.value.status_code == 403
    assert requests.get(f"{sim.base_url}/v2/account", timeout=5).status_code == 403


def test_positions_list_get_and_close_match_the_ledger(trading: TradingClient, sim: SimulatorThread) -> None:
    trading.submit_order(market("p1", qty=10))
    trading.submit_order(MarketOrderRequest(symbol="MSFT", qty=3, side="sell", time_in_force="day"))
    positions = {p.symbol: p for p in trading.get_all_positions()}
    assert positions["AAPL"].qty == "10" and positions["AAPL"].side == "long"
    assert positions["MSFT"].qty == "-3" and positions["MSFT"].side == "short"
    ledger = requests.get(f"{sim.base_url}/_sim/ledger", timeout=5).json()
    assert ledger["positions"]["AAPL"]["avg_entry_price"] == positions["AAPL"].avg_entry_price
    trading.close_position("AAPL", ClosePositionRequest(qty="4"))
    assert trading.get_open_position("AAPL").qty == "6"
    closed = trading.close_all_positions()
    assert len(closed) == 2
    assert trading.get_all_positions() == []
    snap = sim.call(sim.ledger.snapshot)
    # Flat again: cash moved by exactly the realized P&L of the fills.
    realized = sum(Decimal(p["realized_pl"]) for p in snap["positions"].values())
    assert Decimal(snap["cash"]) == Decimal(snap["initial_cash"]) + realized


def test_429_burst_carries_rate_limit_headers_and_the_sdk_retries(
    trading: TradingClient, sim: SimulatorThread
) -> None:
    sim.faults.http_429_next = 2
    assert trading.get_clock().is_open  # the SDK retried twice, then succeeded
    sim.faults.http_429_next = 10
    with pytest.raises(APIError) as exc:
        trading.get_account()
    assert exc.value.status_code == 429
    headers = exc.value.response.headers
    assert headers["X-RateLimit-Limit"] == "200" and int(headers["X-RateLimit-Remaining"]) < 200


def test_the_rate_limit_itself_answers_429(trading: TradingClient, sim: SimulatorThread) -> None:
    sim.faults.rate_limit_per_min = 3
    r = [requests.get(f"{sim.base_url}/v2/clock", headers=KEYS, timeout=5) for _ in range(4)]
    assert [x.status_code for x in r] == [200, 200, 200, 429]
    assert r[2].headers["X-RateLimit-Remaining"] == "0" and "X-RateLimit-Reset" in r[3].headers


def test_5xx_fault(trading: TradingClient, sim: SimulatorThread) -> None:
    sim.faults.update({"http_5xx_next": 1, "http_5xx_status": 503})
    with pytest.raises(APIError) as exc:
        trading.get_account()
    assert exc.value.status_code == 503
    assert trading.get_account().status == "ACTIVE"


def test_504_after_accept_makes_the_sdk_retry_into_a_duplicate(
    trading: TradingClient, sim: SimulatorThread
) -> None:
    sim.faults.order_504_next = 1
    with pytest.raises(APIError) as exc:
        trading.submit_order(market("lost-reply"))
    # The first POST was accepted (then 504); the SDK's retry hit the duplicate cid.
    assert exc.value.status_code == 422 and exc.value.code == 40010001
    assert trading.get_order_by_client_id("lost-reply").status == OrderStatus.FILLED
    assert sim.call(lambda: len(sim.ledger.orders)) == 1


def test_hang_after_accept_never_answers_but_the_order_exists(sim: SimulatorThread) -> None:
    sim.faults.update({"order_hang_next": 1, "hang_s": 0.2})
    body = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{sim.base_url}/v2/orders", json={**body, "client_order_id": "hung"}, headers=KEYS, timeout=5
        )
    r = requests.get(
        f"{sim.base_url}/v2/orders:by_client_order_id",
        params={"client_order_id": "hung"},
        headers=KEYS,
        timeout=5,
    )
    assert r.status_code == 200 and r.json()["status"] == "filled"


def test_latency_fault_delays_replies(sim: SimulatorThread) -> None:
    sim.faults.latency_s = 2.0
    with pytest.raises(requests.Timeout):
        requests.get(f"{sim.base_url}/v2/clock", headers=KEYS, timeout=0.3)
    sim.faults.latency_s = 0.0
    assert requests.get(f"{sim.base_url}/v2/clock", headers=KEYS, timeout=5).status_code == 200


def test_faults_over_http_and_reset(trading: TradingClient, sim: SimulatorThread) -> None:
    trading.submit_order(far_limit("before-reset"))
    bad = requests.post(f"{sim.base_url}/_sim/faults", json={"no_such_fault": 1}, timeout=5)
    assert bad.status_code == 400
    r = requests.post(f"{sim.base_url}/_sim/faults", json={"http_429_next": 7}, timeout=5)
    assert r.json()["http_429_next"] == 7 and sim.faults.http_429_next == 7
    requests.post(f"{sim.base_url}/_sim/reset", timeout=5)
    assert sim.faults.http_429_next == 0
    trading.submit_order(market("after-reset"))
    assert [
        o["client_order_id"] for o in requests.get(f"{sim.base_url}/_sim/ledger", timeout=5).json()["orders"]
    ] == ["after-reset"]


def test_historical_bars_paginate_and_end_where_live_prices_start(sim: SimulatorThread) -> None:
    client = StockHistoricalDataClient(DEFAULT_KEY_ID, DEFAULT_SECRET, url_override=sim.base_url)
    bars = client.get_stock_bars(
        StockBarsRequest(symbol_or_symbols=["AAPL", "MSFT"], timeframe=TimeFrame.Minute, limit=2500)
    )
    aapl = bars.data["AAPL"]
    assert len(aapl) + len(bars.data["MSFT"]) == 2500  # the limit counts over all symbols
    assert all(b.high >= max(b.open, b.close) - 0.01 and b.trade_count and b.vwap for b in aapl)
    assert [b.timestamp for b in aapl] == sorted(b.timestamp for b in aapl)
    # Without a limit the server pages 1000 bars at a time and the SDK follows next_page_token.
    full = client.get_stock_bars(StockBarsRequest(symbol_or_symbols="MSFT", timeframe=TimeFrame.Minute))
    assert len(full.data["MSFT"]) == HISTORY_BARS
    assert full.data["MSFT"][-1].close == float(start_price(7, "MSFT"))
    quote = client.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="AAPL"))["AAPL"]
    assert quote.bid_price < quote.ask_price


def test_replayed_quotes_drive_the_fills(tmp_path: Path) -> None:
    path = tmp_path / "rec.csv"
    path.write_text(
        "T,S,t,p,s,bp,bs,ap,as,o,h,l,c,v,n,vw\n"
        "q,AAPL,2024-01-02T14:30:00Z,,,189.99,300,190.01,200,,,,,,,\n"
        "t,AAPL,2024-01-02T14:30:01Z,190.00,100,,,,,,,,,,,\n"
        "q,AAPL,2024-01-02T14:30:02Z,,,190.50,300,190.53,200,,,,,,,\n"
    )
    with SimulatorThread(["AAPL"], replay_path=path, tick_rate=100) as sim:
        eventually(lambda: sim.status()["replay_done"], "the end of the replay")
        client = TradingClient(DEFAULT_KEY_ID, DEFAULT_SECRET, url_override=sim.base_url)
        order = client.submit_order(market("replay-buy", qty=2))
        assert order.filled_avg_price == "190.53"
        assert Decimal(client.get_account().cash) == Decimal("100000") - Decimal("381.06")
