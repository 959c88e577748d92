"""Parameter sweeps: a grid over strategy parameters, each point a full backtest, run on
several cores (``ProcessPoolExecutor``), one table ranked by a chosen metric.

The events are sent to each worker process once (pool initializer), not once per point.
A grid point the strategy refuses (e.g. ``fast >= slow``) is listed with the reason and
not run.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from typing import Any

from tradingsystem.backtest.core import BacktestInputs, Event
from tradingsystem.backtest.metrics import Metric, Summary
from tradingsystem.backtest.runner import build_signal_engine, run_backtest
from tradingsystem.common.config import ConfigError


@dataclass(frozen=True, slots=True)
class SweepRow:
    params: dict[str, Any]
    summary: Summary | None
    error: str = ""


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["fast=5,10", "slow=30:60:10"]`` -> ``{"fast": [5, 10], "slow": [30, 40, 50, 60]}``.

    Values are numbers where they parse as numbers; ``a:b:step`` is an inclusive range.
    """
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise ValueError(f"bad --grid {spec!r}: use NAME=V1,V2,... or NAME=START:STOP:STEP")
        if values.count(":") == 2:
            a, b, step = (parse_value(v) for v in values.split(":"))
            if not all(isinstance(x, int | float) for x in (a, b, step)) or step <= 0:
                raise ValueError(f"bad --grid {spec!r}: START:STOP:STEP must be numbers, STEP > 0")
            n = math.floor((b - a) / step + 1e-9) + 1
            grid[name.strip()] = [a + i * step for i in range(max(n, 0))]
        else:
            grid[name.strip()] = [parse_value(v) for v in values.split(",") if v.strip()]
    return grid


def parse_value(text: str) -> Any:
    text = text.strip()
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


_EVENTS: Sequence[Event] = ()


def _init(events: Sequence[Event]) -> None:
    global _EVENTS
    _EVENTS = events


def _run_point(inputs: BacktestInputs, params: dict[str, Any]) -> SweepRow:
    s = inputs.settings
    signals = s.signals.model_copy(update={"params": {**s.signals.params, **params}})
    settings = s.model_copy(update={"signals": signals})
    try:
        engine = build_signal_engine(settings)
    except ConfigError as exc:
        return SweepRow(params, None, str(exc))
    _, summary = run_backtest(_EVENTS, replace(inputs, settings=settings), engine)
    return SweepRow(params, summary)


def run_sweep(
    events: Sequence[Event],
    inputs: BacktestInputs,
    grid: dict[str, list[Any]],
    metric: Metric,
    *,
    workers: int | None = None,
    on_done: Callable[[int, int], None] | None = None,
) -> list[SweepRow]:
    """Every grid point; valid rows best first by ``metric``, refused points last."""
    todo = points(grid)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    rows: list[SweepRow] = []
    with ProcessPoolExecutor(max_workers=workers, initializer=_init, initargs=(events,)) as pool:
        futures = [pool.submit(_run_point, inputs, p) for p in todo]
        for n, fut in enumerate(as_completed(futures), start=1):
            rows.append(fut.result())
            if on_done is not None:
                on_done(n, len(todo))
    return rank(rows, metric)


def rank(rows: list[SweepRow], metric: Metric) -> list[SweepRow]:
    ok = sorted(
        (r for r in rows if r.summary is not None),
        key=lambda r: r.summary.rank_value(metric) if r.summary is not None else -math.inf,
        reverse=True,
    )
    return ok + [r for r in rows if r.summary is None]


TABLE_COLUMNS = (
    Metric.TOTAL_RETURN,
    Metric.ANNUAL_RETURN,
    Metric.SHARPE,
    Metric.SORTINO,
    Metric.MAX_DRAWDOWN,
    Metric.TRADES,
    Metric.WIN_RATE,
    Metric.PROFIT_FACTOR,
)


def table(rows: list[SweepRow], metric: Metric) -> str:
    """The ranked table as aligned text (also what the CSV holds)."""
    names = sorted({k for r in rows for k in r.params})
    header = ["rank", *names, *(m.value for m in TABLE_COLUMNS)]
    body: list[list[str]] = []
    for i, r in enumerate(rows, start=1):
        params = [str(r.params.get(n, "")) for n in names]
        if r.summary is None:
            body.append(["-", *params, f"refused: {r.error.splitlines()[-1].strip()}"])
            continue
        values = [getattr(r.summary, m.value) for m in TABLE_COLUMNS]
        body.append([str(i), *params, *(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values)])
    widths = [max(len(row[i]) for row in [header, *body] if i < len(row)) for i in range(len(header))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    for row in body:
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=False)))
    return f"ranked by {metric.value}\n" + "\n".join(lines)


def write_csv(path: Any, rows: list[SweepRow]) -> None:
    import csv

    names = sorted({k for r in rows for k in r.params})
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", *names, *(m.value for m in Metric), "error"])
        for i, r in enumerate(rows, start=1):
            vals = [getattr(r.summary, m.value) for m in Metric] if r.summary else [""] * len(Metric)
            w.writerow([i if r.summary else "", *(r.params.get(n, "") for n in names), *vals, r.error])
