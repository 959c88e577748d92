"""Streaming indicators against textbook values and straightforward batch reference code."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from tradingsystem.signals.indicators import ATR, EMA, MACD, RSI, SMA, Bollinger, WilderAverage

# StockCharts' worked RSI example (Wilder, 14 periods) and its published RSI column.
CS_PRICES = [
    44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03, 45.61, 46.28,
    46.28, 46.00, 46.03, 46.41, 46.22, 45.64, 46.21, 46.25, 45.71, 46.45, 45.78, 45.35, 44.03, 44.18,
    44.22, 44.57, 43.42, 42.66, 43.13,
]  # fmt: skip
CS_RSI = [
    70.46, 66.25, 66.48, 69.35, 66.29, 57.92, 62.88, 63.21, 56.01, 62.34, 54.67, 50.39, 40.02, 41.49,
    41.90, 45.50, 37.32, 33.09, 37.79,
]  # fmt: skip


def walk(n: int, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    p, out = 100.0, []
    for _ in range(n):
        p *= 1 + rng.gauss(0, 0.01)
        out.append(p)
    return out


def ref_wilder(xs: list[float], n: int) -> list[float | None]:
    """Wilder's smoothing written the way the books describe it."""
    out: list[float | None] = [None] * (n - 1)
    avg = sum(xs[:n]) / n
    out.append(avg)
    for x in xs[n:]:
        avg = (avg * (n - 1) + x) / n
        out.append(avg)
    return out


def ref_rsi(prices: list[float], n: int) -> list[float | None]:
    ch = [b - a for a, b in itertools.pairwise(prices)]
    g = ref_wilder([max(c, 0) for c in ch], n)
    lo = ref_wilder([max(-c, 0) for c in ch], n)
    out: list[float | None] = [None]
    for a, b in zip(g, lo, strict=True):
        out.append(None if a is None or b is None else 100 - 100 / (1 + a / b))
    return out


def ref_ema(xs: list[float], n: int) -> list[float | None]:
    out: list[float | None] = [None] * (n - 1)
    e = sum(xs[:n]) / n
    out.append(e)
    for x in xs[n:]:
        e = x * 2 / (n + 1) + e * (1 - 2 / (n + 1))
        out.append(e)
    return out


def test_rsi_matches_the_published_textbook_example() -> None:
    r = RSI(14)
    got = [r.update(p) for p in CS_PRICES]
    assert got[:14] == [None] * 14  # needs 14 changes = 15 prices
    assert [round(v, 2) for v in got[14:] if v is not None] == CS_RSI


def test_rsi_matches_reference_wilder_computation_on_a_long_walk() -> None:
    prices = walk(500)
    r = RSI(14)
    for got, want in zip((r.update(p) for p in prices), ref_rsi(prices, 14), strict=True):
        assert (got is None and want is None) or got == pytest.approx(want, rel=1e-9)


def test_rsi_edge_cases() -> None:
    up = RSI(3)
    assert [up.update(p) for p in (1, 2, 3, 4, 5)][-1] == 100.0
    flat = RSI(3)
    assert [flat.update(5.0) for _ in range(6)][-1] == 50.0
    down = RSI(3)
    assert [down.update(p) for p in (5, 4, 3, 2)][-1] == 0.0


def test_sma_and_ema_known_values() -> None:
    s = SMA(3)
    assert [s.update(x) for x in (1, 2, 3, 4, 5)] == [None, None, 2.0, 3.0, 4.0]
    e = EMA(3)  # alpha 0.5, seeded with the SMA of the first three
    assert [e.update(x) for x in (1, 2, 3, 4, 5)] == [None, None, 2.0, 3.0, 4.0]
    e2 = EMA(3)
    assert [e2.update(x) for x in (2, 4, 6, 10)] == [None, None, 4.0, 7.0]
    prices = walk(300)
    e3 = EMA(20)
    for got, want in zip((e3.update(p) for p in prices), ref_ema(prices, 20), strict=True):
        assert (got is None and want is None) or got == pytest.approx(want, rel=1e-12)


def test_wilder_average_seeds_with_mean() -> None:
    w = WilderAverage(2)
    assert [w.update(x) for x in (1, 3, 5)] == [None, 2.0, 3.5]


def test_macd_matches_ema_difference_reference() -> None:
    prices = walk(300)
    fast, slow = ref_ema(prices, 12), ref_ema(prices, 26)
    line = [f - s for f, s in zip(fast, slow, strict=True) if f is not None and s is not None]
    sig = ref_ema(line, 9)
    m = MACD(12, 26, 9)
    hist = [h for h in (m.update(p) for p in prices) if h is not None]
    want = [ml - sg for ml, sg in zip(line, sig, strict=True) if sg is not None]
    assert len(hist) == len(want) == 300 - 25 - 8
    assert hist == pytest.approx(want, rel=1e-9, abs=1e-12)
    with pytest.raises(ValueError, match="fast"):
        MACD(26, 12)


def test_bollinger_against_statistics_pstdev() -> None:
    prices = walk(400)
    b = Bollinger(20, 2.0)
    for i, p in enumerate(prices):
        pct = b.update(p)
        if i < 19:
            assert pct is None
            continue
        win = prices[i - 19 : i + 1]
        mean, sd = statistics.fmean(win), statistics.pstdev(win)
        assert b.mid == pytest.approx(mean, rel=1e-12)
        assert b.upper == pytest.approx(mean + 2 * sd, rel=1e-9)
        assert pct == pytest.approx((p - (mean - 2 * sd)) / (4 * sd), rel=1e-6)
    flat = Bollinger(3)
    assert [flat.update(1.0) for _ in range(3)][-1] == 0.5


def test_bollinger_bands_of_a_quiet_high_priced_symbol_match_the_exact_deviation() -> None:
    # 600 000 moving by cents: E[x²] - E[x]² cancels every significant digit here (an error of
    # order 1e-4 in a variance of order 1e-4), so the old form gave bands that were noise or 0.
    rng = random.Random(11)
    prices = [600_000 + rng.choice((-0.02, -0.01, 0.0, 0.01, 0.02)) for _ in range(300)]
    b = Bollinger(20, 2.0)
    for i, p in enumerate(prices):
        b.update(p)
        if i >= 19:
            sd = statistics.pstdev(prices[i - 19 : i + 1])  # exact: computed in fractions
            assert b.upper is not None and b.upper - b.mid == pytest.approx(2 * sd, rel=1e-6)


def test_atr_true_range_and_wilder_smoothing() -> None:
    a = ATR(2)
    assert a.update(10, 8, 9) is None  # TR 2
    assert a.update(12, 10, 11) == 2.5  # TR max(2, |12-9|, |10-9|) = 3; mean(2, 3)
    assert a.update(11.5, 11, 11) == pytest.approx((2.5 + 0.5) / 2)  # TR 0.5
    rng = random.Random(9)
    bars = [(c + rng.random(), c - rng.random(), c) for c in walk(200)]
    trs = [bars[0][0] - bars[0][1]] + [
        max(h - lo, abs(h - pc), abs(lo - pc)) for (h, lo, _), (_, _, pc) in zip(bars[1:], bars, strict=False)
    ]
    a14 = ATR(14)
    got = [a14.update(*bar) for bar in bars]
    want = ref_wilder(trs, 14)
    assert got[:13] == want[:13] == [None] * 13
    assert got[13:] == pytest.approx(want[13:], rel=1e-12)


def test_bad_periods_are_rejected() -> None:
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError):
            SMA(bad)  # type: ignore[arg-type]
