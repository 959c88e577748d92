"""The JSON linear/logistic model: loading, validation, scoring and gating; and the engine using it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tradingsystem.common import wire
from tradingsystem.common.wire import Action
from tradingsystem.signals.engine import SignalEngine, available_features
from tradingsystem.signals.model import LinearModel, ModelError
from tradingsystem.signals.strategies import StrategyFactory

SPEC: dict[str, Any] = {
    "format": "linear/1",
    "kind": "logistic",
    "features": ["rsi_14", "ma_spread_pct"],
    "weights": [-0.5, 2.0],
    "bias": 0.25,
    "mean": [50.0, 0.0],
    "scale": [10.0, 1.0],
    "buy_threshold": 0.6,
    "sell_threshold": 0.4,
}
AVAILABLE = ("rsi_14", "ma_spread_pct", "atr_pct")


def write(tmp_path: Path, spec: dict[str, Any]) -> Path:
    p = tmp_path / "model.json"
    p.write_text(json.dumps(spec))
    return p


def test_logistic_score_is_the_standardised_dot_product(tmp_path: Path) -> None:
    m = LinearModel.load(write(tmp_path, SPEC), AVAILABLE)
    x = {"rsi_14": 40.0, "ma_spread_pct": 0.3, "atr_pct": 9.0}
    z = -0.5 * (40 - 50) / 10 + 2.0 * 0.3 + 0.25
    assert m.score(x) == pytest.approx(1 / (1 + math.exp(-z)))
    assert m.score({"rsi_14": 1e6, "ma_spread_pct": 0.0}) == 0.0  # no overflow


def test_linear_kind_is_clipped(tmp_path: Path) -> None:
    m = LinearModel.load(write(tmp_path, {**SPEC, "kind": "linear", "mean": None, "scale": None}), AVAILABLE)
    assert m.score({"rsi_14": 0.0, "ma_spread_pct": 0.3}) == pytest.approx(0.85)
    assert m.score({"rsi_14": 100.0, "ma_spread_pct": 0.0}) == 0.0


def test_gate_lets_confident_signals_through_with_model_strength(tmp_path: Path) -> None:
    m = LinearModel.load(write(tmp_path, SPEC), AVAILABLE)
    assert m.gate(Action.BUY, 0.7) == 0.7
    assert m.gate(Action.BUY, 0.55) is None
    assert m.gate(Action.SELL, 0.3) == pytest.approx(0.7)
    assert m.gate(Action.SELL, 0.5) is None
    assert m.gate(Action.FLAT, 0.5) == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weights": [1.0]}, "weights has 1 entries for 2 features"),
        ({"format": "linear/2"}, "format"),
        (
            {"features": ["rsi_14", "volume_z"], "weights": [1, 1], "mean": None, "scale": None},
            "unknown features",
        ),
        ({"scale": [0.0, 1.0]}, "scale entries must be positive"),
        ({"sell_threshold": 0.9}, "sell_threshold must not exceed buy_threshold"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_model_files_fail_at_start_with_the_reason(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        LinearModel.load(write(tmp_path, {**SPEC, **change}), AVAILABLE)


def test_unreadable_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        LinearModel.load(tmp_path / "missing.json", AVAILABLE)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        LinearModel.load(bad, AVAILABLE)


def trades(prices: list[float]) -> list[wire.Trade]:
    return [
        wire.Trade(symbol="AAPL", price=p, size=1, exch_ts=i, origin_ts=1000 + i)
        for i, p in enumerate(prices)
    ]


V_PRICES = [100.0 - i for i in range(30)] + [71.0 + i for i in range(30)]


def test_engine_emits_signal_with_features_and_origin_ts() -> None:
    factory = StrategyFactory("ma_crossover", {"fast": 3, "slow": 8})
    engine = SignalEngine(["AAPL"], factory)
    sigs = [s for t in trades(V_PRICES) if (s := engine.on_tick(t)) is not None]
    assert len(sigs) == 1
    s = sigs[0]
    assert (s.symbol, s.action, s.strategy) == ("AAPL", Action.BUY, "ma_crossover")
    i = s.origin_ts - 1000  # carries the triggering tick's receive time
    assert i >= 30 and V_PRICES[i] == s.price
    assert set(available_features(factory)) == set(s.features)


def test_engine_model_vetoes_or_scores(tmp_path: Path) -> None:
    factory = StrategyFactory("ma_crossover", {"fast": 3, "slow": 8})
    always_up = {
        **SPEC,
        "features": ["ma_spread_pct"],
        "weights": [0.0],
        "bias": 5.0,
        "mean": None,
        "scale": None,
    }
    never = {**always_up, "bias": -5.0}
    up = SignalEngine(
        ["AAPL"], factory, LinearModel.load(write(tmp_path, always_up), available_features(factory))
    )
    (sig,) = [s for t in trades(V_PRICES) if (s := up.on_tick(t)) is not None]
    assert sig.strength == pytest.approx(1 / (1 + math.exp(-5)))
    assert sig.features["model_score"] == sig.strength
    veto = SignalEngine(
        ["AAPL"], factory, LinearModel.load(write(tmp_path, never), available_features(factory))
    )
    assert all(veto.on_tick(t) is None for t in trades(V_PRICES))
    assert veto.vetoed == 1


def test_the_documented_example_model_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "strategies.md").read_text()
    example = doc.split("```json\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.json"
    path.write_text(example)
    m = LinearModel.load(path, available_features(StrategyFactory("ma_crossover", {})))
    neutral = {"rsi_14": 50.0, "macd_hist_pct": 0.0, "bb_pct_b": 0.5}
    assert m.score(neutral) == pytest.approx(0.5)


def test_engine_prices_quotes_at_mid_and_bars_at_close() -> None:
    factory = StrategyFactory("ma_crossover", {"fast": 2, "slow": 3, "average": "sma"})
    engine = SignalEngine(["AAPL"], factory)
    down = [
        wire.Quote(symbol="AAPL", bid=p - 1, bid_size=1, ask=p + 1, ask_size=1, exch_ts=0) for p in (10, 9, 8)
    ]
    assert [engine.on_tick(q) for q in down] == [None, None, None]
    sig = engine.on_tick(wire.Quote(symbol="AAPL", bid=19, bid_size=1, ask=21, ask_size=1, exch_ts=0))
    assert sig is not None and (sig.action, sig.price) == (Action.BUY, 20.0)
    bars = SignalEngine(["AAPL"], factory)
    for c in (10.0, 9.0, 8.0):
        assert (
            bars.on_tick(
                wire.Bar(symbol="AAPL", open=c, high=c + 5, low=c - 5, close=c, volume=1, start_ts=0)
            )
            is None
        )
    sig = bars.on_tick(wire.Bar(symbol="AAPL", open=8, high=30, low=8, close=20, volume=1, start_ts=0))
    assert sig is not None and sig.price == 20.0
