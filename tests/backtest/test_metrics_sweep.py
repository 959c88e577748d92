"""The summary's arithmetic on known curves, and parameter sweeps on several processes."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal

import pytest
from bt_builders import DAY_NS, T0, ZIGZAG, closes, daily_walk, run, settings

from tradingsystem.backtest.core import BacktestInputs, BacktestResult
from tradingsystem.backtest.metrics import Metric, drawdown, summarize
from tradingsystem.backtest.sweep import parse_grid, points, run_sweep, table


def curve(values: list[float], step_ns: int = DAY_NS) -> BacktestResult:
    """A result with only an equity curve (one point a day), for the arithmetic."""
    r = run(closes([100.0]))
    r.equity, r.equity_ns = values, [T0 + i * step_ns for i in range(len(values))]
    r.initial_cash, r.final_equity, r.events = Decimal(str(values[0])), Decimal(str(values[-1])), len(values)
    return r


def test_drawdown_is_the_fall_from_the_running_peak() -> None:
    assert drawdown([100, 120, 90, 120, 130]) == [0.0, 0.0, -0.25, 0.0, 0.0]


def test_max_drawdown_and_its_duration_run_from_the_peak_to_the_recovery() -> None:
    s = summarize(curve([100, 120, 90, 100, 120, 130]))
    assert (s.max_drawdown_pct, s.max_drawdown_days, s.max_drawdown_points) == (25.0, 2.0, 2)


def test_a_drawdown_not_recovered_lasts_to_the_end() -> None:
    assert summarize(curve([100, 120, 110, 100, 90])).max_drawdown_days == 3.0


def test_total_and_annualised_return_compound_over_calendar_time() -> None:
    s = summarize(curve([100.0, 121.0], step_ns=int(2 * 365.25 * DAY_NS)))
    assert (round(s.total_return_pct, 9), round(s.annual_return_pct, 9)) == (21.0, 10.0)


def test_sharpe_is_mean_over_sample_deviation_annualised_by_points_per_year() -> None:
    values = [100.0, 101.0, 100.0, 101.0, 102.0]
    rets = [b / a - 1 for a, b in itertools.pairwise(values)]
    mean = sum(rets) / len(rets)
    sd = math.sqrt(sum((x - mean) ** 2 for x in rets) / (len(rets) - 1))
    per_year = len(rets) / (4 * DAY_NS / (365.25 * 86400e9))
    assert summarize(curve(values)).sharpe == pytest.approx(mean / sd * math.sqrt(per_year))


def test_win_rate_and_profit_factor_count_closed_round_trips() -> None:
    s = summarize(run(closes(ZIGZAG)))  # one closed loser (-70), one trade still open
    assert (s.trades, s.win_rate_pct, s.profit_factor) == (1, 0.0, 0.0)


def test_buy_and_hold_averages_each_symbols_move_over_the_period() -> None:
    events = sorted(
        closes([100.0, 90.0, 97.0]) + closes([50.0, 55.0, 60.0], sym="QQQ"), key=lambda e: e.start_ts
    )
    assert summarize(run(events, settings(("SPY", "QQQ")))).buy_hold_return_pct == pytest.approx(8.5)


def test_exposure_is_the_share_of_points_with_a_position() -> None:
    # long after the fills at bars 4 and 9 until the sell at bar 7 and the end: 6 of 12 bars
    assert summarize(run(closes(ZIGZAG))).exposure_pct == 50.0


def test_a_grid_spec_takes_lists_and_inclusive_ranges() -> None:
    assert parse_grid(["fast=5,10", "slow=30:60:15", "average=sma"]) == {
        "fast": [5, 10],
        "slow": [30, 45, 60],
        "average": ["sma"],
    }


def test_a_bad_grid_spec_says_how_to_write_it() -> None:
    with pytest.raises(ValueError, match="NAME=V1,V2"):
        parse_grid(["fast"])


def test_the_grid_is_every_combination() -> None:
    assert len(points({"a": [1, 2, 3], "b": [1, 2]})) == 6


def test_a_sweep_on_two_processes_ranks_every_point_by_the_metric_and_lists_refused_points_last() -> None:
    events = daily_walk(300, seed=4)
    inputs = BacktestInputs(settings=settings(signals={"params": {"average": "sma"}}))
    rows = run_sweep(events, inputs, {"fast": [5, 10, 40], "slow": [20, 30]}, Metric.SHARPE, workers=2)
    sharpes = [r.summary.sharpe for r in rows if r.summary is not None]
    assert len(sharpes) == 4 and sharpes == sorted(sharpes, reverse=True)
    assert [r.params["fast"] for r in rows[4:]] == [40, 40] and "must be shorter" in rows[-1].error


def test_each_sweep_point_equals_a_single_run_with_those_parameters() -> None:
    events = daily_walk(300, seed=4)
    inputs = BacktestInputs(settings=settings(signals={"params": {"average": "sma"}}))
    best = run_sweep(events, inputs, {"fast": [5, 10], "slow": [20, 30]}, Metric.FINAL_EQUITY, workers=2)[0]
    single = run(events, settings(signals={"params": {"average": "sma", **best.params}}))
    assert best.summary is not None and best.summary.final_equity == float(
        single.final_equity.quantize(Decimal("0.01"))
    )


def test_the_sweep_table_has_a_row_per_point_under_a_header() -> None:
    events = daily_walk(120, seed=4)
    inputs = BacktestInputs(settings=settings(signals={"params": {"average": "sma"}}))
    rows = run_sweep(events, inputs, {"fast": [3, 5]}, Metric.TOTAL_RETURN, workers=1)
    lines = table(rows, Metric.TOTAL_RETURN).splitlines()
    assert lines[0] == "ranked by total_return_pct" and len(lines) == 4 and "fast" in lines[1]
