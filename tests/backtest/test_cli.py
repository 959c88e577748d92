"""``tradingsystem backtest``: a run, a sweep, Alpaca data, and clear errors for bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tradingsystem.cli import main
from tradingsystem.sim.auth import DEFAULT_KEY_ID, DEFAULT_SECRET
from tradingsystem_testing.sim import SimulatorThread

EXAMPLES = Path(__file__).parents[2] / "examples" / "backtest"
DATA, CONFIG = EXAMPLES / "daily-bars.csv", EXAMPLES / "config.yaml"


def backtest(*args: str) -> int:
    return main(["backtest", "--quiet", *args])


def test_help_explains_the_data_formats_and_shows_examples() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tradingsystem.cli", "backtest", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "timestamp,symbol,open,high,low,close" in out and "--grid fast=5,10,20" in out


def test_a_run_on_the_example_data_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert backtest("--config", str(CONFIG), "--data", str(DATA), "--out", str(tmp_path)) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert f"final equity {summary['final_equity']:,.2f}" in capsys.readouterr().out
    assert (tmp_path / "report.html").is_file() and summary["trades"] > 0


def test_costs_from_the_command_line_are_charged(tmp_path: Path) -> None:
    args = (
        "--config",
        str(CONFIG),
        "--data",
        str(DATA),
        "--commission-per-share",
        "0.01",
        "--commission-min",
        "1",
    )
    assert backtest(*args, "--out", str(tmp_path)) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    trades = list(csv.DictReader((tmp_path / "trades.csv").open()))
    # every fill pays at least the $1 minimum, and the trades share out exactly what was paid
    assert summary["commission"] >= summary["orders"] - 2
    assert sum(float(t["commission"]) for t in trades) == pytest.approx(
        summary["commission"], abs=0.01 * len(trades)
    )


def test_a_date_range_limits_the_events(tmp_path: Path) -> None:
    args = ("--config", str(CONFIG), "--data", str(DATA), "--start", "2022-01-01", "--end", "2022-12-31")
    assert backtest(*args, "--out", str(tmp_path)) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["events"] == 2 * 260  # two symbols, the weekdays of 2022


def test_a_sweep_prints_one_ranked_table_and_writes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--config", str(CONFIG), "--data", str(DATA), "--grid", "fast=5,10", "--grid", "slow=20,40")
    assert backtest(*args, "--rank-by", "total_return_pct", "--workers", "2", "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert out.startswith("ranked by total_return_pct") and [r["rank"] for r in rows] == ["1", "2", "3", "4"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--data", "missing.csv"), "missing.csv: no such file"),
        (("--slippage-bps", "lots"), "--slippage-bps: not a number"),
        (("--param", "fast=0"), "signals.params.fast"),
        (("--rank-by", "luck", "--grid", "fast=5,10"), "--rank-by: unknown metric 'luck'"),
        (("--source", "quotes"), "the data holds only ['bars']"),
    ],
)
def test_bad_input_stops_with_a_message_naming_it(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {"--data": str(DATA)}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    argv = ["--config", str(CONFIG), *(x for kv in base.items() for x in kv)]
    assert backtest(*argv) == 2
    assert message in capsys.readouterr().err


def test_alpaca_bars_through_the_cli_against_the_simulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with SimulatorThread(["AAPL"], seed=3, tick_rate=5) as sim:
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "symbols": ["AAPL"],
                    "alpaca": {"data_url": sim.base_url},
                    "signals": {"params": {"fast": 5, "slow": 20}},
                }
            )
        )
        monkeypatch.setenv("ALPACA_API_KEY", DEFAULT_KEY_ID)
        monkeypatch.setenv("ALPACA_SECRET_KEY", DEFAULT_SECRET)
        args = (
            "--config",
            str(config),
            "--alpaca",
            "--start",
            "2020-01-01",
            "--cache-dir",
            str(tmp_path / "cache"),
        )
        assert backtest(*args, "--out", str(tmp_path / "out")) == 0
    assert "bars from Alpaca" in capsys.readouterr().err and (tmp_path / "out" / "report.html").is_file()


def test_alpaca_without_keys_says_which_variables_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ALPACA_API_KEY", raising=False)
    monkeypatch.delenv("ALPACA_SECRET_KEY", raising=False)
    assert backtest("--alpaca", "--symbols", "AAPL", "--start", "2024-01-01") == 2
    assert "ALPACA_API_KEY and ALPACA_SECRET_KEY" in capsys.readouterr().err


def test_the_progress_line_counts_events_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from tradingsystem.backtest.cli import _Progress

    progress = _Progress(200_000, enabled=True)
    progress(100_000)
    progress.close()
    err = capsys.readouterr().err
    assert "100,000/200,000 events (50%)" in err and err.endswith(
        "200,000/200,000 events (100%)" + err.split("(100%)")[1]
    )
