"""The tick sequence of the parity test, in the simulator's replay format (``sim/prices.py``).

A flat lead-in at exactly 100.00 (quotes 99.99/100.01, trades at 100) brings every average to
exactly 100 whatever number of ticks a consumer saw before, then a random walk in cents per
symbol. Timestamps are fixed (a Monday morning in New York), one time step per 100 ms.
"""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime
from pathlib import Path

COLUMNS = ("T", "S", "t", "p", "s", "bp", "bs", "ap", "as", "o", "h", "l", "c", "v", "n", "vw")
STEP_NS = 100_000_000
BASE_NS = int(datetime(2026, 3, 2, 15, 0, tzinfo=UTC).timestamp()) * 1_000_000_000
FLAT = 100.0


def _row(kind: str, sym: str, ts: int, **f: object) -> dict[str, object]:
    return {"T": kind, "S": sym, "t": ts, **f}


def quote_and_trade(sym: str, ts: int, price: float) -> list[dict[str, object]]:
    return [
        _row("q", sym, ts, bp=f"{price - 0.01:.2f}", bs=100, ap=f"{price + 0.01:.2f}", **{"as": 100}),
        _row("t", sym, ts, p=f"{price:.2f}", s=100),
    ]


def placeholder(path: Path, symbols: list[str], steps: int) -> None:
    """Quotes only, flat: keeps the services supplied (and marked at 100) until the test starts."""
    rows = []
    for k in range(steps):
        for sym in symbols:
            rows.append(_row("q", sym, BASE_NS + k * STEP_NS, bp="99.99", bs=100, ap="100.01", **{"as": 100}))
    _write(path, rows)


def sequence(path: Path, symbols: list[str], *, lead_in: int, steps: int, seed: int) -> None:
    """Starts an hour after the placeholder base, so no check sees time go back."""
    rng = random.Random(seed)
    start = BASE_NS + 3600 * 1_000_000_000  # an hour after the placeholder base
    prices = dict.fromkeys(symbols, FLAT)
    rows: list[dict[str, object]] = []
    for k in range(lead_in + steps):
        ts = start + k * STEP_NS
        for sym in symbols:
            if k >= lead_in:
                prices[sym] = max(1.0, round(prices[sym] * (1 + rng.gauss(0, 0.004)), 2))
            rows += quote_and_trade(sym, ts, prices[sym])
    _write(path, rows)


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
