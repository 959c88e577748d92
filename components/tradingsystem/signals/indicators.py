"""Streaming technical indicators: O(1) work and memory bounded by the period per update.

Each ``update`` returns the new value, or ``None`` while the indicator is warming up
(fewer inputs than it needs for the textbook definition).
"""

from __future__ import annotations

import math
from collections import deque


def _period(n: int) -> int:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"period must be a positive integer, got {n!r}")
    return n


class SMA:
    """Simple moving average over the last ``n`` values (running sum)."""

    def __init__(self, n: int) -> None:
        self.n = _period(n)
        self._win: deque[float] = deque()
        self._sum = 0.0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        self._win.append(x)
        self._sum += x
        if len(self._win) > self.n:
            self._sum -= self._win.popleft()
        if len(self._win) == self.n:
            self.value = self._sum / self.n
        return self.value


class EMA:
    """Exponential moving average, alpha = 2/(n+1), seeded with the SMA of the first ``n`` values."""

    def __init__(self, n: int) -> None:
        self.n = _period(n)
        self.alpha = 2.0 / (n + 1)
        self._seed = SMA(n)
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        if self.value is None:
            self.value = self._seed.update(x)
        else:
            self.value += self.alpha * (x - self.value)
        return self.value


class WilderAverage:
    """Wilder's smoothing (alpha = 1/n), seeded with the simple mean of the first ``n`` values."""

    def __init__(self, n: int) -> None:
        self.n = _period(n)
        self._count = 0
        self._sum = 0.0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        if self.value is not None:
            self.value = (self.value * (self.n - 1) + x) / self.n
            return self.value
        self._count += 1
        self._sum += x
        if self._count == self.n:
            self.value = self._sum / self.n
        return self.value


class RSI:
    """Wilder's RSI: Wilder-smoothed average gain and loss of ``n`` price changes.

    The first value needs ``n + 1`` prices. A flat window (no gains, no losses) is 50.
    """

    def __init__(self, n: int = 14) -> None:
        self.n = _period(n)
        self._prev: float | None = None
        self._gain = WilderAverage(n)
        self._loss = WilderAverage(n)
        self.value: float | None = None

    def update(self, price: float) -> float | None:
        if self._prev is not None:
            change = price - self._prev
            gain = self._gain.update(max(change, 0.0))
            loss = self._loss.update(max(-change, 0.0))
            if gain is not None and loss is not None:
                if loss == 0.0:
                    self.value = 50.0 if gain == 0.0 else 100.0
                else:
                    self.value = 100.0 - 100.0 / (1.0 + gain / loss)
        self._prev = price
        return self.value


class MACD:
    """MACD line (EMA fast - EMA slow), its signal line (EMA of MACD) and the histogram."""

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        if fast >= slow:
            raise ValueError(f"MACD fast period ({fast}) must be shorter than slow ({slow})")
        self._fast = EMA(fast)
        self._slow = EMA(slow)
        self._signal = EMA(signal)
        self.macd: float | None = None
        self.signal: float | None = None
        self.hist: float | None = None

    def update(self, price: float) -> float | None:
        """Returns the histogram once the signal line exists."""
        f = self._fast.update(price)
        s = self._slow.update(price)
        if f is None or s is None:
            return None
        self.macd = f - s
        self.signal = self._signal.update(self.macd)
        if self.signal is not None:
            self.hist = self.macd - self.signal
        return self.hist


class Bollinger:
    """Bands at ``k`` population standard deviations around the SMA of ``n`` values.

    ``update`` returns %B (0 at the lower band, 1 at the upper). The variance is kept as the
    sum of squared deviations from the mean (Welford's update, sliding form), never as
    E[x²] - E[x]²: on a quiet high-priced symbol (600 000 ± 0.01) that difference cancels
    every significant digit. Both are recomputed exactly every ``n`` updates so float
    drift cannot accumulate.
    """

    def __init__(self, n: int = 20, k: float = 2.0) -> None:
        self.n = _period(n)
        if not k > 0:
            raise ValueError(f"Bollinger k must be positive, got {k!r}")
        self.k = k
        self._win: deque[float] = deque()
        self._mean = 0.0
        self._m2 = 0.0  # sum of squared deviations from _mean over the window
        self._since_exact = 0
        self.mid: float | None = None
        self.upper: float | None = None
        self.lower: float | None = None
        self.pct_b: float | None = None

    def update(self, x: float) -> float | None:
        win = self._win
        win.append(x)
        if len(win) > self.n:
            old = win.popleft()
            mean = self._mean
            self._mean += (x - old) / self.n
            self._m2 += (x - old) * (x - self._mean + old - mean)
        else:
            delta = x - self._mean
            self._mean += delta / len(win)
            self._m2 += delta * (x - self._mean)
        self._since_exact += 1
        if self._since_exact >= self.n:
            self._mean = math.fsum(win) / len(win)
            self._m2 = math.fsum((v - self._mean) ** 2 for v in win)
            self._since_exact = 0
        if len(win) < self.n:
            return None
        mean = self._mean
        sd = math.sqrt(max(self._m2 / self.n, 0.0))
        self.mid, self.upper, self.lower = mean, mean + self.k * sd, mean - self.k * sd
        self.pct_b = 0.5 if sd == 0.0 else (x - self.lower) / (self.upper - self.lower)
        return self.pct_b


class ATR:
    """Wilder's average true range over ``n`` bars; the first bar's true range is high - low."""

    def __init__(self, n: int = 14) -> None:
        self.n = _period(n)
        self._avg = WilderAverage(n)
        self._prev_close: float | None = None
        self.value: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        pc = self._prev_close
        tr = high - low if pc is None else max(high - low, abs(high - pc), abs(low - pc))
        self._prev_close = close
        self.value = self._avg.update(tr)
        return self.value
