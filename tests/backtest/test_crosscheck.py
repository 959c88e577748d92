"""Cross-check against backtesting.py (an established open-source backtester) on the same
data and rules: a moving-average crossover (10/30 simple averages) on daily bars, 10 shares
per signal (buy on the fast average crossing above, sell on crossing below), fills at the
next bar's open, no costs. Both must make the same trades and end with the same equity to
the cent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
from bt_builders import daily_walk, run, settings

from tradingsystem.backtest.core import BacktestResult

FAST, SLOW, QTY, CASH = 10, 30, 10, 100_000
# backtesting.py warns that the last trade is still open (it is, in both) and about pandas.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore:.*dayofweek.*")


def _sma(values: Any, n: int) -> Any:
    return pd.Series(values).rolling(n).mean()


class SmaCross(Strategy):
    def init(self) -> None:
        self.fast = self.I(_sma, self.data.Close, FAST)
        self.slow = self.I(_sma, self.data.Close, SLOW)

    def next(self) -> None:
        if crossover(self.fast, self.slow):
            self.buy(size=QTY)
        elif crossover(self.slow, self.fast):
            self.sell(size=QTY)


@pytest.fixture(scope="module")
def both() -> tuple[BacktestResult, Any]:
    bars = daily_walk(750, seed=11)
    ours = run(
        bars,
        settings(
            signals={"params": {"fast": FAST, "slow": SLOW, "average": "sma"}},
            risk={"order_qty": QTY},
        ),
        cash=CASH,
    )
    frame = pd.DataFrame(
        {
            "Open": [b.open for b in bars],
            "High": [b.high for b in bars],
            "Low": [b.low for b in bars],
            "Close": [b.close for b in bars],
            "Volume": [b.volume for b in bars],
        },
        index=pd.to_datetime([b.start_ts for b in bars], utc=True),
    )
    bt = Backtest(frame, SmaCross, cash=CASH, commission=0, trade_on_close=False, exclusive_orders=False)
    return ours, bt.run()


def test_the_data_makes_enough_trades_to_compare(both: tuple[BacktestResult, Any]) -> None:
    ours, _ = both
    assert sum(t.closed for t in ours.trades) >= 10


def test_both_make_the_same_closed_trades(both: tuple[BacktestResult, Any]) -> None:
    ours, stats = both
    theirs = [
        (
            int(t.EntryTime.value),
            int(t.ExitTime.value),
            int(t.Size),
            round(t.EntryPrice, 2),
            round(t.ExitPrice, 2),
            round(t.PnL, 2),
        )
        for t in stats["_trades"].itertuples()
    ]
    mine = [
        (
            t.entry_ns,
            t.exit_ns,
            int(t.direction * t.entry_qty),
            float(t.entry_price),
            float(t.exit_price),
            float(t.pnl),
        )
        for t in ours.trades
        if t.closed
    ]
    assert mine == theirs


def test_both_end_with_the_same_equity_to_the_cent(both: tuple[BacktestResult, Any]) -> None:
    ours, stats = both
    assert ours.final_equity.quantize(Decimal("0.01")) == Decimal(str(round(stats["Equity Final [$]"], 2)))
