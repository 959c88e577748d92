"""The report: files a trader opens, and the HTML page rendered by a real headless Chromium."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from bt_builders import daily_walk, run, settings
from matplotlib.image import imread

from tradingsystem.backtest.metrics import summarize
from tradingsystem.backtest.report import ReportFiles, write_report
from tradingsystem_testing.browser import dump_dom, screenshot

SYMBOLS = ("SPY", "QQQ")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    bars = sorted(
        daily_walk(400, seed=1, sym="SPY") + daily_walk(400, seed=2, sym="QQQ"), key=lambda b: b.start_ts
    )
    s = settings(
        SYMBOLS,
        signals={"params": {"fast": 10, "slow": 30, "average": "sma"}},
        risk={"sizing": "strength", "order_qty": 20, "max_order_notional": 1500},  # strong signals
    )
    r = run(bars, s)
    return write_report(r, summarize(r), tmp_path_factory.mktemp("report"), "Test report")


def test_the_report_directory_holds_the_page_the_tables_and_a_chart_per_symbol(report: ReportFiles) -> None:
    names = sorted(p.name for p in report.directory.iterdir())
    assert names == [
        "equity.png",
        "orders.csv",
        "price_QQQ.png",
        "price_SPY.png",
        "report.html",
        "summary.json",
        "trades.csv",
    ]


def test_the_summary_counts_rejections_by_reason(report: ReportFiles) -> None:
    summary = json.loads(report.summary.read_text())
    assert (
        summary["rejections_by_reason"] == {"max_order_notional": summary["rejections"]}
        and summary["rejections"] > 0
    )


def test_the_trade_list_has_one_row_per_round_trip(report: ReportFiles) -> None:
    rows = list(csv.DictReader(report.trades.open()))
    assert (
        rows
        and {r["symbol"] for r in rows} == set(SYMBOLS)
        and all(r["direction"] in ("long", "short") for r in rows)
    )


def test_the_page_is_self_contained(report: ReportFiles) -> None:
    page = report.html.read_text()
    assert not re.search(r'(src|href)="(?!data:)', page)


def test_chromium_renders_every_chart_of_the_page(report: ReportFiles) -> None:
    dom = dump_dom(report.html.as_uri())
    assert 'data-charts-loaded="3"' in dom and "Max drawdown" in dom


def test_a_screenshot_of_the_page_is_not_blank(report: ReportFiles, tmp_path: Path) -> None:
    pixels = imread(screenshot(report.html.as_uri(), tmp_path / "page.png"))
    assert pixels.shape[0] == 900 and pixels[..., :3].std() > 0.05
