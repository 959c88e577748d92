"""The backtest core: fills by the simulator's rule at the next event, costs, limit prices,
and the live risk engine's limits, kill switch and New York daily-loss breaker."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from bt_builders import MINUTE_NS, T0, ZIGZAG, bar, closes, run, settings, trade

from tradingsystem.backtest.core import Costs, Decision, OrderStyle
from tradingsystem.common.wire import Side
from tradingsystem.risk.engine import TRADING_TZ


def fills(result):  # (side, qty, price) of every fill
    return [(f.side.value, f.qty, f.price) for f in result.fills]


def ny(*args: int) -> int:
    return int(datetime(*args, tzinfo=TRADING_TZ).timestamp()) * 1_000_000_000


def test_a_signal_at_a_bars_close_fills_at_the_next_bars_open() -> None:
    r = run(closes(ZIGZAG))
    assert fills(r) == [("buy", 10, Decimal("106")), ("sell", 10, Decimal("99")), ("buy", 10, Decimal("108"))]


def test_an_order_still_resting_when_the_data_ends_never_fills() -> None:
    r = run(closes(ZIGZAG))
    assert [d.side for d in r.orders][-1] is Side.SELL and r.positions == {"SPY": Decimal(10)}


def test_final_equity_is_cash_plus_positions_at_the_last_price_exactly() -> None:
    r = run(closes(ZIGZAG))
    assert (r.cash, r.final_equity) == (Decimal(98_850), Decimal(99_820))


def test_round_trips_are_booked_flat_to_flat_with_their_pnl() -> None:
    r = run(closes(ZIGZAG))
    assert [(t.direction, t.entry_price, t.exit_price, t.pnl, t.closed) for t in r.trades] == [
        (1, Decimal(106), Decimal(99), Decimal(-70), True),
        (1, Decimal(108), Decimal(0), Decimal(0), False),
    ]


def test_slippage_moves_market_fills_against_the_trader_rounded_to_the_cent() -> None:
    r = run(closes(ZIGZAG), costs=Costs(slippage_bps=Decimal(10)))
    assert [p for _, _, p in fills(r)] == [Decimal("106.11"), Decimal("98.90"), Decimal("108.11")]


def test_commission_is_charged_per_fill_with_its_minimum() -> None:
    costs = Costs(commission_per_share=Decimal("0.01"), commission_min=Decimal(1))
    r = run(closes(ZIGZAG), costs=costs)
    assert [f.commission for f in r.fills] == [Decimal("1.00")] * 3 and r.cash == Decimal(98_847)


def test_a_limit_order_fills_at_its_limit_when_the_bar_trades_through_it() -> None:
    bars = closes(ZIGZAG)
    bars[4] = bar(bars[4].start_ts, 106.0, h=106.0, low=102.0, c=106.0)  # dips through the 103 limit
    r = run(bars, order_style=OrderStyle.LIMIT)
    assert fills(r)[0] == ("buy", 10, Decimal("103.00"))


def test_a_limit_order_the_next_bar_never_reaches_is_canceled_unfilled() -> None:
    r = run(closes(ZIGZAG), order_style=OrderStyle.LIMIT)  # buy limit 103, next bar trades only at 106
    assert fills(r)[0] == ("sell", 10, Decimal("99")) and r.positions == {"SPY": Decimal(-10)}


def test_a_market_order_on_trades_fills_at_the_next_trade_of_its_symbol_not_another_symbols() -> None:
    s = settings(("SPY", "QQQ"), source="trades")
    events = []
    for i, p in enumerate(ZIGZAG):
        events.append(trade(T0 + i * MINUTE_NS, p, "SPY"))
        events.append(trade(T0 + i * MINUTE_NS + 1, 500.0, "QQQ"))
    r = run(events, s)
    assert fills(r)[0] == ("buy", 10, Decimal("106")) and {f.symbol for f in r.fills} == {"SPY"}


def test_the_kill_switch_in_the_config_rejects_every_signal_as_halted() -> None:
    r = run(closes(ZIGZAG), settings(risk={"halted": True}))
    assert r.rejections_by_reason() == {"halted": 4} and not r.fills


def test_limits_reject_and_are_counted_by_reason() -> None:
    r = run(closes(ZIGZAG), settings(risk={"max_order_notional": 500}))  # 10 shares at ~100
    assert r.rejections_by_reason() == {"max_order_notional": 4}


def test_orders_per_minute_are_counted_on_the_simulated_clock() -> None:
    # four signals within one simulated minute (a bar every 5 s), two allowed per minute
    r = run(closes(ZIGZAG, step_ns=5 * 1_000_000_000), settings(risk={"max_orders_per_minute": 2}))
    assert [d.reason for d in r.decisions] == ["", "", "order_rate", "order_rate"]


def test_the_daily_loss_breaker_halts_until_the_next_trading_day_in_new_york() -> None:
    times = [ny(2026, 3, 2, 10, i) for i in range(6)]  # BUY fills at 106, close 101: loss 50
    times += [ny(2026, 3, 2, 23, 50), ny(2026, 3, 2, 23, 51)]  # past midnight UTC, same NY day
    times += [ny(2026, 3, 3, 0, 10 + i) for i in range(4)]  # the next NY day
    bars = [bar(t, p) for t, p in zip(times, ZIGZAG, strict=True)]
    r = run(bars, settings(risk={"daily_loss_limit": 50}))
    assert [(d.side.value, d.reason or d.decision.value) for d in r.decisions] == [
        ("buy", "approved"),
        ("sell", "daily_loss_limit"),  # 23:50 New York is still the losing day
        ("buy", "approved"),  # a new day clears the breaker
        ("sell", "daily_loss_limit"),  # ... until that day's own loss (20 shares, 108 -> 97) trips it
    ]


def test_the_run_ends_in_the_risk_state_the_breaker_left() -> None:
    r = run(closes(ZIGZAG[:7]), settings(risk={"daily_loss_limit": 50}))
    assert r.final_risk_state == "HALTED"


def test_a_buy_over_the_cash_is_refused_by_the_broker_as_the_simulator_does() -> None:
    r = run(closes(ZIGZAG), cash=1000)  # 10 at 106 is over the cash; after the short sale, 10 at 108 is not
    assert r.broker_rejections == 1 and fills(r) == [("sell", 10, Decimal("99")), ("buy", 10, Decimal("108"))]


def test_every_risk_decision_is_recorded_with_its_order_id() -> None:
    r = run(closes(ZIGZAG))
    assert all(
        d.decision is Decision.APPROVED and d.client_order_id.startswith("ts-SPY-") for d in r.decisions
    )


def test_the_model_gates_signals_as_it_does_live(tmp_path: Path) -> None:
    model = tmp_path / "veto.json"  # a constant score of 0.9: BUY needs 0.95, SELL at most 0.1
    model.write_text(
        json.dumps(
            {
                "format": "linear/1",
                "kind": "linear",
                "features": ["rsi_14"],
                "weights": [0.0],
                "bias": 0.9,
                "buy_threshold": 0.95,
                "sell_threshold": 0.1,
            }
        )
    )
    r = run(closes(ZIGZAG), settings(signals={"model_path": str(model)}))
    assert r.signals == 0 and not r.decisions


def test_a_model_that_passes_signals_sets_their_strength(tmp_path: Path) -> None:
    model = tmp_path / "pass.json"  # score 0.5 passes both ways; strength sizing: 0.5 x 10 shares
    model.write_text(
        json.dumps(
            {"format": "linear/1", "kind": "linear", "features": ["rsi_14"], "weights": [0.0], "bias": 0.5}
        )
    )
    r = run(closes(ZIGZAG), settings(signals={"model_path": str(model)}, risk={"sizing": "strength"}))
    assert [d.qty for d in r.decisions] == [5.0, 5.0, 5.0, 5.0]


def test_near_the_daily_loss_limit_only_reducing_orders_go_out() -> None:
    # long 10 from 106, marked at 96: a loss of 100 is past 80 % of 120, so REDUCING (latched for
    # the day); the sell that closes goes out, the next buy would open and is refused
    r = run(closes(ZIGZAG[:10]), settings(risk={"daily_loss_limit": 120}))
    assert [d.reason or d.decision.value for d in r.decisions] == ["approved", "approved", "reducing_only"]
