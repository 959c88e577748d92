"""Loading history: the documented CSV formats, and Alpaca's historical bars through alpaca-py
against our simulator (which serves historical bars), with the local cache."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
from bt_builders import daily_walk, write_bars

from tradingsystem.backtest.data import DataError, load_alpaca, load_csv, parse_time
from tradingsystem.common import wire
from tradingsystem.risk.engine import TRADING_TZ
from tradingsystem.sim.auth import DEFAULT_KEY_ID, DEFAULT_SECRET
from tradingsystem_testing.sim import SimulatorThread

DAY_NS = 86_400 * 1_000_000_000


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_date_is_midnight_in_new_york() -> None:
    assert parse_time("2024-07-01") == int(datetime(2024, 7, 1, tzinfo=TRADING_TZ).timestamp()) * 10**9


def test_an_end_date_covers_that_whole_day() -> None:
    assert parse_time("2024-07-01", end_of_day=True) == parse_time("2024-07-02") - 1


def test_bars_round_trip_through_the_documented_bars_format(tmp_path: Path) -> None:
    bars = daily_walk(5)
    assert load_csv(write_bars(tmp_path / "b.csv", bars), ["SPY"]) == bars


def test_dates_in_a_bars_file_are_read_as_new_york_midnight(tmp_path: Path) -> None:
    bars = daily_walk(3)
    assert [b.start_ts for b in load_csv(write_bars(tmp_path / "b.csv", bars, dates=True), ["SPY"])] == [
        b.start_ts for b in bars
    ]


def test_the_symbol_column_may_be_left_out_for_one_symbol(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "timestamp,price,size\n2024-01-02T14:30:00Z,10.5,100\n")
    assert load_csv(path, ["XYZ"]) == [
        wire.Trade(
            symbol="XYZ",
            price=10.5,
            size=100.0,
            exch_ts=parse_time("2024-01-02T14:30:00Z"),
            origin_ts=parse_time("2024-01-02T14:30:00Z"),
        )
    ]


def test_the_simulators_replay_format_is_read_by_the_simulators_reader(tmp_path: Path) -> None:
    path = write(
        tmp_path / "r.csv",
        "T,S,t,p,s,bp,bs,ap,as,o,h,l,c,v,n,vw\n"
        "q,AAPL,1000,,,99.99,100,100.01,200,,,,,,,\n"
        "t,AAPL,1001,100.00,5,,,,,,,,,,,\n",
    )
    assert [type(e) for e in load_csv(path, ["AAPL"])] == [wire.Quote, wire.Trade]


def test_rows_outside_the_date_range_and_other_symbols_are_left_out(tmp_path: Path) -> None:
    bars = daily_walk(10) + daily_walk(10, sym="QQQ")
    got = load_csv(write_bars(tmp_path / "b.csv", bars), ["SPY"], bars[2].start_ts, bars[4].start_ts)
    assert got == bars[2:5]


def test_a_bad_row_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", "timestamp,symbol,open,high,low,close\n2024-01-02,SPY,1,2,0.5,x\n")
    with pytest.raises(DataError, match=r"b\.csv:2: column 'close' must be a number"):
        load_csv(path, ["SPY"])


def test_an_impossible_bar_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", "timestamp,symbol,open,high,low,close\n2024-01-02,SPY,1,2,0.5,3\n")
    with pytest.raises(DataError, match="low <= open, close <= high"):
        load_csv(path, ["SPY"])


def test_an_unknown_header_says_which_formats_are_read(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="expected bars"):
        load_csv(write(tmp_path / "x.csv", "a,b\n1,2\n"), ["SPY"])


# --- Alpaca historical bars, against the simulator --------------------------------------------
@pytest.fixture(scope="module")
def sim() -> SimulatorThread:
    with SimulatorThread(["AAPL", "MSFT"], seed=7, tick_rate=5) as s:
        yield s


def _fetch(sim: SimulatorThread, cache: Path | None) -> tuple[list, bool]:
    now = time.time_ns()
    end = now - now % DAY_NS  # a stable cache key within the day
    return load_alpaca(
        ["AAPL", "MSFT"],
        key=DEFAULT_KEY_ID,
        secret=DEFAULT_SECRET,
        timeframe="1Day",
        start_ns=end - 1500 * DAY_NS,
        end_ns=end,
        url_override=sim.base_url,
        cache_dir=cache,
    )


def test_alpaca_bars_are_what_the_server_holds_for_every_symbol_in_time_order(sim: SimulatorThread) -> None:
    events, cached = _fetch(sim, None)
    served = sorted(
        (b.ts_ns, b.symbol, float(b.close))
        for s in ("AAPL", "MSFT")
        for b in sim.history(s, 1440)
        if b.ts_ns >= events[0].start_ts
    )
    assert not cached and [(e.start_ts, e.symbol, e.close) for e in events] == served


def test_a_second_fetch_comes_from_the_local_cache_unchanged(sim: SimulatorThread, tmp_path: Path) -> None:
    first, _ = _fetch(sim, tmp_path)
    second, cached = _fetch(sim, tmp_path)
    assert cached and second == first and len(list(tmp_path.glob("bars-*.csv"))) == 1
