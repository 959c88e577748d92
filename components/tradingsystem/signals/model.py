"""An optional, dependency-free linear/logistic model that scores a strategy's signals.

Format (JSON, documented in docs/strategies.md)::

    {"format": "linear/1", "kind": "logistic",
     "features": ["rsi_14", "macd_hist_pct"], "weights": [-0.05, 2.0], "bias": 2.5,
     "mean": [50, 0], "scale": [10, 0.1],          # optional standardisation
     "buy_threshold": 0.55, "sell_threshold": 0.45}

``score`` is ``sigmoid(w . (x - mean) / scale + b)`` for ``logistic`` (probability the price
goes up) and the raw ``w . x + b`` clipped to [0, 1] for ``linear``. A BUY passes only if the
score is at least ``buy_threshold``, a SELL only if it is at most ``sell_threshold``; FLAT
always passes. The model's confidence becomes the signal's strength.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tradingsystem.common.wire import Action


class ModelError(ValueError):
    pass


class _ModelFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["linear/1"]
    kind: Literal["logistic", "linear"] = "logistic"
    features: list[str] = Field(min_length=1)
    weights: list[float]
    bias: float = 0.0
    mean: list[float] | None = None
    scale: list[float] | None = None
    buy_threshold: float = Field(0.5, ge=0, le=1)
    sell_threshold: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _shapes(self) -> _ModelFile:
        n = len(self.features)
        for name in ("weights", "mean", "scale"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"{name} has {len(v)} entries for {n} features")
        if self.scale is not None and any(s <= 0 for s in self.scale):
            raise ValueError("scale entries must be positive")
        if len(set(self.features)) != n:
            raise ValueError("feature names must be unique")
        if self.sell_threshold > self.buy_threshold:
            raise ValueError("sell_threshold must not exceed buy_threshold")
        return self


class LinearModel:
    def __init__(self, spec: _ModelFile) -> None:
        self.features = tuple(spec.features)
        self.kind = spec.kind
        mean = spec.mean or [0.0] * len(self.features)
        scale = spec.scale or [1.0] * len(self.features)
        # Fold standardisation into the weights once: score is one dot product per signal.
        self._w = [w / s for w, s in zip(spec.weights, scale, strict=True)]
        self._b = spec.bias - sum(w * m for w, m in zip(self._w, mean, strict=True))
        self.buy_threshold = spec.buy_threshold
        self.sell_threshold = spec.sell_threshold

    @classmethod
    def load(cls, path: Path, available: Iterable[str]) -> LinearModel:
        """Read and validate ``path``; every model feature must be in ``available``."""
        try:
            spec = _ModelFile.model_validate(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"signals.model_path: cannot read {path}: {exc}") from None
        except ValidationError as exc:
            errs = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'model'}: {e['msg']}"
                for e in exc.errors(include_input=False, include_url=False)
            )
            raise ModelError(f"signals.model_path {path}: {errs}") from None
        missing = sorted(set(spec.features) - set(available))
        if missing:
            raise ModelError(
                f"signals.model_path {path}: unknown features {missing}; available: {sorted(available)}"
            )
        return cls(spec)

    def score(self, features: dict[str, float]) -> float:
        z = self._b + sum(w * features[f] for w, f in zip(self._w, self.features, strict=True))
        if self.kind == "linear":
            return min(1.0, max(0.0, z))
        if z < -500:  # math.exp overflows past ~709; the probability is 0 long before
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))

    def gate(self, action: Action, score: float) -> float | None:
        """Strength of a signal the model lets through, ``None`` if it vetoes it."""
        if action is Action.BUY:
            return score if score >= self.buy_threshold else None
        if action is Action.SELL:
            return 1.0 - score if score <= self.sell_threshold else None
        return 1.0
