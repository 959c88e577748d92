"""Price sources for the simulator: a seeded synthetic process per symbol, or replay of a CSV.

Both produce ``Tick`` records (one per Alpaca market-data message: trade ``t``, quote ``q`` or
bar ``b``) with prices already rounded to cents, so fills computed from them are exact.

Synthetic (``SyntheticMarket``): per symbol a geometric Brownian motion of the mid price,
a quote around it with a spread of a few basis points (at least one cent), a trade at the bid
or the ask, and a bar every ``bar_every`` steps aggregated from the trades of those steps.
The sequence of prices depends only on the seed and the symbol, never on timing.

Replay (``ReplayMarket``): a CSV with a header and Alpaca's short field names
``T,S,t,p,s,bp,bs,ap,as,o,h,l,c,v,n,vw`` (``T`` is t/q/b, ``t`` RFC3339 or integer ns; unused
columns empty), emitted in file order. Timestamps from the file are kept as they are.
"""

from __future__ import annotations

import csv
import hashlib
import math
import random
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from tradingsystem.common.money import CENT, cents

# Annualised drift/vol of the GBM; one step is treated as one second of trading.
DRIFT = 0.05
VOLATILITY = 0.30
SECONDS_PER_YEAR = 252 * 6.5 * 3600


@dataclass(slots=True)
class Tick:
    """One market-data message; fields not used by its kind stay ``None``."""

    kind: str  # "t" trade, "q" quote, "b" bar (Alpaca's T codes)
    symbol: str
    ts_ns: int
    price: Decimal | None = None  # trade
    size: int | None = None
    trade_id: int | None = None
    bid: Decimal | None = None  # quote
    bid_size: int | None = None
    ask: Decimal | None = None
    ask_size: int | None = None
    open: Decimal | None = None  # bar
    high: Decimal | None = None
    low: Decimal | None = None
    close: Decimal | None = None
    volume: int | None = None
    trade_count: int | None = None
    vwap: Decimal | None = None


def symbol_seed(seed: int, symbol: str) -> int:
    """A stable per-symbol seed (``hash()`` is salted per process, so use sha256)."""
    digest = hashlib.sha256(f"{seed}:{symbol}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def start_price(seed: int, symbol: str) -> Decimal:
    return cents(random.Random(symbol_seed(seed, symbol) ^ 0x5EED).uniform(20.0, 500.0))


class SymbolProcess:
    """GBM mid price with quotes, trades and bars for one symbol."""

    def __init__(self, symbol: str, seed: int, bar_every: int, spread_bps: float = 2.0) -> None:
        self.symbol = symbol
        self.rng = random.Random(symbol_seed(seed, symbol))
        self.mid = float(start_price(seed, symbol))
        self.spread_bps = spread_bps
        self.bar_every = max(1, bar_every)
        self.trade_id = 0
        self._bar: list[tuple[Decimal, int]] = []

    def step(self, ts_ns: int) -> list[Tick]:
        """Advance one step: quote, trade and (every ``bar_every`` steps) a bar."""
        rng = self.rng
        dt = 1.0 / SECONDS_PER_YEAR
        z = rng.gauss(0.0, 1.0)
        self.mid *= math.exp((DRIFT - 0.5 * VOLATILITY**2) * dt + VOLATILITY * math.sqrt(dt) * z)
        half = max(0.005, self.mid * self.spread_bps / 20_000)
        bid = cents(self.mid - half)
        ask = max(cents(self.mid + half), bid + CENT)
        quote = Tick(
            "q",
            self.symbol,
            ts_ns,
            bid=bid,
            bid_size=rng.randint(1, 10) * 100,
            ask=ask,
            ask_size=rng.randint(1, 10) * 100,
        )
        self.trade_id += 1
        price = ask if rng.random() < 0.5 else bid
        size = rng.choice((1, 5, 10, 50, 100, 100, 200, 500))
        trade = Tick("t", self.symbol, ts_ns, price=price, size=size, trade_id=self.trade_id)
        out = [quote, trade]
        self._bar.append((price, size))
        if len(self._bar) >= self.bar_every:
            out.append(make_bar(self.symbol, ts_ns, self._bar))
            self._bar = []
        return out


def make_bar(symbol: str, ts_ns: int, trades: list[tuple[Decimal, int]]) -> Tick:
    prices = [p for p, _ in trades]
    volume = sum(s for _, s in trades)
    vwap = sum((p * s for p, s in trades), Decimal(0)) / volume
    return Tick(
        "b",
        symbol,
        ts_ns,
        open=prices[0],
        high=max(prices),
        low=min(prices),
        close=prices[-1],
        volume=volume,
        trade_count=len(trades),
        vwap=vwap.quantize(Decimal("0.0001")),
    )


class SyntheticMarket:
    """All symbols' processes; ``step`` advances each by one step."""

    def __init__(self, symbols: list[str], seed: int, bar_every: int) -> None:
        self.processes = [SymbolProcess(s, seed, bar_every) for s in symbols]

    def step(self, ts_ns: int) -> list[Tick]:
        out: list[Tick] = []
        for p in self.processes:
            out.extend(p.step(ts_ns))
        return out

    @property
    def exhausted(self) -> bool:
        return False


def _dec(v: str) -> Decimal | None:
    return Decimal(v) if v else None


def _int(v: str) -> int | None:
    return int(float(v)) if v else None


def _ts(v: str) -> int:
    if v.isdigit():
        return int(v)
    dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def read_replay(path: Path) -> list[Tick]:
    ticks: list[Tick] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            g = row.get
            ticks.append(
                Tick(
                    kind=row["T"],
                    symbol=row["S"],
                    ts_ns=_ts(row["t"]),
                    price=_dec(g("p") or ""),
                    size=_int(g("s") or ""),
                    trade_id=len(ticks) + 1 if row["T"] == "t" else None,
                    bid=_dec(g("bp") or ""),
                    bid_size=_int(g("bs") or ""),
                    ask=_dec(g("ap") or ""),
                    ask_size=_int(g("as") or ""),
                    open=_dec(g("o") or ""),
                    high=_dec(g("h") or ""),
                    low=_dec(g("l") or ""),
                    close=_dec(g("c") or ""),
                    volume=_int(g("v") or ""),
                    trade_count=_int(g("n") or ""),
                    vwap=_dec(g("vw") or ""),
                )
            )
    bad = sorted({t.kind for t in ticks} - {"t", "q", "b"})
    if bad:
        raise ValueError(f"{path}: unknown record types {bad} (expected t, q, b)")
    return ticks


class ReplayMarket:
    """Replays recorded ticks in file order; ``step`` returns the next ``per_step`` records."""

    def __init__(self, path: Path, per_step: int = 1) -> None:
        self.ticks = read_replay(path)
        self.pos = 0
        self.per_step = per_step

    def step(self, ts_ns: int) -> list[Tick]:
        out = self.ticks[self.pos : self.pos + self.per_step]
        self.pos += len(out)
        return out

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.ticks)


def history_bars(
    symbol: str, seed: int, end_price: Decimal, end_ns: int, count: int, minutes: int
) -> list[Tick]:
    """``count`` bars of ``minutes`` length ending at ``end_ns`` whose last close is ``end_price``.

    Walked backwards from the live start price so indicators warmed on history continue
    smoothly into the live stream. Deterministic in (seed, symbol, end_ns alignment).
    """
    rng = random.Random(symbol_seed(seed, symbol) ^ 0xB4C5)
    step = minutes * 60 * 1_000_000_000
    sigma = VOLATILITY * math.sqrt(minutes * 60 / SECONDS_PER_YEAR)
    close = float(end_price)
    bars: list[Tick] = []
    t = end_ns - end_ns % step - step  # the last period that had completed at end_ns
    for _ in range(count):
        open_ = close / math.exp(sigma * rng.gauss(0.0, 1.0))
        wiggle = abs(rng.gauss(0.0, sigma / 2)) * close
        high, low = max(open_, close) + wiggle, min(open_, close) - wiggle
        volume = rng.randint(5, 200) * 100
        bars.append(
            Tick(
                "b",
                symbol,
                t,
                open=cents(open_),
                high=cents(high),
                low=cents(low),
                close=cents(close),
                volume=volume,
                trade_count=volume // 100,
                vwap=Decimal(str((open_ + high + low + close) / 4)).quantize(Decimal("0.0001")),
            )
        )
        close = open_
        t -= step
    bars.reverse()
    return bars
