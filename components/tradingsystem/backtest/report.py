"""Writing a backtest's report: summary JSON, trade and order CSVs, PNG charts, one HTML page.

The HTML page is self-contained (charts embedded as base64 PNG, inline CSS), so it can be
mailed or archived as one file. Charts need matplotlib (``pip install 'tradingsystem[backtest]'``);
without it the tables and CSVs are still written and the page says how to get the charts.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tradingsystem.backtest.core import BacktestResult
from tradingsystem.backtest.metrics import Summary, drawdown

MAX_PLOT_POINTS = 4000  # charts are downsampled to about this many points per line
MAX_HTML_TRADES = 500
CHARTS_HINT = "charts need matplotlib: pip install 'tradingsystem[backtest]'"


@dataclass(frozen=True, slots=True)
class ReportFiles:
    directory: Path
    html: Path
    summary: Path
    trades: Path
    orders: Path
    charts: list[Path]


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def _iso(ns: int | None) -> str:
    return "" if ns is None else _dt(ns).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stride(n: int) -> int:
    return max(1, math.ceil(n / MAX_PLOT_POINTS))


def write_trades_csv(path: Path, r: BacktestResult) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            (
                "symbol",
                "direction",
                "entry_time",
                "exit_time",
                "qty",
                "entry_price",
                "exit_price",
                "pnl",
                "commission",
                "return_pct",
                "events_held",
            )
        )
        for t in r.trades:
            w.writerow(
                (
                    t.symbol,
                    "long" if t.direction > 0 else "short",
                    _iso(t.entry_ns),
                    _iso(t.exit_ns),
                    t.entry_qty,
                    f"{t.entry_price:.4f}",
                    f"{t.exit_price:.4f}" if t.closed else "",
                    f"{t.pnl:.2f}",
                    f"{t.commission:.2f}",
                    f"{t.return_pct:.4f}",
                    (t.exit_index - t.entry_index) if t.exit_index is not None else "",
                )
            )


def write_orders_csv(path: Path, r: BacktestResult) -> None:
    """Every risk decision: approved orders and rejections with their reason."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("time", "symbol", "side", "qty", "decision", "reason", "client_order_id"))
        for d in r.decisions:
            w.writerow(
                (_iso(d.ts_ns), d.symbol, d.side.value, d.qty, d.decision.value, d.reason, d.client_order_id)
            )


# --- charts ----------------------------------------------------------------------------
def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def equity_chart(r: BacktestResult) -> bytes:
    from matplotlib.figure import Figure

    k = _stride(len(r.equity))
    xs = [_dt(t) for t in r.equity_ns[::k]]
    eq = r.equity[::k]
    dd = [100 * d for d in drawdown(r.equity)[::k]]
    fig = Figure(figsize=(11, 5.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot(xs, eq, color="#1f77b4", linewidth=1.2, label="equity")
    top.axhline(float(r.initial_cash), color="#888", linewidth=0.8, linestyle="--", label="initial cash")
    top.set_ylabel("equity ($)")
    top.set_title("Equity curve")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.fill_between(xs, dd, 0, color="#d62728", alpha=0.35, linewidth=0)
    bottom.plot(xs, dd, color="#d62728", linewidth=0.8)
    bottom.set_ylabel("drawdown (%)")
    bottom.grid(alpha=0.3)
    return _png(fig)


def price_chart(r: BacktestResult, symbol: str) -> bytes:
    from matplotlib.figure import Figure

    ns, px = r.prices[symbol]
    k = _stride(len(px))
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax: Any = fig.subplots()  # matplotlib types plot() x values as arrays, not datetimes
    ax.plot([_dt(t) for t in ns[::k]], px[::k], color="#444", linewidth=1.0, label=symbol)
    for side, marker, color in (("buy", "^", "#2ca02c"), ("sell", "v", "#d62728")):
        fills = [f for f in r.fills if f.symbol == symbol and f.side.value == side]
        if fills:
            ax.scatter(
                [_dt(f.ts_ns) for f in fills],
                [float(f.price) for f in fills],
                marker=marker,
                color=color,
                s=40,
                zorder=3,
                label=f"{side} ({len(fills)})",
            )
    ax.set_title(f"{symbol}: price with entries and exits")
    ax.set_ylabel("price ($)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


# --- HTML ------------------------------------------------------------------------------
def _fmt(v: object) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf"
        return f"{v:,.2f}"
    return html.escape(str(v))


SUMMARY_ROWS = (
    ("Initial cash ($)", "initial_cash"),
    ("Final equity ($)", "final_equity"),
    ("Total return (%)", "total_return_pct"),
    ("Annualised return (%)", "annual_return_pct"),
    ("Buy and hold (%)", "buy_hold_return_pct"),
    ("Sharpe", "sharpe"),
    ("Sortino", "sortino"),
    ("Max drawdown (%)", "max_drawdown_pct"),
    ("Longest drawdown (days)", "max_drawdown_days"),
    ("Trades (closed)", "trades"),
    ("Win rate (%)", "win_rate_pct"),
    ("Profit factor", "profit_factor"),
    ("Average trade (%)", "avg_trade_pct"),
    ("Exposure (%)", "exposure_pct"),
    ("Orders approved", "orders"),
    ("Risk rejections", "rejections"),
    ("Broker rejections", "broker_rejections"),
    ("Commission ($)", "commission"),
    ("Signals", "signals"),
    ("Events", "events"),
    ("Final risk state", "final_risk_state"),
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1180px}
h1{font-size:22px;margin-bottom:4px} .sub{color:#666;margin-top:0}
.grid{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
table{border-collapse:collapse;font-size:13px} td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
th{background:#f6f6f6} td:first-child,th:first-child{text-align:left}
img.chart{max-width:100%;border:1px solid #ddd;margin:8px 0}
.pos{color:#2ca02c} .neg{color:#d62728}
"""

# Sets data-charts-loaded on <body> to the number of charts the browser decoded, so a
# headless browser's DOM dump shows that the pictures really render.
_SCRIPT = """
window.addEventListener('load',function(){var n=0;document.querySelectorAll('img.chart').forEach(
function(i){if(i.complete&&i.naturalWidth>0){n++;}});document.body.setAttribute('data-charts-loaded',n);});
"""


def render_html(r: BacktestResult, s: Summary, charts: dict[str, bytes], title: str) -> str:
    rows = "".join(
        f"<tr><td>{label}</td><td>{_fmt(getattr(s, key))}</td></tr>" for label, key in SUMMARY_ROWS
    )
    rej = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in s.rejections_by_reason.items()
    )
    rej_table = (
        f"<table><tr><th>Rejection reason</th><th>Count</th></tr>{rej}</table>"
        if rej
        else "<p>No risk rejections.</p>"
    )
    imgs = "".join(
        f'<h2>{html.escape(name)}</h2><img class="chart" alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        for name, png in charts.items()
    )
    if not charts:
        imgs = f"<p>{CHARTS_HINT}</p>"
    trade_rows = []
    for t in r.trades[:MAX_HTML_TRADES]:
        cls = "pos" if t.pnl > 0 else "neg" if t.pnl < 0 else ""
        trade_rows.append(
            f"<tr><td>{html.escape(t.symbol)}</td><td>{'long' if t.direction > 0 else 'short'}</td>"
            f"<td>{_iso(t.entry_ns)}</td><td>{_iso(t.exit_ns) or 'open'}</td><td>{t.entry_qty}</td>"
            f"<td>{t.entry_price:.2f}</td><td>{f'{t.exit_price:.2f}' if t.closed else ''}</td>"
            f'<td class="{cls}">{t.pnl:,.2f}</td><td>{t.return_pct:.2f}</td></tr>'
        )
    more = (
        f"<p>First {MAX_HTML_TRADES} of {len(r.trades)} trades; all are in trades.csv.</p>"
        if len(r.trades) > MAX_HTML_TRADES
        else ""
    )
    period = f"{_iso(s.start)} to {_iso(s.end)}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style><script>{_SCRIPT}</script></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="sub">{html.escape(", ".join(r.symbols))} &middot; {period}</p>
<div class="grid">
<table><tr><th>Summary</th><th></th></tr>{rows}</table>
{rej_table}
</div>
{imgs}
<h2>Trades</h2>{more}
<table><tr><th>Symbol</th><th>Side</th><th>Entry</th><th>Exit</th><th>Qty</th><th>Entry price</th>
<th>Exit price</th><th>P&amp;L ($)</th><th>Return (%)</th></tr>{"".join(trade_rows)}</table>
</body></html>
"""


def write_report(r: BacktestResult, s: Summary, out_dir: Path, title: str = "Backtest") -> ReportFiles:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        directory=out_dir,
        html=out_dir / "report.html",
        summary=out_dir / "summary.json",
        trades=out_dir / "trades.csv",
        orders=out_dir / "orders.csv",
        charts=[],
    )
    files.summary.write_text(json.dumps(s.as_dict(), indent=2, default=str) + "\n")
    write_trades_csv(files.trades, r)
    write_orders_csv(files.orders, r)
    charts: dict[str, bytes] = {}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        charts["Equity and drawdown"] = equity_chart(r)
        for sym in r.symbols:
            if r.prices.get(sym, ([], []))[0]:
                charts[f"{sym}: price, entries and exits"] = price_chart(r, sym)
        for name, png in charts.items():
            stem = "equity" if name.startswith("Equity") else "price_" + name.split(":")[0]
            path = out_dir / f"{stem}.png"
            path.write_bytes(png)
            files.charts.append(path)
    files.html.write_text(render_html(r, s, charts, title))
    return files
