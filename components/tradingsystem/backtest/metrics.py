"""The summary a trader reads first, computed from a ``BacktestResult``. No I/O.

Conventions (stated in docs/backtest.md):

* Returns are per sampled point of the equity curve (one per event); they are annualised
  with the number of points per year the data actually has (points / calendar years
  spanned), so daily bars give about 252 and minute bars of regular hours about 98,000.
* Sharpe = mean / standard deviation (sample, n-1) of those returns x sqrt(points per year),
  with a zero risk-free rate; Sortino uses the downside deviation (root mean square of the
  negative returns over all returns) instead.
* Annualised return is the compound annual growth rate over the calendar time spanned.
* Max drawdown is the largest fall from a running peak, as a fraction of that peak; its
  duration is the longest time spent below a previous peak (to the recovery, or to the end).
* Win rate and profit factor count closed round trips (flat to flat) net of commission.
* Exposure is the share of points at which any position was open.
* Buy and hold is the average over the symbols of last price / first price - 1: what holding
  each symbol equally over the same period returned, for comparison.
"""

from __future__ import annotations

import enum
import itertools
import math
from dataclasses import asdict, dataclass

from tradingsystem.backtest.core import BacktestResult
from tradingsystem.common.money import cents

NS_PER_YEAR = 365.25 * 24 * 3600 * 1e9
NS_PER_DAY = 24 * 3600 * 1e9


class Metric(enum.StrEnum):
    """Metrics a sweep can rank by (higher is better for each, as ranked)."""

    TOTAL_RETURN = "total_return_pct"
    ANNUAL_RETURN = "annual_return_pct"
    SHARPE = "sharpe"
    SORTINO = "sortino"
    MAX_DRAWDOWN = "max_drawdown_pct"  # ranked by the smallest drawdown
    WIN_RATE = "win_rate_pct"
    PROFIT_FACTOR = "profit_factor"
    TRADES = "trades"
    FINAL_EQUITY = "final_equity"


@dataclass(frozen=True, slots=True)
class Summary:
    start: int  # ns
    end: int
    initial_cash: float
    final_equity: float
    total_return_pct: float
    annual_return_pct: float
    sharpe: float
    sortino: float
    max_drawdown_pct: float
    max_drawdown_days: float
    max_drawdown_points: int
    buy_hold_return_pct: float
    trades: int
    win_rate_pct: float
    profit_factor: float
    avg_trade_pct: float
    exposure_pct: float
    orders: int
    rejections: int
    rejections_by_reason: dict[str, int]
    broker_rejections: int
    commission: float
    signals: int
    events: int
    final_risk_state: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def rank_value(self, metric: Metric) -> float:
        value = float(getattr(self, metric.value))
        if math.isnan(value):
            return -math.inf
        return -value if metric is Metric.MAX_DRAWDOWN else value


def drawdown(equity: list[float]) -> list[float]:
    """Fall from the running peak at each point, as a (non-positive) fraction of the peak."""
    out: list[float] = []
    peak = -math.inf
    for v in equity:
        peak = max(peak, v)
        out.append(v / peak - 1.0 if peak > 0 else 0.0)
    return out


def _max_drawdown(ns: list[int], equity: list[float]) -> tuple[float, float, int]:
    """(max drawdown fraction, longest time under water in days, in points)."""
    worst = 0.0
    peak = -math.inf
    peak_i = 0
    longest_ns, longest_pts = 0, 0
    for i, v in enumerate(equity):
        if v >= peak:
            peak, peak_i = v, i
        else:
            worst = min(worst, v / peak - 1.0 if peak > 0 else 0.0)
            if ns[i] - ns[peak_i] > longest_ns or i - peak_i > longest_pts:
                longest_ns = max(longest_ns, ns[i] - ns[peak_i])
                longest_pts = max(longest_pts, i - peak_i)
    return -worst, longest_ns / NS_PER_DAY, longest_pts


def _buy_and_hold(r: BacktestResult) -> float:
    moves = [px[-1] / px[0] - 1.0 for _, px in r.prices.values() if px and px[0] > 0]
    return 100 * sum(moves) / len(moves) if moves else math.nan


def summarize(r: BacktestResult) -> Summary:
    eq, ns = r.equity, r.equity_ns
    initial = float(r.initial_cash)
    final = float(r.final_equity)
    start, end = (ns[0], ns[-1]) if ns else (0, 0)
    years = (end - start) / NS_PER_YEAR
    total = final / initial - 1.0
    annual = (final / initial) ** (1.0 / years) - 1.0 if years > 0 and final > 0 else math.nan
    returns = [b / a - 1.0 for a, b in itertools.pairwise(eq) if a > 0]
    sharpe = sortino = math.nan
    if len(returns) > 1 and years > 0:
        per_year = len(returns) / years
        n = len(returns)
        mean = sum(returns) / n
        var = sum((x - mean) ** 2 for x in returns) / (n - 1)
        down = math.sqrt(sum(x * x for x in returns if x < 0) / n)
        sharpe = mean / math.sqrt(var) * math.sqrt(per_year) if var > 0 else math.nan
        sortino = mean / down * math.sqrt(per_year) if down > 0 else math.nan
    dd, dd_days, dd_pts = _max_drawdown(ns, eq)
    closed = [t for t in r.trades if t.closed]
    wins = [float(t.pnl) for t in closed if t.pnl > 0]
    losses = [float(t.pnl) for t in closed if t.pnl < 0]
    gross_loss = -sum(losses)
    rejected = r.rejections_by_reason()
    return Summary(
        start=start,
        end=end,
        initial_cash=initial,
        final_equity=float(cents(r.final_equity)),
        total_return_pct=100 * total,
        annual_return_pct=100 * annual,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown_pct=100 * dd,
        max_drawdown_days=dd_days,
        max_drawdown_points=dd_pts,
        buy_hold_return_pct=_buy_and_hold(r),
        trades=len(closed),
        win_rate_pct=100 * len(wins) / len(closed) if closed else math.nan,
        profit_factor=sum(wins) / gross_loss if gross_loss else (math.inf if wins else math.nan),
        avg_trade_pct=sum(t.return_pct for t in closed) / len(closed) if closed else math.nan,
        exposure_pct=100 * r.exposed / r.events if r.events else 0.0,
        orders=len(r.orders),
        rejections=sum(rejected.values()),
        rejections_by_reason=rejected,
        broker_rejections=r.broker_rejections,
        commission=float(sum(f.commission for f in r.fills)),
        signals=r.signals,
        events=r.events,
        final_risk_state=r.final_risk_state,
    )
