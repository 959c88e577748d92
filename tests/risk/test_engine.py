"""RiskEngine: each limit at and just over its boundary, states, kill switch, circuit breaker."""

from __future__ import annotations

import math

import pytest
from risk_builders import T0, FakeClock, make_engine, quote, report, signal, terminal

from tradingsystem.common.wire import (
    Action,
    ControlAction,
    OrderIntent,
    OrderStatus,
    Rejection,
    RejectReason,
    RiskState,
    Side,
    Trade,
)
from tradingsystem.risk.engine import base36

BUY, SELL, FLAT = Action.BUY, Action.SELL, Action.FLAT


def approved(decision: OrderIntent | Rejection) -> OrderIntent:
    assert isinstance(decision, OrderIntent), decision
    return decision


def rejected(decision: OrderIntent | Rejection, reason: RejectReason) -> Rejection:
    assert isinstance(decision, Rejection), decision
    assert decision.reason is reason, decision
    return decision


def test_approves_within_limits_with_market_reference_and_stable_cid() -> None:
    eng = make_engine()
    eng.on_quote(quote("AAPL", 100.0))
    sig = signal("AAPL", BUY, 100.0)
    order = approved(eng.on_signal(sig))
    assert (order.symbol, order.side, order.qty, order.ref_price) == ("AAPL", Side.BUY, 10.0, 100.0)
    assert not order.reducing
    assert order.origin_ts == sig.origin_ts
    assert len(order.client_order_id) <= 48
    assert order.client_order_id.startswith("ts-AAPL-")
    # The same signal replayed into a fresh engine gets the same id (idempotent at the broker).
    other = make_engine()
    other.on_quote(quote("AAPL", 100.0))
    assert approved(other.on_signal(sig)).client_order_id == order.client_order_id
    # ... and into the same engine it is refused rather than sent twice.
    rejected(eng.on_signal(sig), RejectReason.DUPLICATE)


@pytest.mark.timeout(60)  # the old id function looped forever on a negative timestamp
@pytest.mark.parametrize("field", ["origin_ts", "ts", "seq"])
def test_a_signal_with_a_negative_timestamp_or_sequence_is_rejected_not_hung_on(field: str) -> None:
    eng = make_engine()
    eng.on_quote(quote("AAPL", 100.0))
    sig = signal("AAPL", BUY, 100.0)
    setattr(sig, field, -1_700_000_000)
    assert field in rejected(eng.on_signal(sig), RejectReason.BAD_SIGNAL).detail
    with pytest.raises(ValueError, match="negative"):
        base36(-1)
    assert base36(0) == "0" and base36(36**2) == "100"


def test_strength_sizing_floors_to_whole_shares_and_zero_is_rejected() -> None:
    eng = make_engine(sizing="strength", order_qty=10)
    eng.on_quote(quote("AAPL", 100.0))
    assert approved(eng.on_signal(signal("AAPL", BUY, 100.0, strength=0.75))).qty == 7
    rejected(eng.on_signal(signal("AAPL", BUY, 100.0, strength=0.05)), RejectReason.ZERO_QTY)
    rejected(eng.on_signal(signal("AAPL", BUY, 100.0, strength=math.nan)), RejectReason.ZERO_QTY)
    rejected(eng.on_signal(signal("AAPL", FLAT, 100.0)), RejectReason.ZERO_QTY)  # nothing held


def test_unknown_symbol_and_missing_quote() -> None:
    eng = make_engine()
    rejected(eng.on_signal(signal("TSLA", BUY, 100.0)), RejectReason.UNKNOWN_SYMBOL)
    rejected(eng.on_signal(signal("AAPL", BUY, 100.0)), RejectReason.NO_QUOTE)
    eng.on_trade(Trade(symbol="AAPL", price=100.0, size=1, exch_ts=0))  # a trade also gives a price
    approved(eng.on_signal(signal("AAPL", BUY, 100.0)))


@pytest.mark.parametrize(
    ("price", "ok"),
    [(105.0, True), (95.0, True), (105.01, False), (94.99, False), (math.inf, False), (math.nan, False)],
)
def test_price_band_vs_last_quote_mid(price: float, ok: bool) -> None:
    eng = make_engine(price_band_pct=5)
    eng.on_quote(quote("AAPL", 100.0))
    decision = eng.on_signal(signal("AAPL", BUY, price))
    if ok:
        approved(decision)
    else:
        rejected(decision, RejectReason.PRICE_BAND)


@pytest.mark.parametrize(("limit", "ok"), [(10, True), (9.99, False)])
def test_max_order_qty(limit: float, ok: bool) -> None:
    eng = make_engine(max_order_qty=limit)
    eng.on_quote(quote("AAPL", 100.0))
    decision = eng.on_signal(signal("AAPL", BUY, 100.0))
    assert isinstance(decision, OrderIntent) if ok else rejected(decision, RejectReason.MAX_ORDER_QTY)


@pytest.mark.parametrize(("limit", "ok"), [(1000.0, True), (999.99, False)])
def test_max_order_notional_exact_at_the_boundary(limit: float, ok: bool) -> None:
    eng = make_engine(max_order_notional=limit)
    eng.on_quote(quote("AAPL", 100.0, half_spread=0.1))  # mid exactly 100 despite float bid/ask
    decision = eng.on_signal(signal("AAPL", BUY, 100.0))
    assert isinstance(decision, OrderIntent) if ok else rejected(decision, RejectReason.MAX_ORDER_NOTIONAL)


def test_max_position_counts_unfilled_orders_until_released() -> None:
    eng = make_engine(max_position_qty=20)
    eng.on_quote(quote("AAPL", 100.0))
    first = approved(eng.on_signal(signal("AAPL", BUY, 100.0)))
    approved(eng.on_signal(signal("AAPL", BUY, 100.0)))  # 20: at the limit, nothing filled yet
    rejected(eng.on_signal(signal("AAPL", BUY, 100.0)), RejectReason.MAX_POSITION)
    eng.on_report(terminal(first, OrderStatus.CANCELED))  # releases its 10
    approved(eng.on_signal(signal("AAPL", BUY, 100.0)))
    assert eng.worst_case_qty("AAPL") == 20


def test_max_position_short_side() -> None:
    eng = make_engine(max_position_qty=10)
    eng.on_quote(quote("AAPL", 100.0))
    approved(eng.on_signal(signal("AAPL", SELL, 100.0)))
    rejected(eng.on_signal(signal("AAPL", SELL, 100.0)), RejectReason.MAX_POSITION)


def test_max_open_positions_counts_pending_symbols() -> None:
    eng = make_engine(max_open_positions=1)
    for s in ("AAPL", "MSFT"):
        eng.on_quote(quote(s, 100.0))
    approved(eng.on_signal(signal("AAPL", BUY, 100.0)))
    rejected(eng.on_signal(signal("MSFT", BUY, 100.0)), RejectReason.MAX_OPEN_POSITIONS)
    approved(eng.on_signal(signal("AAPL", BUY, 100.0)))  # same symbol: not a new position


@pytest.mark.parametrize(("limit", "ok"), [(3000, True), (2999.99, False)])
def test_max_gross_exposure_includes_pending_across_symbols(limit: float, ok: bool) -> None:
    eng = make_engine(max_gross_exposure=limit)
    eng.on_quote(quote("AAPL", 100.0))
    eng.on_quote(quote("MSFT", 200.0))
    approved(eng.on_signal(signal("AAPL", BUY, 100.0)))  # 1000 pending
    decision = eng.on_signal(signal("MSFT", SELL, 200.0))  # + 2000
    assert isinstance(decision, OrderIntent) if ok else rejected(decision, RejectReason.MAX_GROSS_EXPOSURE)


def test_order_rate_sliding_window() -> None:
    clock = FakeClock()
    eng = make_engine(clock, max_orders_per_minute=3)
    eng.on_quote(quote("AAPL", 100.0))
    for _ in range(3):
        approved(eng.on_signal(signal("AAPL", BUY, 100.0)))
        clock.advance(10)
    rejected(eng.on_signal(signal("AAPL", BUY, 100.0)), RejectReason.ORDER_RATE)
    clock.advance(30)  # first order is now exactly 60 s old: it leaves the window
    approved(eng.on_signal(signal("AAPL", BUY, 100.0)))
    rejected(eng.on_signal(signal("AAPL", BUY, 100.0)), RejectReason.ORDER_RATE)


def test_fills_move_position_release_pending_and_repeats_are_ignored() -> None:
    eng = make_engine()
    eng.on_quote(quote("AAPL", 100.0))
    order = approved(eng.on_signal(signal("AAPL", BUY, 100.0)))
    eng.on_report(report(order, 4, 100.0))
    eng.on_report(report(order, 4, 100.0))  # the same report again: no double count
    assert eng.book.qty("AAPL") == 4
    assert eng.pending["AAPL"].buy == 6
    eng.on_report(report(order, 6, 101.0, filled_total=10))
    assert eng.book.qty("AAPL") == 10
    assert eng.open_orders == {}
    assert eng.pending["AAPL"].buy == 0
    assert float(eng.book.position("AAPL").avg_price) == 100.6


def test_reducing_orders_bypass_exposure_limits_and_reducing_state() -> None:
    eng = make_engine(max_position_qty=100, max_order_qty=10, max_gross_exposure=1000)
    eng.seed_position("AAPL", 500, 100.0)  # over every limit, e.g. after a limit change
    eng.on_quote(quote("AAPL", 100.0))
    rejected(eng.on_signal(signal("AAPL", BUY, 100.0)), RejectReason.MAX_POSITION)
    eng.control(ControlAction.REDUCE, "test")
    assert eng.state is RiskState.REDUCING
    rejected(eng.on_signal(signal("AAPL", BUY, 100.0)), RejectReason.REDUCING_ONLY)
    partial = approved(eng.on_signal(signal("AAPL", SELL, 100.0)))
    assert partial.reducing and partial.qty == 10
    flat = approved(eng.on_signal(signal("AAPL", FLAT, 100.0)))  # the rest, not what is already selling
    assert (flat.side, flat.qty, flat.reducing) == (Side.SELL, 490, True)
    # Everything is already being sold: another sell would cross zero, so it is not reducing.
    rejected(eng.on_signal(signal("AAPL", SELL, 100.0)), RejectReason.REDUCING_ONLY)


def test_kill_switch_from_config_and_control() -> None:
    eng = make_engine(halted=True)
    eng.on_quote(quote("AAPL", 100.0))
    assert eng.state is RiskState.HALTED and eng.kill_switch
    rejected(eng.on_signal(signal("AAPL", BUY, 100.0)), RejectReason.HALTED)
    eng.control(ControlAction.RESUME)
    approved(eng.on_signal(signal("AAPL", BUY, 100.0)))
    eng.control(ControlAction.HALT, "operator")
    assert eng.state_reason == "control: operator"
    eng.seed_position("MSFT", -10, 50.0)
    eng.on_quote(quote("MSFT", 50.0))
    rejected(eng.on_signal(signal("MSFT", BUY, 50.0)), RejectReason.HALTED)  # even reducing: stop means stop


def test_the_snapshot_says_since_when_the_kill_switch_is_engaged() -> None:
    clock = FakeClock()
    eng = make_engine(clock)
    assert eng.snapshot()["kill_switch_since"] is None
    clock.advance(5)
    eng.control(ControlAction.HALT, "operator")
    clock.advance(3)
    eng.control(ControlAction.HALT, "again")  # already engaged: the first moment stands
    assert eng.snapshot()["kill_switch_since"] == (T0 + 5_000_000_000) / 1e9
    eng.control(ControlAction.RESUME)
    assert eng.snapshot()["kill_switch_since"] is None
    assert make_engine(clock, halted=True).snapshot()["kill_switch_since"] == clock.ns / 1e9


def test_daily_loss_reducing_then_circuit_breaker_then_new_day() -> None:
    clock = FakeClock()
    eng = make_engine(clock, daily_loss_limit=100, reducing_at_loss_fraction=0.5, max_position_qty=100)
    eng.on_quote(quote("AAPL", 100.0))
    order = approved(eng.on_signal(signal("AAPL", BUY, 100.0)))
    eng.on_report(report(order, 10, 100.0))
    eng.on_quote(quote("AAPL", 95.01))  # loss 49.90
    assert eng.state is RiskState.ACTIVE
    eng.on_quote(quote("AAPL", 95.0))  # loss 50: REDUCING
    assert eng.state is RiskState.REDUCING
    rejected(eng.on_signal(signal("AAPL", BUY, 95.0)), RejectReason.REDUCING_ONLY)
    sell = approved(eng.on_signal(signal("AAPL", SELL, 95.0, strength=0.5)))
    assert sell.reducing
    eng.on_quote(quote("AAPL", 96.0))  # loss shrinks: REDUCING is latched for the day
    assert eng.state is RiskState.REDUCING
    eng.on_quote(quote("AAPL", 90.0))  # loss 100 = limit: breaker
    assert eng.state is RiskState.HALTED and eng.circuit_breaker and not eng.kill_switch
    rejected(eng.on_signal(signal("AAPL", SELL, 90.0)), RejectReason.DAILY_LOSS_LIMIT)
    eng.control(ControlAction.RESUME)  # still at the limit: trips again at once
    assert eng.state is RiskState.HALTED
    clock.advance(14 * 3600)  # past midnight in New York
    eng.on_quote(quote("AAPL", 90.0))
    assert eng.state is RiskState.ACTIVE
    assert eng.book.daily_pnl() == 0
    assert eng.snapshot()["pnl"] == {
        "realized": 0.0,
        "realized_today": 0.0,
        "unrealized": -100.0,
        "daily": 0.0,
    }


def test_day_roll_uses_new_york_midnight() -> None:
    from tradingsystem.risk.engine import next_day_start_ns

    assert next_day_start_ns(T0) == T0 + 14 * 3600 * 1_000_000_000  # 10:00 EST -> 00:00 EST next day


def test_a_batch_of_ticks_leaves_the_marks_and_pnl_of_feeding_them_one_by_one() -> None:
    ticks = [
        quote("AAPL", 101.0),
        Trade(symbol="MSFT", price=50.25, size=1, exch_ts=0),
        Trade(symbol="AAPL", price=102.5, size=1, exch_ts=0),
        quote("MSFT", 51.0),
        Trade(symbol="AAPL", price=-1.0, size=1, exch_ts=0),  # no price: AAPL stays at 102.5
        Trade(symbol="MSFT", price=math.nan, size=1, exch_ts=0),  # no price: MSFT stays at 51
        quote("GOOG", 10.0, half_spread=-1.0),  # crossed: GOOG gets no mark
    ]
    one_by_one, batched = make_engine(max_position_qty=100), make_engine(max_position_qty=100)
    for eng in (one_by_one, batched):
        eng.on_quote(quote("AAPL", 100.0))
        eng.on_report(report(approved(eng.on_signal(signal("AAPL", BUY, 100.0))), 10, 100.0))
    for tick in ticks:
        one_by_one.on_trade(tick) if isinstance(tick, Trade) else one_by_one.on_quote(tick)
    batched.on_ticks(ticks)
    assert batched.book.marks == one_by_one.book.marks == {"AAPL": 102.5, "MSFT": 51}
    assert batched.book.daily_pnl() == one_by_one.book.daily_pnl() == 25


def test_a_batch_of_ticks_that_ends_past_the_loss_limit_trips_the_breaker() -> None:
    eng = make_engine(daily_loss_limit=100, max_position_qty=100)
    eng.on_quote(quote("AAPL", 100.0))
    eng.on_report(report(approved(eng.on_signal(signal("AAPL", BUY, 100.0))), 10, 100.0))
    eng.on_ticks([quote("AAPL", 99.0), quote("AAPL", 90.0)])  # loss 100 = limit
    assert eng.state is RiskState.HALTED and eng.circuit_breaker
