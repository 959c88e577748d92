"""Smoke test of ``python -m bench backtest --quick``: it runs and prints its table (no timing)."""

from __future__ import annotations

import pytest

from bench import backtest


def test_the_quick_backtest_bench_prints_the_floor_and_the_backtest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    backtest.main(quick=True)
    out = capsys.readouterr().out
    assert "signal engine alone (floor)" in out and "backtest: signals+risk+fills+equity+summary" in out
