"""The broker ledger alone: matching rules and exact accounting."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tradingsystem.sim.ledger import CODE_INVALID, CODE_UNPROCESSABLE, Ledger, Quote, SimError, TradeEvent


def make(partial: bool = False, slippage: str = "0") -> tuple[Ledger, list[TradeEvent]]:
    events: list[TradeEvent] = []
    clock = iter(range(1_000, 10**9, 1_000))
    ledger = Ledger(
        ["AAPL"],
        D("100000"),
        {"AAPL": "asset-aapl"},
        partial_fills=partial,
        slippage_bps=D(slippage),
        now_ns=lambda: next(clock),
    )
    ledger.listeners.append(events.append)
    ledger.on_quote("AAPL", Quote(D("100.00"), 200, D("100.02"), 300))
    return ledger, events


def order(**kw: object) -> dict[str, object]:
    return {"symbol": "AAPL", "qty": 10, "side": "buy", "type": "market", "time_in_force": "day", **kw}


def test_market_orders_fill_at_the_quote_and_round_trip_pnl_is_exact() -> None:
    ledger, events = make()
    buy = ledger.submit(order(client_order_id="b1"))
    assert buy.status == "filled" and buy.filled_avg_price == D("100.02")
    assert [e.event for e in events] == ["new", "fill"]
    assert events[-1].price == D("100.02") and events[-1].position_qty == D(10)
    ledger.on_quote("AAPL", Quote(D("101.10"), 200, D("101.12"), 300))
    ledger.submit(order(side="sell", qty=4.0))
    ledger.submit(order(side="sell", qty=6.0))
    pos = ledger.positions["AAPL"]
    assert pos.qty == 0
    assert pos.realized_pl == D("10.80")  # (101.10 - 100.02) * 10
    assert ledger.cash == D("100010.80")
    assert [f.price for f in ledger.fills] == [D("100.02"), D("101.10"), D("101.10")]


def test_limit_order_rests_until_crossed_then_fills_at_the_quote() -> None:
    ledger, _ = make()
    o = ledger.submit(order(type="limit", limit_price=99.5, time_in_force="gtc"))
    assert o.status == "new"
    ledger.on_quote("AAPL", Quote(D("99.40"), 100, D("99.55"), 100))
    assert o.status == "new"
    ledger.on_quote("AAPL", Quote(D("99.30"), 100, D("99.48"), 100))
    assert o.status == "filled" and o.filled_avg_price == D("99.48")
    assert ledger.cash == D("100000") - D("994.80")


def test_stop_triggers_at_the_stop_then_fills_as_market_and_stop_limit_respects_limit() -> None:
    ledger, _ = make()
    stop = ledger.submit(order(side="sell", type="stop", stop_price=99.0, qty=1))
    sl = ledger.submit(order(side="sell", type="stop_limit", stop_price=99.0, limit_price=98.9, qty=1))
    ledger.on_quote("AAPL", Quote(D("99.01"), 100, D("99.03"), 100))
    assert stop.status == sl.status == "new"
    ledger.on_quote("AAPL", Quote(D("98.80"), 100, D("98.82"), 100))  # gapped through the stop limit
    assert stop.status == "filled" and stop.filled_avg_price == D("98.80")
    assert sl.status == "new" and sl.triggered
    ledger.on_quote("AAPL", Quote(D("98.95"), 100, D("98.97"), 100))
    assert sl.status == "filled" and sl.filled_avg_price == D("98.95")


def test_ioc_and_fok_are_decided_on_the_quote_at_submission() -> None:
    ledger, events = make(partial=True)
    ioc = ledger.submit(order(qty=500, time_in_force="ioc"))
    assert ioc.status == "canceled" and ioc.filled_qty == 300  # what the ask showed
    fok = ledger.submit(order(qty=500, time_in_force="fok"))
    assert fok.status == "canceled" and fok.filled_qty == 0
    far = ledger.submit(order(type="limit", limit_price=90, time_in_force="ioc"))
    assert far.status == "canceled"
    assert [e.event for e in events] == [
        "new",
        "partial_fill",
        "canceled",
        "new",
        "canceled",
        "new",
        "canceled",
    ]


def test_partial_fills_take_the_displayed_size_over_several_quotes() -> None:
    ledger, events = make(partial=True)
    o = ledger.submit(order(qty=500, time_in_force="gtc"))
    assert o.status == "partially_filled" and o.filled_qty == 300
    ledger.on_quote("AAPL", Quote(D("100.00"), 200, D("100.04"), 300))
    assert o.status == "filled"
    assert o.filled_avg_price == D("100.0280")  # (300*100.02 + 200*100.04) / 500
    assert [e.event for e in events] == ["new", "partial_fill", "fill"]
    assert ledger.cash == D("100000") - D("30006.00") - D("20008.00")


def test_slippage_moves_market_fills_against_the_trader_to_whole_cents() -> None:
    ledger, _ = make(slippage="5")
    buy = ledger.submit(order(qty=1))
    sell = ledger.submit(order(side="sell", qty=1))
    assert buy.filled_avg_price == D("100.08")  # 100.02 * 1.0005 = 100.070..., rounded up
    assert sell.filled_avg_price == D("99.95")  # 100.00 * 0.9995 = 99.95


def test_short_then_cover_through_zero_keeps_average_cost_accounting() -> None:
    ledger, _ = make()
    ledger.submit(order(side="sell", qty=5))  # short 5 at 100.00
    assert ledger.positions["AAPL"].qty == -5 and ledger.cash == D("100500.00")
    ledger.on_quote("AAPL", Quote(D("98.00"), 100, D("98.02"), 100))
    ledger.submit(order(qty=8))  # cover 5 at 98.02, then long 3 at 98.02
    pos = ledger.positions["AAPL"]
    assert pos.qty == 3 and pos.avg_entry_price == D("98.02")
    assert pos.realized_pl == D("9.90")
    assert ledger.cash == D("100500.00") - D("784.16")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (order(client_order_id="dup"), 422, CODE_INVALID),
        (order(symbol="NOPE"), 422, CODE_INVALID),
        (order(qty=0), 422, CODE_INVALID),
        (order(type="limit"), 422, CODE_INVALID),
        (order(limit_price=1.0), 422, CODE_INVALID),
        (order(type="limit", limit_price=1.001), 422, CODE_INVALID),
        (order(time_in_force="opg"), 422, CODE_INVALID),
        (order(client_order_id="x" * 129), 422, CODE_INVALID),
        (order(qty=2000), 403, 40310000),  # 2x margin: 2000 * 100.02 * 1.03 > 200k
    ],
)
def test_invalid_orders_are_refused_with_alpaca_codes(
    body: dict[str, object], status: int, code: int
) -> None:
    ledger, _ = make()
    ledger.submit(order(qty=1, client_order_id="dup"))
    with pytest.raises(SimError) as exc:
        ledger.submit(body)
    assert (exc.value.status, exc.value.code) == (status, code)
    assert len(ledger.orders) == 1


def test_cancel_rules() -> None:
    ledger, events = make()
    filled = ledger.submit(order(qty=1))
    resting = ledger.submit(order(type="limit", limit_price=50, qty=1))
    with pytest.raises(SimError) as exc:
        ledger.cancel(filled.id)
    assert (exc.value.status, exc.value.code) == (422, CODE_UNPROCESSABLE)
    with pytest.raises(SimError) as exc:
        ledger.cancel("00000000-0000-0000-0000-000000000000")
    assert exc.value.status == 404
    assert ledger.cancel(resting.id).status == "canceled"
    assert events[-1].event == "canceled"
    assert ledger.cancel_all() == []


def test_rejection_fault_accepts_then_rejects_without_filling() -> None:
    ledger, events = make()
    o = ledger.submit(order(qty=1), reject=True)
    assert o.status == "rejected" and not ledger.fills
    assert [e.event for e in events] == ["new", "rejected"]
