"""Checks for the fault and soak tests: do the three books agree, and did the broker ever see
a duplicate order, a stale order or a limit exceeded?

Everything is read over the real interfaces of a running ``supervisor.Pipeline``: the risk
manager's ``GET /state`` (on its control port, with the pipeline's token), the simulator's
``GET /_sim/ledger`` and the execution-engine's SQLite store opened read-only (the engine keeps
running).
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradingsystem.supervisor import Pipeline, get_json


def ledger(p: Pipeline) -> dict[str, Any]:
    status, snap = get_json(p.url("sim", "/_sim/ledger"), timeout=5)
    assert status == 200, f"GET /_sim/ledger answered {status}"
    return dict(snap)


def risk_state(p: Pipeline) -> dict[str, Any] | None:
    """``GET /state`` on the control port with the pipeline's token; None while unreachable."""
    assert p.control is not None, "start the pipeline first (it sets up the control port)"
    status, state = p.control.state()
    return dict(state) if status == 200 else None


def broker_positions(snap: dict[str, Any]) -> dict[str, float]:
    return {s: float(pos["qty"]) for s, pos in snap["positions"].items() if float(pos["qty"])}


def risk_positions(state: dict[str, Any]) -> dict[str, float]:
    return {s: float(pos["qty"]) for s, pos in state["positions"].items() if float(pos["qty"])}


def store_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
        return con.execute(
            "SELECT client_order_id, symbol, side, filled_qty, status, approved_ts, created_ns FROM orders"
        ).fetchall()


def store_positions(db: Path) -> dict[str, float]:
    """Signed filled quantity per symbol, summed in decimals like the broker's ledger."""
    out: dict[str, Decimal] = defaultdict(Decimal)
    for _cid, symbol, side, filled, *_ in store_rows(db):
        q = Decimal(repr(filled))
        out[symbol] += q if side == "buy" else -q
    return {s: float(q) for s, q in out.items() if q}


def _ns(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1e9)


@dataclass(frozen=True)
class Audit:
    """What the broker's ledger says about the whole run."""

    orders: int
    fills: int
    duplicate_cids: list[str]
    stale_sent: list[str]  # reached the broker later than the age limit after approval
    max_abs_position: dict[str, Decimal]  # largest |position| the ledger ever held, per symbol
    max_order_qty: Decimal


def audit(p: Pipeline, db: Path, max_age_s: float, transit_s: float) -> Audit:
    """``transit_s``: the request timeout. The engine starts no POST past the age limit; the
    broker may record it up to one request later (a slow broker answers late)."""
    snap = ledger(p)
    cids = Counter(o["client_order_id"] for o in snap["orders"])
    approved = {row[0]: row[5] or row[6] for row in store_rows(db)}
    stale = [
        o["client_order_id"]
        for o in snap["orders"]
        if o["client_order_id"] in approved
        and _ns(o["submitted_at"]) - approved[o["client_order_id"]] > (max_age_s + transit_s) * 1e9
    ]
    position: dict[str, Decimal] = defaultdict(Decimal)
    peak: dict[str, Decimal] = defaultdict(Decimal)
    for fill in snap["fills"]:
        q = Decimal(fill["qty"])
        position[fill["symbol"]] += q if fill["side"] == "buy" else -q
        peak[fill["symbol"]] = max(peak[fill["symbol"]], abs(position[fill["symbol"]]))
    return Audit(
        orders=len(snap["orders"]),
        fills=len(snap["fills"]),
        duplicate_cids=[c for c, n in cids.items() if n > 1],
        stale_sent=stale,
        max_abs_position=dict(peak),
        max_order_qty=max((Decimal(o["qty"]) for o in snap["orders"]), default=Decimal(0)),
    )


def books_agree(p: Pipeline, db: Path) -> tuple[dict[str, float], dict[str, float], dict[str, float]] | None:
    """(risk, broker, store) positions once the risk manager has no open order and all three
    are equal; None while they are not (yet)."""
    state = risk_state(p)
    if state is None or state["open_orders"]:
        return None
    books = (risk_positions(state), broker_positions(ledger(p)), store_positions(db))
    return books if books[0] == books[1] == books[2] else None


def control(p: Pipeline, action: str, reason: str) -> dict[str, Any]:
    """``POST /control`` on the risk manager's control port, with the pipeline's token."""
    assert p.control is not None, "start the pipeline first (it sets up the control port)"
    status, body = p.control.control(action, reason)
    assert status == 200, f"POST /control {action} answered {status}: {body}"
    return dict(body)


def settle_and_check(
    p: Pipeline, db: Path, *, max_age_s: float, max_position: float, timeout: float = 120
) -> Audit:
    """Halt, let every order end, then the three books must agree and the ledger be clean:
    no duplicate client_order_id, nothing sent past the age limit, no position over its limit.
    Trading resumes afterwards."""
    control(p, "halt", "settle")
    deadline = time.monotonic() + timeout
    books = None
    while books is None and time.monotonic() < deadline:
        books = books_agree(p, db)
        if books is None:
            time.sleep(0.3)
    state = risk_state(p) or {}
    assert books is not None, (
        f"books never agreed: risk={risk_positions(state) if state else None} open={state.get('open_order_ids')} "
        f"broker={broker_positions(ledger(p))} store={store_positions(db)}"
    )
    report = audit(p, db, max_age_s, p.settings.execution.request_timeout_s)
    print(f"\nbooks agree: {books[1]}; {report.orders} orders, {report.fills} fills at the broker")
    assert report.duplicate_cids == []
    assert report.stale_sent == []
    assert all(q <= Decimal(str(max_position)) for q in report.max_abs_position.values()), (
        report.max_abs_position
    )
    control(p, "resume", "settled")
    return report


__all__ = [
    "Audit",
    "audit",
    "books_agree",
    "broker_positions",
    "control",
    "ledger",
    "risk_state",
    "settle_and_check",
    "store_positions",
]
