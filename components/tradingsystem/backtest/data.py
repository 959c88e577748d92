"""Loading history for the backtest: CSV files, or Alpaca's historical bars (with a local cache).

CSV formats, told apart by the header (column order is free, names are lower case):

* bars: ``timestamp,symbol,open,high,low,close[,volume]``;
* trades: ``timestamp,symbol,price[,size]``;
* the simulator's replay format (``T,S,t,p,s,bp,bs,ap,as,o,h,l,c,v,n,vw``, see
  ``sim/prices.py``), read by the simulator's own reader: the same file can be replayed by
  ``tradingsystem sim`` and backtested.

``symbol`` may be left out when one symbol is asked for. ``timestamp`` is integer
nanoseconds, RFC 3339 (``2024-01-02T14:30:00Z``) or a date (``2024-01-02``, midnight in New
York, as Alpaca stamps daily bars). A bar's timestamp is its start.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from tradingsystem.backtest.core import Event, event_ts, sort_events
from tradingsystem.common import wire
from tradingsystem.risk.engine import TRADING_TZ
from tradingsystem.sim.prices import read_replay

BAR_COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
TRADE_COLUMNS = ("timestamp", "symbol", "price", "size")
REQUEST_TIMEOUT_S = 30.0
_TIMEFRAME_RE = re.compile(r"^(\d+)(Min|Hour|Day|Week|Month)$")


class DataError(ValueError):
    """Unreadable or unsuitable data; the message names the file, line and column."""


def parse_time(text: str, *, end_of_day: bool = False) -> int:
    """ns since the epoch of an integer, an RFC 3339 time or a date (New York midnight;
    with ``end_of_day``, the last nanosecond of that day)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            if end_of_day:
                d += timedelta(days=1)
            ns = int(datetime.combine(d, time(), TRADING_TZ).timestamp()) * 1_000_000_000
            return ns - 1 if end_of_day else ns
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"bad time {text!r}: use YYYY-MM-DD, RFC 3339 or integer ns") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def _f(row: dict[str, str], key: str, where: str) -> float:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: column {key!r} must be a number, got {row.get(key)!r}") from None


def _rows(path: Path) -> tuple[list[str], Iterator[dict[str, str]]]:
    fh = path.open(newline="")
    reader = csv.DictReader(fh)
    header = [h.strip() for h in reader.fieldnames or []]

    def it() -> Iterator[dict[str, str]]:
        with fh:
            yield from reader

    return header, it()


def load_csv(
    path: Path, symbols: list[str], start_ns: int | None = None, end_ns: int | None = None
) -> list[Event]:
    """All events of ``symbols`` in ``[start_ns, end_ns]``, time-ordered."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    header, rows = _rows(path)
    if "T" in header and "S" in header:
        events = _replay(path)
    elif {"timestamp", "open", "high", "low", "close"} <= set(header):
        events = _bars(path, rows, symbols)
    elif {"timestamp", "price"} <= set(header):
        events = _trades(path, rows, symbols)
    else:
        raise DataError(
            f"{path}: unknown CSV header {header}; expected bars ({','.join(BAR_COLUMNS)}), "
            f"trades ({','.join(TRADE_COLUMNS)}) or the simulator's replay format (T,S,t,...)"
        )
    wanted = set(symbols)
    out = [
        e
        for e in events
        if e.symbol in wanted
        and (start_ns is None or event_ts(e) >= start_ns)
        and (end_ns is None or event_ts(e) <= end_ns)
    ]
    if not out:
        raise DataError(f"{path}: no rows for {','.join(symbols)} in the chosen date range")
    return sort_events(out)


def _symbol(row: dict[str, str], symbols: list[str], where: str) -> str:
    sym = (row.get("symbol") or "").strip().upper()
    if sym:
        return sym
    if len(symbols) == 1:
        return symbols[0]
    raise DataError(f"{where}: no symbol column; give one symbol or add a symbol column")


def _bars(path: Path, rows: Iterator[dict[str, str]], symbols: list[str]) -> list[Event]:
    out: list[Event] = []
    for n, row in enumerate(rows, start=2):
        where = f"{path}:{n}"
        o, h, low, c = (_f(row, k, where) for k in ("open", "high", "low", "close"))
        if not (0 < low <= min(o, c) and max(o, c) <= h):
            raise DataError(f"{where}: bar needs 0 < low <= open, close <= high")
        ts = parse_time(row["timestamp"])
        v = _f(row, "volume", where) if row.get("volume") else 0.0
        sym = _symbol(row, symbols, where)
        out.append(
            wire.Bar(symbol=sym, open=o, high=h, low=low, close=c, volume=v, start_ts=ts, origin_ts=ts)
        )
    return out


def _trades(path: Path, rows: Iterator[dict[str, str]], symbols: list[str]) -> list[Event]:
    out: list[Event] = []
    for n, row in enumerate(rows, start=2):
        where = f"{path}:{n}"
        p = _f(row, "price", where)
        if p <= 0:
            raise DataError(f"{where}: price must be > 0")
        ts = parse_time(row["timestamp"])
        size = _f(row, "size", where) if row.get("size") else 0.0
        out.append(
            wire.Trade(symbol=_symbol(row, symbols, where), price=p, size=size, exch_ts=ts, origin_ts=ts)
        )
    return out


def _replay(path: Path) -> list[Event]:
    try:
        ticks = read_replay(path)
    except (KeyError, ValueError, ArithmeticError) as exc:
        raise DataError(f"{path}: not a valid replay file: {exc}") from None
    out: list[Event] = []
    for t in ticks:
        ts = t.ts_ns
        if t.kind == "t" and t.price is not None:
            out.append(
                wire.Trade(
                    symbol=t.symbol, price=float(t.price), size=float(t.size or 0), exch_ts=ts, origin_ts=ts
                )
            )
        elif t.kind == "q" and t.bid is not None and t.ask is not None:
            out.append(
                wire.Quote(
                    symbol=t.symbol,
                    bid=float(t.bid),
                    bid_size=float(t.bid_size or 0),
                    ask=float(t.ask),
                    ask_size=float(t.ask_size or 0),
                    exch_ts=ts,
                    origin_ts=ts,
                )
            )
        elif t.kind == "b" and None not in (t.open, t.high, t.low, t.close):
            out.append(
                wire.Bar(
                    symbol=t.symbol,
                    open=float(t.open or 0),
                    high=float(t.high or 0),
                    low=float(t.low or 0),
                    close=float(t.close or 0),
                    volume=float(t.volume or 0),
                    start_ts=ts,
                    origin_ts=ts,
                )
            )
    return out


def write_bars_csv(path: Path, bars: list[wire.Bar]) -> None:
    """Bars in the documented bars format (what the Alpaca cache holds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(BAR_COLUMNS)
        for b in bars:
            w.writerow((b.start_ts, b.symbol, b.open, b.high, b.low, b.close, b.volume))
    tmp.replace(path)  # a crash mid-write never leaves a truncated cache entry


def source_kinds(events: list[Event]) -> set[str]:
    """The ``signals.source`` values the events can feed."""
    names = {wire.Trade: "trades", wire.Quote: "quotes", wire.Bar: "bars"}
    return {names[type(e)] for e in events}


# --- Alpaca historical bars ---------------------------------------------------------------
def _timeframe(text: str) -> Any:
    from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

    m = _TIMEFRAME_RE.match(text)
    if m is None:
        raise DataError(f"bad timeframe {text!r}: use e.g. 1Min, 5Min, 1Hour, 1Day")
    return TimeFrame(int(m.group(1)), TimeFrameUnit(m.group(2)))


def cache_path(
    cache_dir: Path, symbols: list[str], timeframe: str, start_ns: int, end_ns: int, feed: str, url: str
) -> Path:
    """One file per request; the key holds no credentials."""
    key = json.dumps([sorted(symbols), timeframe, start_ns, end_ns, feed, url])
    return cache_dir / f"bars-{hashlib.sha256(key.encode()).hexdigest()[:20]}.csv"


def load_alpaca(
    symbols: list[str],
    *,
    key: str,
    secret: str,
    timeframe: str,
    start_ns: int,
    end_ns: int,
    feed: str = "iex",
    url_override: str | None = None,
    cache_dir: Path | None = None,
) -> tuple[list[Event], bool]:
    """Historical bars through alpaca-py, cached as a bars CSV; returns (events, from_cache)."""
    tf = _timeframe(timeframe)
    cached = (
        cache_path(cache_dir, symbols, timeframe, start_ns, end_ns, feed, url_override or "")
        if cache_dir is not None
        else None
    )
    if cached is not None and cached.is_file():
        return load_csv(cached, symbols), True
    from alpaca.data.enums import DataFeed
    from alpaca.data.historical.stock import StockHistoricalDataClient
    from alpaca.data.requests import StockBarsRequest

    client = StockHistoricalDataClient(key, secret, raw_data=True, url_override=url_override)
    # alpaca-py passes no timeout to requests: a stalled server would hang the run.
    client._session.request = functools.partial(client._session.request, timeout=REQUEST_TIMEOUT_S)  # type: ignore[method-assign]
    req = StockBarsRequest(
        symbol_or_symbols=symbols,
        timeframe=tf,
        start=datetime.fromtimestamp(start_ns / 1e9, UTC),
        end=datetime.fromtimestamp(end_ns / 1e9, UTC),
        feed=DataFeed(feed),
    )
    raw = client.get_stock_bars(req)
    bars: list[wire.Bar] = []
    for sym, rows in raw.items() if isinstance(raw, dict) else []:
        for b in rows:
            ts = parse_time(str(b["t"]))
            bars.append(
                wire.Bar(
                    symbol=sym,
                    open=float(b["o"]),
                    high=float(b["h"]),
                    low=float(b["l"]),
                    close=float(b["c"]),
                    volume=float(b.get("v") or 0),
                    start_ts=ts,
                    origin_ts=ts,
                )
            )
    if not bars:
        raise DataError(f"Alpaca returned no {timeframe} bars for {','.join(symbols)} in the range")
    events: list[Event] = sort_events(bars)
    if cached is not None:
        write_bars_csv(cached, [e for e in events if isinstance(e, wire.Bar)])
    return events, False
