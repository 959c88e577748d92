"""alpaca-py, unmodified, on what goes beyond market/limit/cancel: replace, trailing stops,
bracket/oco/oto, sessions and time in force, buying power, activities, portfolio history."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderStatus, QueryOrderStatus
from alpaca.trading.models import TradeActivity
from alpaca.trading.requests import (
    GetOrderByIdRequest,
    GetOrdersRequest,
    GetPortfolioHistoryRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from tradingsystem.sim.account import AccountConfig, AccountType
from tradingsystem.sim.auth import DEFAULT_KEY_ID, DEFAULT_SECRET
from tradingsystem.sim.ledger import Quote
from tradingsystem_testing import eventually
from tradingsystem_testing.sim import SimulatorThread

from .conftest import running, take_until
from .test_streams_sdk import listening, trade_updates

KEYS = {"APCA-API-KEY-ID": DEFAULT_KEY_ID, "APCA-API-SECRET-KEY": DEFAULT_SECRET}


def ask(sim: SimulatorThread, symbol: str = "AAPL") -> Decimal:
    return sim.call(lambda: sim.ledger.quotes[symbol].ask)


def far_limit(cid: str, price: float = 1.0, qty: float = 1) -> LimitOrderRequest:
    return LimitOrderRequest(
        symbol="AAPL", qty=qty, side="buy", time_in_force="gtc", limit_price=price, client_order_id=cid
    )


def client(sim: SimulatorThread) -> TradingClient:
    c = TradingClient(DEFAULT_KEY_ID, DEFAULT_SECRET, url_override=sim.base_url)
    c._retry_wait = 0
    return c


def test_replace_order_by_id_links_old_and_new_and_streams_replaced(
    trading: TradingClient, sim: SimulatorThread
) -> None:
    stream, q = trade_updates(sim)
    with running(stream):
        eventually(lambda: listening(sim), "trade_updates listener")
        old = trading.submit_order(far_limit("r-1"))
        new = trading.replace_order_by_id(
            old.id, ReplaceOrderRequest(qty=2, limit_price=1.5, client_order_id="r-2")
        )
        assert new.replaces == old.id and new.client_order_id == "r-2"
        assert (new.qty, new.limit_price, new.status) == ("2", "1.5", OrderStatus.NEW)
        fetched = trading.get_order_by_id(old.id)
        assert fetched.status == OrderStatus.REPLACED and fetched.replaced_by == new.id
        events = take_until(q, lambda u: u.event == "new" and u.order.id == new.id, "the replacement")
        assert [u.event for u in events] == ["new", "replaced", "new"]
        assert events[1].order.id == old.id and events[1].order.replaced_by == new.id
    with pytest.raises(APIError) as exc:
        trading.replace_order_by_id(old.id, ReplaceOrderRequest(qty=3))
    assert exc.value.status_code == 422 and exc.value.code == 42210000
    assert [o.id for o in trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))] == [new.id]


def test_trailing_stop_by_price_and_percent_report_hwm_and_trail(
    trading: TradingClient, sim: SimulatorThread
) -> None:
    trading.submit_order(MarketOrderRequest(symbol="AAPL", qty=2, side="buy", time_in_force="day"))
    by_price = trading.submit_order(
        TrailingStopOrderRequest(symbol="AAPL", qty=1, side="sell", time_in_force="gtc", trail_price=50)
    )
    by_pct = trading.submit_order(
        TrailingStopOrderRequest(symbol="AAPL", qty=1, side="sell", time_in_force="day", trail_percent=40)
    )
    assert by_price.type == "trailing_stop" and by_price.trail_price == "50" and by_price.hwm is not None
    assert Decimal(by_price.stop_price) == Decimal(by_price.hwm) - 50
    assert by_pct.trail_percent == "40" and by_pct.status == OrderStatus.NEW
    wider = trading.replace_order_by_id(by_price.id, ReplaceOrderRequest(trail=60))
    assert wider.trail_price == "60" and Decimal(wider.stop_price) == Decimal(wider.hwm) - 60


def test_bracket_legs_are_nested_on_request_and_canceled_with_the_parent(
    trading: TradingClient, sim: SimulatorThread
) -> None:
    price = float(ask(sim))
    entry = trading.submit_order(
        LimitOrderRequest(
            symbol="AAPL",
            qty=3,
            side="buy",
            time_in_force="gtc",
            limit_price=round(price * 0.5, 2),
            order_class=OrderClass.BRACKET,
            take_profit=TakeProfitRequest(limit_price=round(price * 0.8, 2)),
            stop_loss=StopLossRequest(stop_price=round(price * 0.3, 2), limit_price=round(price * 0.29, 2)),
        )
    )
    assert entry.order_class == OrderClass.BRACKET and len(entry.legs or []) == 2
    nested = trading.get_order_by_id(entry.id, GetOrderByIdRequest(nested=True))
    assert {leg.status for leg in nested.legs or []} == {OrderStatus.HELD}
    assert {leg.type for leg in nested.legs or []} == {"limit", "stop_limit"}
    flat = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    rolled = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, nested=True))
    assert len(flat) == 3 and [o.id for o in rolled] == [entry.id] and len(rolled[0].legs or []) == 2
    trading.cancel_order_by_id(entry.id)
    after = trading.get_order_by_id(entry.id, GetOrderByIdRequest(nested=True))
    assert {after.status, *(leg.status for leg in after.legs or [])} == {OrderStatus.CANCELED}


def test_a_filled_bracket_entry_arms_both_exits_and_oco_and_oto_are_accepted(
    trading: TradingClient, sim: SimulatorThread
) -> None:
    price = float(ask(sim))
    entry = trading.submit_order(
        MarketOrderRequest(
            symbol="AAPL",
            qty=2,
            side="buy",
            time_in_force="gtc",
            order_class=OrderClass.BRACKET,
            take_profit=TakeProfitRequest(limit_price=round(price * 2, 2)),
            stop_loss=StopLossRequest(stop_price=round(price * 0.5, 2)),
        )
    )
    assert entry.status == OrderStatus.FILLED
    assert {leg.status for leg in entry.legs or []} == {OrderStatus.NEW}
    oco = trading.submit_order(
        LimitOrderRequest(
            symbol="AAPL",
            qty=2,
            side="sell",
            time_in_force="gtc",
            order_class=OrderClass.OCO,
            take_profit=TakeProfitRequest(limit_price=round(price * 1.9, 2)),
            stop_loss=StopLossRequest(stop_price=round(price * 0.6, 2)),
        )
    )
    assert oco.order_class == OrderClass.OCO and oco.limit_price is not None
    assert [(leg.side, leg.type, leg.status) for leg in oco.legs or []] == [("sell", "stop", OrderStatus.NEW)]
    oto = trading.submit_order(
        MarketOrderRequest(
            symbol="MSFT",
            qty=1,
            side="buy",
            time_in_force="day",
            order_class=OrderClass.OTO,
            stop_loss=StopLossRequest(stop_price=1),
        )
    )
    assert oto.status == OrderStatus.FILLED and len(oto.legs or []) == 1


def test_day_orders_expire_at_the_session_close_with_an_expired_event(
    trading: TradingClient, sim: SimulatorThread
) -> None:
    stream, q = trade_updates(sim)
    with running(stream):
        eventually(lambda: listening(sim), "trade_updates listener")
        day = trading.submit_order(
            LimitOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day", limit_price=1)
        )
        gtc = trading.submit_order(far_limit("stays"))
        clock = trading.get_clock()
        assert clock.is_open and clock.next_close == clock.next_open  # continuous: midnight UTC
        r = requests.post(f"{sim.base_url}/_sim/clock", json={"to": "next_close"}, timeout=5)
        assert r.status_code == 200 and r.json()["timestamp"] >= clock.next_close.strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
        expired = take_until(q, lambda u: u.event == "expired", "expiry")[-1]
    assert expired.order.id == day.id and expired.order.expired_at is not None
    assert trading.get_order_by_id(day.id).status == OrderStatus.EXPIRED
    assert trading.get_order_by_id(gtc.id).status == OrderStatus.NEW
    assert requests.post(f"{sim.base_url}/_sim/clock", json={"to": "yesterday"}, timeout=5).status_code == 400


def test_the_regular_session_clock_is_closed_on_a_saturday_and_orders_wait_for_the_open() -> None:
    saturday = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)
    with SimulatorThread(["AAPL"], seed=7, tick_rate=50, session="regular", start_at=saturday) as sim:
        eventually(lambda: "AAPL" in sim.ledger.quotes, "first quote")
        trading = client(sim)
        clock = trading.get_clock()
        assert clock.is_open is False
        assert clock.next_open == datetime(2026, 12, 7, 14, 30, tzinfo=UTC)  # Monday 09:30 New York
        assert clock.next_close == datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
        waiting = trading.submit_order(
            MarketOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="opg")
        )
        assert waiting.status == OrderStatus.NEW
        requests.post(f"{sim.base_url}/_sim/clock", json={"to": "next_open"}, timeout=5)
        assert trading.get_clock().is_open is True
        eventually(
            lambda: trading.get_order_by_id(waiting.id).status == OrderStatus.FILLED, "the opening fill"
        )


def test_buying_power_is_reserved_by_open_orders_and_equity_adds_up(
    trading: TradingClient, sim: SimulatorThread
) -> None:
    before = trading.get_account()
    assert (before.multiplier, before.buying_power, before.shorting_enabled) == ("2", "200000", True)
    trading.submit_order(far_limit("reserve", price=100, qty=500))
    assert Decimal(trading.get_account().buying_power) == Decimal(before.buying_power) - 50_000
    with pytest.raises(APIError) as exc:
        trading.submit_order(far_limit("too-much", price=100, qty=1501))
    assert exc.value.status_code == 403 and exc.value.code == 40310000
    trading.submit_order(MarketOrderRequest(symbol="AAPL", qty=5, side="buy", time_in_force="day"))
    trading.submit_order(MarketOrderRequest(symbol="MSFT", qty=2, side="sell", time_in_force="day"))
    account = trading.get_account()
    cash, long_mv, short_mv = (
        Decimal(x) for x in (account.cash, account.long_market_value, account.short_market_value)
    )
    assert abs(Decimal(account.equity) - (cash + long_mv + short_mv)) <= Decimal(
        "0.01"
    )  # each rounded to cents
    assert account.last_equity == "100000" and account.daytrade_count == 0


def test_a_cash_account_refuses_short_sales_and_hard_to_borrow_assets_are_flagged() -> None:
    cash = AccountConfig(type=AccountType.CASH, multiplier=1)
    with SimulatorThread(["AAPL"], seed=7, tick_rate=50, account=cash) as sim:
        eventually(lambda: "AAPL" in sim.ledger.quotes, "first quote")
        trading = client(sim)
        account = trading.get_account()
        assert (account.multiplier, account.shorting_enabled, account.buying_power) == ("1", False, "100000")
        with pytest.raises(APIError) as exc:
            trading.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side="sell", time_in_force="day"))
        assert exc.value.status_code == 403 and "insufficient qty available" in exc.value.message
    margin = AccountConfig(hard_to_borrow=frozenset({"MSFT"}))
    with SimulatorThread(["AAPL", "MSFT"], seed=7, tick_rate=50, account=margin) as sim:
        eventually(lambda: "MSFT" in sim.ledger.quotes, "first quote")
        trading = client(sim)
        assert trading.get_asset("MSFT").easy_to_borrow is False
        with pytest.raises(APIError) as exc:
            trading.submit_order(MarketOrderRequest(symbol="MSFT", qty=1, side="sell", time_in_force="day"))
        assert exc.value.status_code == 403 and "not easy to borrow" in exc.value.message
        short = trading.submit_order(
            MarketOrderRequest(symbol="AAPL", qty=1, side="sell", time_in_force="day")
        )
        assert short.status == OrderStatus.FILLED


def test_fills_are_account_activities_and_the_portfolio_history_ends_at_the_equity(
    trading: TradingClient, sim: SimulatorThread
) -> None:
    order = trading.submit_order(MarketOrderRequest(symbol="AAPL", qty=3, side="buy", time_in_force="day"))
    trading.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side="sell", time_in_force="day"))
    raw: Any = trading.get("/account/activities", {"activity_types": "FILL"})
    acts = [TradeActivity(**a) for a in raw]
    assert [(a.side, a.qty, a.cum_qty, a.leaves_qty) for a in acts] == [("sell", 1, 1, 0), ("buy", 3, 3, 0)]
    assert acts[1].order_id == order.id and acts[1].price == float(order.filled_avg_price or 0)
    one: Any = trading.get("/account/activities/FILL", {"direction": "asc", "page_size": 1})
    assert [a["id"] for a in one] == [acts[1].id]
    assert trading.get("/account/activities/DIV") == []
    history = trading.get_portfolio_history(GetPortfolioHistoryRequest(timeframe="1D"))
    assert history.base_value == 100_000 and len(history.equity) == len(history.timestamp) == 2
    assert abs(history.equity[-1] - float(trading.get_account().equity)) < 1


def test_still_unsupported_requests_answer_422_naming_the_feature(sim: SimulatorThread) -> None:
    bodies = {
        "notional": {
            "symbol": "AAPL",
            "notional": 100,
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
        },
        "mleg": {
            "symbol": "AAPL",
            "qty": 1,
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
            "order_class": "mleg",
        },
        "extended_hours": {
            "symbol": "AAPL",
            "qty": 1,
            "side": "buy",
            "type": "limit",
            "limit_price": 1,
            "time_in_force": "day",
            "extended_hours": True,
        },
    }
    for feature, body in bodies.items():
        r = requests.post(f"{sim.base_url}/v2/orders", json=body, headers=KEYS, timeout=5)
        assert (
            r.status_code == 422 and feature in r.json()["message"] and "not supported" in r.json()["message"]
        )
    with pytest.raises(APIError) as exc:
        client(sim).get_watchlists()
    assert exc.value.status_code == 422 and exc.value.code == 40010001
    assert exc.value.message == "GET /v2/watchlists is not supported by the simulator"


def test_trade_updates_follow_a_bracket_and_a_trailing_stop_to_their_exits(tmp_path: Path) -> None:
    # One replayed quote, then the test moves the market itself: every price is known.
    path = tmp_path / "one.csv"
    path.write_text(
        "T,S,t,p,s,bp,bs,ap,as,o,h,l,c,v,n,vw\nq,AAPL,2024-01-02T14:30:00Z,,,100.00,500,100.02,500,,,,,,,\n"
    )
    with SimulatorThread(["AAPL"], replay_path=path, tick_rate=100) as sim:
        eventually(lambda: sim.status()["replay_done"], "the replayed quote")
        trading = client(sim)
        stream, q = trade_updates(sim)
        with running(stream):
            eventually(lambda: listening(sim), "trade_updates listener")
            entry = trading.submit_order(
                MarketOrderRequest(
                    symbol="AAPL",
                    qty=10,
                    side="buy",
                    time_in_force="gtc",
                    order_class=OrderClass.BRACKET,
                    take_profit=TakeProfitRequest(limit_price=105),
                    stop_loss=StopLossRequest(stop_price=95),
                )
            )
            trail = trading.submit_order(
                TrailingStopOrderRequest(symbol="AAPL", qty=5, side="buy", time_in_force="gtc", trail_price=2)
            )
            sim.call(sim.ledger.on_quote, "AAPL", Quote(Decimal("105.10"), 500, Decimal("105.12"), 500))
            events = take_until(
                q, lambda u: u.event == "fill" and u.order.id == trail.id, "the trailing fill"
            )
        tp, sl = (leg.id for leg in entry.legs or [])
        seen = [(u.event, u.order.id) for u in events]
        assert seen == [
            ("new", entry.id),
            ("fill", entry.id),
            ("new", tp),
            ("new", sl),
            ("new", trail.id),
            ("fill", tp),  # oldest first: the take-profit, then the stop it cancels, then the trail
            ("canceled", sl),
            ("fill", trail.id),
        ]
        assert events[-1].order.hwm == "100.02" and events[-1].price == 105.12
        assert events[5].price == 105.10 and events[5].position_qty == 0
        snap = sim.call(sim.ledger.snapshot)
        assert Decimal(snap["cash"]) == Decimal(100_000) - Decimal("1000.20") + Decimal("1051.00") - Decimal(
            "525.60"
        )
