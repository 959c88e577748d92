"""The common feature vector of one symbol, fed to the optional model with every signal."""

from __future__ import annotations

import math

from tradingsystem.signals.indicators import ATR, MACD, RSI, Bollinger

FEATURE_NAMES = ("ret_1", "rsi_14", "macd_hist_pct", "bb_pct_b", "atr_pct")


class FeatureSet:
    def __init__(self) -> None:
        self._rsi = RSI(14)
        self._macd = MACD(12, 26, 9)
        self._bb = Bollinger(20, 2.0)
        self._atr = ATR(14)
        self._prev: float | None = None
        self._ret = 0.0
        self._price = 0.0

    def update(self, price: float, high: float, low: float) -> None:
        self._ret = math.log(price / self._prev) if self._prev else 0.0
        self._prev = self._price = price
        self._rsi.update(price)
        self._macd.update(price)
        self._bb.update(price)
        self._atr.update(high, low, price)

    def values(self) -> dict[str, float]:
        """Current features; an indicator still warming up contributes its neutral value."""
        p = self._price or 1.0
        return {
            "ret_1": self._ret,
            "rsi_14": self._rsi.value if self._rsi.value is not None else 50.0,
            "macd_hist_pct": 100.0 * (self._macd.hist or 0.0) / p,
            "bb_pct_b": self._bb.pct_b if self._bb.pct_b is not None else 0.5,
            "atr_pct": 100.0 * (self._atr.value or 0.0) / p,
        }
