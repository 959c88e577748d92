"""Ticks in, signals out: one strategy and one feature set per symbol, the optional model on top.

Pure (no I/O), so the signal logic is tested without sockets.
"""

from __future__ import annotations

from tradingsystem.common import wire
from tradingsystem.signals.features import FEATURE_NAMES, FeatureSet
from tradingsystem.signals.model import LinearModel
from tradingsystem.signals.strategies import Strategy, StrategyFactory


def available_features(factory: StrategyFactory) -> tuple[str, ...]:
    return (*factory.cls.feature_names, *FEATURE_NAMES)


class _SymbolState:
    __slots__ = ("features", "strategy")

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.features = FeatureSet()


class SignalEngine:
    def __init__(
        self,
        symbols: list[str],
        factory: StrategyFactory,
        model: LinearModel | None = None,
        *,
        features: bool = True,
    ) -> None:
        self._state = {s: _SymbolState(factory.new()) for s in symbols}
        self.strategy_name = factory.name
        self.model = model
        self.vetoed = 0  # signals the model suppressed
        # The common feature set only feeds the model and the signal's ``features`` field;
        # without a model it is skipped unless asked for (``signals.publish_features``): it is
        # most of the per-tick cost, and decisions do not depend on it.
        self._features = features or model is not None

    def knows(self, symbol: str) -> bool:
        return symbol in self._state

    def warm(self, symbol: str, price: float, high: float, low: float) -> None:
        """Advance indicators and strategy state with history; whatever it would signal is discarded."""
        st = self._state[symbol]
        st.features.update(price, high, low)
        st.strategy.update(price, high, low)

    def on_tick(self, tick: wire.Trade | wire.Quote | wire.Bar) -> wire.Signal | None:
        if isinstance(tick, wire.Trade):
            price = high = low = tick.price
        elif isinstance(tick, wire.Quote):
            price = high = low = (tick.bid + tick.ask) / 2
        else:
            price, high, low = tick.close, tick.high, tick.low
        st = self._state[tick.symbol]
        if self._features:
            st.features.update(price, high, low)
        decision = st.strategy.update(price, high, low)
        if decision is None:
            return None
        # Features are only assembled when there is something to send.
        features = (
            {**st.features.values(), **st.strategy.features()} if self._features else st.strategy.features()
        )
        strength = decision.strength
        if self.model is not None:
            score = self.model.score(features)
            features["model_score"] = score
            gated = self.model.gate(decision.action, score)
            if gated is None:
                self.vetoed += 1
                return None
            strength = gated
        return wire.Signal(
            symbol=tick.symbol,
            action=decision.action,
            strength=strength,
            price=price,
            strategy=self.strategy_name,
            features=features,
            origin_ts=tick.origin_ts,
        )
