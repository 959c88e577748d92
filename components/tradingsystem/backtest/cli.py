"""``tradingsystem backtest``: the I/O shell around the core (arguments, data, progress, files)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tradingsystem.common.config import ConfigError, Settings

HELP = "run a strategy over history with the live signal and risk code; write a report"
DESCRIPTION = """\
Run the configured strategy (signals.*) and risk rules (risk.*) over historical data with the
same code the live services run, the simulator's fill rule and a simulated clock. Writes
report.html (self-contained), summary.json, trades.csv, orders.csv and PNG charts to --out.
With --grid, runs a parameter sweep on several cores and prints one ranked table."""
EPILOG = """\
data: --data FILE.csv (bars: timestamp,symbol,open,high,low,close[,volume]; trades:
timestamp,symbol,price[,size]; or the simulator's replay format), or --alpaca with
ALPACA_API_KEY/ALPACA_SECRET_KEY for Alpaca's historical bars (cached in --cache-dir).

examples:
  tradingsystem backtest --data spy.csv --symbols SPY --strategy ma_crossover --param fast=10 --param slow=50
  tradingsystem backtest --alpaca --symbols AAPL,MSFT --timeframe 1Day --start 2022-01-01 --end 2024-12-31
  tradingsystem backtest --data spy.csv --symbols SPY --grid fast=5,10,20 --grid slow=30:90:20 --rank-by sharpe
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "backtest",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="YAML configuration file (default: $TS_CONFIG)")
    p.add_argument("--symbols", metavar="SYM,SYM", help="symbols to trade (default: from the config)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="CSV", type=Path, help="historical trades, bars or a replay file")
    src.add_argument("--alpaca", action="store_true", help="Alpaca historical bars (needs keys)")
    p.add_argument("--start", metavar="DATE", help="first day or time (YYYY-MM-DD or RFC 3339)")
    p.add_argument("--end", metavar="DATE", help="last day (inclusive) or time")
    p.add_argument("--timeframe", default="1Day", help="Alpaca bar length: 1Min, 5Min, 1Hour, 1Day (default)")
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "tradingsystem" / "bars")
    p.add_argument(
        "--source",
        choices=["trades", "quotes", "bars"],
        help="what the strategy reads (default: signals.source, or the only kind in the data)",
    )
    p.add_argument("--strategy", help="override signals.strategy")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="strategy parameter")
    p.add_argument("--cash", default="100000", help="initial cash (default 100000)")
    p.add_argument("--slippage-bps", default="0", help="market-order slippage, basis points (default 0)")
    p.add_argument("--commission-per-share", default="0", help="commission per share, $ (default 0)")
    p.add_argument("--commission-bps", default="0", help="commission, basis points of notional (default 0)")
    p.add_argument("--commission-min", default="0", help="minimum commission per fill, $ (default 0)")
    p.add_argument(
        "--order-type",
        choices=["market", "limit"],
        default="market",
        help="market (as live) or limit at the reference price +/- --limit-offset-bps",
    )
    p.add_argument("--limit-offset-bps", default="0", help="limit distance from the reference price")
    p.add_argument("--out", type=Path, default=Path("backtest-report"), help="report directory")
    p.add_argument("--title", default="", help="report title")
    p.add_argument(
        "--grid", action="append", default=[], metavar="NAME=V1,V2|A:B:STEP", help="sweep a parameter"
    )
    p.add_argument("--rank-by", default="sharpe", help="sweep ranking metric (default sharpe)")
    p.add_argument("--workers", type=int, default=0, help="sweep processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def _dec(name: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ConfigError(f"--{name}: not a number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ConfigError(f"--{name}: must be a finite number >= 0, got {text!r}")
    return value


def _params(items: list[str]) -> dict[str, Any]:
    from tradingsystem.backtest.sweep import parse_value

    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param {item!r}: use NAME=VALUE")
        out[name.strip()] = parse_value(value)
    return out


class _Progress:
    """One self-overwriting stderr line: events done, rate, elapsed."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.t0 = total, enabled and total > 0, time.monotonic()

    def __call__(self, done: int) -> None:
        if self.enabled:
            dt = max(time.monotonic() - self.t0, 1e-9)
            print(
                f"\rbacktest: {done:,}/{self.total:,} events ({100 * done / self.total:.0f}%) "
                f"{done / dt:,.0f}/s {dt:.0f}s",
                end="",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.enabled:
            self(self.total)
            print(file=sys.stderr)


def main(args: argparse.Namespace, settings_loader: Any) -> int:
    from tradingsystem.backtest import data as data_mod
    from tradingsystem.backtest.core import BacktestInputs, Costs, OrderStyle
    from tradingsystem.backtest.metrics import Metric
    from tradingsystem.backtest.report import CHARTS_HINT, write_report
    from tradingsystem.backtest.runner import build_signal_engine, run_backtest
    from tradingsystem.backtest.sweep import parse_grid, run_sweep, table, write_csv

    loaded = settings_loader(args)
    # load_settings returns an instance of a local subclass (it carries the YAML path), which
    # cannot be pickled to the sweep's worker processes: keep the validated values only.
    settings = Settings.model_construct(**dict(loaded))
    try:
        metric = Metric(args.rank_by)
    except ValueError:
        raise ConfigError(
            f"--rank-by: unknown metric {args.rank_by!r}; one of {[m.value for m in Metric]}"
        ) from None
    signals_update: dict[str, Any] = {}
    if args.strategy:
        signals_update["strategy"] = args.strategy
        signals_update["params"] = {}
    if args.param:
        signals_update["params"] = {
            **signals_update.get("params", settings.signals.params),
            **_params(args.param),
        }
    try:
        start = data_mod.parse_time(args.start) if args.start else None
        end = data_mod.parse_time(args.end, end_of_day=True) if args.end else None
        if args.alpaca:
            a = settings.alpaca
            key = a.api_key.get_secret_value() if a.api_key else os.environ.get("ALPACA_API_KEY", "")
            secret = (
                a.secret_key.get_secret_value() if a.secret_key else os.environ.get("ALPACA_SECRET_KEY", "")
            )
            if not key or not secret:
                raise ConfigError("--alpaca needs ALPACA_API_KEY and ALPACA_SECRET_KEY in the environment")
            if start is None:
                raise ConfigError("--alpaca needs --start")
            events, cached = data_mod.load_alpaca(
                settings.symbols,
                key=key,
                secret=secret,
                timeframe=args.timeframe,
                start_ns=start,
                end_ns=end if end is not None else time.time_ns(),
                feed=a.feed,
                url_override=a.data_url or None,
                cache_dir=args.cache_dir,
            )
            print(
                f"backtest: {len(events):,} bars from Alpaca{' (cache)' if cached else ''}", file=sys.stderr
            )
        else:
            events = data_mod.load_csv(args.data, settings.symbols, start, end)
            print(f"backtest: {len(events):,} events from {args.data}", file=sys.stderr)
    except data_mod.DataError as exc:
        raise ConfigError(str(exc)) from None
    kinds = data_mod.source_kinds(events)
    source = args.source or (
        settings.signals.source if settings.signals.source in kinds or len(kinds) != 1 else next(iter(kinds))
    )
    if source not in kinds:
        raise ConfigError(f"signals.source={source}, but the data holds only {sorted(kinds)}: pass --source")
    signals_update["source"] = source
    settings = settings.model_copy(update={"signals": settings.signals.model_copy(update=signals_update)})
    inputs = BacktestInputs(
        settings=settings,
        initial_cash=_dec("cash", args.cash),
        costs=Costs(
            slippage_bps=_dec("slippage-bps", args.slippage_bps),
            commission_per_share=_dec("commission-per-share", args.commission_per_share),
            commission_bps=_dec("commission-bps", args.commission_bps),
            commission_min=_dec("commission-min", args.commission_min),
        ),
        order_style=OrderStyle(args.order_type),
        limit_offset_bps=_dec("limit-offset-bps", args.limit_offset_bps),
    )
    if inputs.initial_cash <= 0:
        raise ConfigError("--cash: must be > 0")
    if args.grid:
        try:
            grid = parse_grid(args.grid)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

        def done(n: int, total: int) -> None:
            if not args.quiet:
                print(f"\rsweep: {n}/{total} points", end="", file=sys.stderr, flush=True)

        rows = run_sweep(events, inputs, grid, metric, workers=args.workers or None, on_done=done)
        if not args.quiet:
            print(file=sys.stderr)
        print(table(rows, metric))
        args.out.mkdir(parents=True, exist_ok=True)
        write_csv(args.out / "sweep.csv", rows)
        print(f"wrote {args.out / 'sweep.csv'}")
        return 0
    engine = build_signal_engine(settings)
    progress = _Progress(len(events), not args.quiet and len(events) >= 100_000)
    result, summary = run_backtest(events, inputs, engine, progress=progress)
    progress.close()
    title = args.title or f"Backtest: {settings.signals.strategy} {settings.signals.params or ''}".strip()
    files = write_report(result, summary, args.out, title)
    print(
        f"final equity {summary.final_equity:,.2f}  return {summary.total_return_pct:.2f}%  "
        f"sharpe {summary.sharpe:.2f}  max drawdown {summary.max_drawdown_pct:.2f}%  "
        f"trades {summary.trades}  rejections {summary.rejections}"
    )
    if not files.charts:
        print(f"note: {CHARTS_HINT}", file=sys.stderr)
    print(f"wrote {files.html}")
    return 0
