"""Strategies signal on state changes only; the registry validates parameters at start."""

from __future__ import annotations

import itertools
import math

import pytest

from tradingsystem.common.wire import Action
from tradingsystem.signals.strategies import STRATEGIES, Decision, StrategyConfigError, StrategyFactory


def feed(strategy_name: str, params: dict[str, object], prices: list[float]) -> list[tuple[int, Decision]]:
    s = StrategyFactory(strategy_name, params).new()
    return [(i, d) for i, p in enumerate(prices) if (d := s.update(p, p, p)) is not None]


def v_shape(n_down: int = 30, n_up: int = 30) -> list[float]:
    down = [100.0 - i for i in range(n_down)]
    return down + [down[-1] + i + 1 for i in range(n_up)]


def test_registry_has_the_documented_strategies() -> None:
    assert {"ma_crossover", "macd_momentum", "rsi_reversion"} <= set(STRATEGIES)


def test_ma_crossover_signals_once_per_cross() -> None:
    prices = v_shape() + [130.0 - i for i in range(40)]  # down, up, down again
    got = feed("ma_crossover", {"fast": 3, "slow": 8, "average": "sma"}, prices)
    assert [d.action for _, d in got] == [Action.BUY, Action.SELL]
    buy_at, sell_at = got[0][0], got[1][0]
    assert 30 < buy_at < 40 and 60 < sell_at < 70
    assert all(0.5 <= d.strength <= 1 for _, d in got)  # 0.5 at a bare cross, more with a wider spread


def test_ma_crossover_is_silent_without_a_cross() -> None:
    assert feed("ma_crossover", {"fast": 3, "slow": 8}, [100.0 + i for i in range(100)]) == []


def test_macd_momentum_follows_histogram_sign_changes() -> None:
    wave = [100 + 5 * math.sin(2 * math.pi * i / 40) for i in range(160)]
    got = feed("macd_momentum", {"fast": 3, "slow": 6, "signal": 3}, wave)
    actions = [d.action for _, d in got]
    assert len(actions) >= 6  # about two turns per cycle, not one per tick
    assert all(a != b for a, b in itertools.pairwise(actions))  # alternating
    # Momentum turns up near the troughs of the wave (i = 30, 70, ...), down near the peaks.
    for i, d in got:
        phase = i % 40
        assert (d.action is Action.BUY) == (20 <= phase < 40 or phase < 2)


def test_rsi_reversion_buys_oversold_sells_overbought_and_exits() -> None:
    prices = [100.0] * 2 + [100.0 + (i % 2) * 0.5 for i in range(20)]  # choppy: RSI mid-range
    prices += [prices[-1] - i for i in range(1, 10)]  # sell-off -> oversold
    prices += [prices[-1] + i for i in range(1, 20)]  # rally -> through 50 and overbought
    got = feed("rsi_reversion", {"period": 5, "oversold": 30, "overbought": 70, "exit": 50}, prices)
    assert [d.action for _, d in got] == [Action.BUY, Action.FLAT, Action.SELL]
    assert got[0][1].strength >= 0.5


def test_rsi_reversion_without_exit_never_flattens() -> None:
    prices = (
        [100.0 + (i % 2) for i in range(20)] + [100.0 - i for i in range(10)] + [91.0 + i for i in range(20)]
    )
    got = feed("rsi_reversion", {"period": 5}, prices)
    assert [d.action for _, d in got] == [Action.BUY, Action.SELL]


@pytest.mark.parametrize(
    ("name", "params", "names"),
    [
        ("ma_crossover", {"fast": 30, "slow": 10}, "fast (30) must be shorter than slow (10)"),
        ("ma_crossover", {"fast": 0}, "signals.params.fast"),
        ("ma_crossover", {"average": "wma"}, "signals.params.average"),
        ("ma_crossover", {"speed": 3}, "signals.params.speed"),
        ("rsi_reversion", {"oversold": 80}, "oversold (80.0) must be below overbought"),
        ("rsi_reversion", {"period": "x"}, "signals.params.period"),
        ("macd_momentum", {"signal": -1}, "signals.params.signal"),
    ],
)
def test_bad_params_fail_at_start_naming_the_parameter(
    name: str, params: dict[str, object], names: str
) -> None:
    with pytest.raises(StrategyConfigError, match=names.replace("(", r"\(").replace(")", r"\)")):
        StrategyFactory(name, params)


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(StrategyConfigError, match=r"unknown strategy 'nope'.*ma_crossover"):
        StrategyFactory("nope", {})
