"""Pluggable strategies: a registry of name -> class, parameters validated at start.

A strategy instance follows one symbol. ``update(price, high, low)`` returns a ``Decision``
only when its state changes (a crossover, entering a zone), never on every tick, and
``features()`` names the indicator values behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tradingsystem.common.wire import Action
from tradingsystem.signals.indicators import EMA, MACD, RSI, SMA


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    strength: float  # in [0, 1]


def _graded(excess: float) -> float:
    """Strength of a triggered signal: 0.5 at the trigger, rising to 1 at ``excess`` >= 1.

    A crossover happens where the spread is ~0, so strength proportional to the spread would
    size every trade near zero; the trigger itself is the evidence, the excess adds conviction.
    """
    return min(1.0, max(0.5, 0.5 + excess / 2))


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Strategy:
    name: ClassVar[str]
    Params: ClassVar[type[Params]]
    feature_names: ClassVar[tuple[str, ...]]

    def update(self, price: float, high: float, low: float) -> Decision | None:
        raise NotImplementedError

    def features(self) -> dict[str, float]:
        raise NotImplementedError


# --- moving-average crossover ---------------------------------------------------------
class MACrossoverParams(Params):
    fast: int = Field(10, ge=1)
    slow: int = Field(30, ge=2)
    average: Literal["sma", "ema"] = "ema"
    full_strength_pct: float = Field(0.05, gt=0, description="spread (% of price) that gives strength 1")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MACrossoverParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")
        return self


class MACrossover(Strategy):
    """BUY when the fast average crosses above the slow one, SELL when it crosses below."""

    name = "ma_crossover"
    Params = MACrossoverParams
    feature_names = ("ma_fast", "ma_slow", "ma_spread_pct")

    def __init__(self, p: MACrossoverParams) -> None:
        avg = EMA if p.average == "ema" else SMA
        self._fast, self._slow = avg(p.fast), avg(p.slow)
        self._full = p.full_strength_pct
        self._above: bool | None = None
        self._spread_pct = 0.0

    def update(self, price: float, high: float, low: float) -> Decision | None:
        f, s = self._fast.update(price), self._slow.update(price)
        if f is None or s is None:
            return None
        self._spread_pct = 100.0 * (f - s) / s
        above = f > s
        was, self._above = self._above, above
        if was is None or was == above:
            return None  # the first comparison sets the state; only changes signal
        return Decision(Action.BUY if above else Action.SELL, _graded(abs(self._spread_pct) / self._full))

    def features(self) -> dict[str, float]:
        return {
            "ma_fast": self._fast.value or 0.0,
            "ma_slow": self._slow.value or 0.0,
            "ma_spread_pct": self._spread_pct,
        }


# --- MACD momentum --------------------------------------------------------------------
class MACDMomentumParams(Params):
    fast: int = Field(12, ge=1)
    slow: int = Field(26, ge=2)
    signal: int = Field(9, ge=1)
    full_strength_pct: float = Field(0.02, gt=0, description="histogram (% of price) that gives strength 1")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MACDMomentumParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")
        return self


class MACDMomentum(Strategy):
    """BUY when the MACD histogram turns positive (momentum up), SELL when it turns negative."""

    name = "macd_momentum"
    Params = MACDMomentumParams
    feature_names = ("macd", "macd_signal", "macd_hist_pct")

    def __init__(self, p: MACDMomentumParams) -> None:
        self._macd = MACD(p.fast, p.slow, p.signal)
        self._full = p.full_strength_pct
        self._positive: bool | None = None
        self._hist_pct = 0.0

    def update(self, price: float, high: float, low: float) -> Decision | None:
        hist = self._macd.update(price)
        if hist is None or hist == 0.0:
            return None
        self._hist_pct = 100.0 * hist / price
        positive = hist > 0
        was, self._positive = self._positive, positive
        if was is None or was == positive:
            return None
        return Decision(Action.BUY if positive else Action.SELL, _graded(abs(self._hist_pct) / self._full))

    def features(self) -> dict[str, float]:
        return {
            "macd": self._macd.macd or 0.0,
            "macd_signal": self._macd.signal or 0.0,
            "macd_hist_pct": self._hist_pct,
        }


# --- RSI mean reversion ---------------------------------------------------------------
class RSIReversionParams(Params):
    period: int = Field(14, ge=2)
    oversold: float = Field(30.0, gt=0, lt=100)
    overbought: float = Field(70.0, gt=0, lt=100)
    exit: float | None = Field(None, gt=0, lt=100, description="RSI level that closes the position (FLAT)")

    @model_validator(mode="after")
    def _ordered(self) -> RSIReversionParams:
        if self.oversold >= self.overbought:
            raise ValueError(f"oversold ({self.oversold}) must be below overbought ({self.overbought})")
        if self.exit is not None and not self.oversold < self.exit < self.overbought:
            raise ValueError(f"exit ({self.exit}) must lie between oversold and overbought")
        return self


class RSIReversion(Strategy):
    """BUY on entering oversold, SELL on entering overbought; with ``exit`` set, FLAT once RSI
    has reverted through ``exit`` after an entry.

    Strength grows with the depth into the zone: 0.5 at the threshold, 1 at RSI 0 (or 100).
    """

    name = "rsi_reversion"
    Params = RSIReversionParams
    feature_names = ("rsi",)

    def __init__(self, p: RSIReversionParams) -> None:
        self._rsi = RSI(p.period)
        self._p = p
        self._zone: Action | None = None  # BUY (oversold), SELL (overbought), FLAT (between)
        self._entered: Action | None = None  # last entry not yet exited

    def _zone_of(self, rsi: float) -> Action:
        if rsi < self._p.oversold:
            return Action.BUY
        if rsi > self._p.overbought:
            return Action.SELL
        return Action.FLAT

    def update(self, price: float, high: float, low: float) -> Decision | None:
        rsi = self._rsi.update(price)
        if rsi is None:
            return None
        zone, was = self._zone_of(rsi), self._zone
        self._zone = zone
        if was is not None and zone != was and zone is not Action.FLAT:
            self._entered = zone
            if zone is Action.BUY:
                depth = (self._p.oversold - rsi) / self._p.oversold
            else:
                depth = (rsi - self._p.overbought) / (100.0 - self._p.overbought)
            return Decision(zone, _graded(depth))
        exit_ = self._p.exit
        if exit_ is not None and (
            (self._entered is Action.BUY and rsi >= exit_) or (self._entered is Action.SELL and rsi <= exit_)
        ):
            self._entered = None
            return Decision(Action.FLAT, 1.0)
        return None

    def features(self) -> dict[str, float]:
        return {"rsi": self._rsi.value if self._rsi.value is not None else 50.0}


STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (MACrossover, MACDMomentum, RSIReversion)}


class StrategyConfigError(ValueError):
    """Unknown strategy or bad parameter; the message names the parameter."""


class StrategyFactory:
    """Validated once at start; makes one strategy instance per symbol."""

    def __init__(self, name: str, params: dict[str, Any]) -> None:
        cls = STRATEGIES.get(name)
        if cls is None:
            raise StrategyConfigError(
                f"signals.strategy: unknown strategy {name!r}; known: {sorted(STRATEGIES)}"
            )
        try:
            self.params = cls.Params(**params)
        except ValidationError as exc:
            problems = []
            for err in exc.errors(include_input=False, include_url=False):
                loc = ".".join(str(p) for p in err["loc"])
                problems.append(f"signals.params{'.' + loc if loc else ''}: {err['msg']}")
            raise StrategyConfigError(f"strategy {name!r}: " + "; ".join(problems)) from None
        self.cls = cls
        self.name = name

    def new(self) -> Strategy:
        return self.cls(self.params)  # type: ignore[call-arg]
