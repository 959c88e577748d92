"""Durable order state (SQLite, stdlib).

The order row is written as PENDING_SUBMIT *before* the HTTP submit, so after a crash the
restarted engine knows the order may exist at the broker and looks it up by its
client_order_id before it would ever resubmit. WAL with ``synchronous=FULL``: every commit
is on disk before the call returns, which is what the money path needs (an order costs one
fsync, far below a broker round trip).
"""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from tradingsystem.common.wire import OrderStatus, OrderType, Side, TimeInForce
from tradingsystem.execution.orders import TERMINAL, Fill, Order

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty REAL NOT NULL,
    order_type TEXT NOT NULL,
    time_in_force TEXT NOT NULL,
    limit_price REAL,
    origin_ts INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    broker_order_id TEXT,
    filled_qty REAL NOT NULL,
    avg_fill_price REAL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_status ON orders(status);
CREATE TABLE IF NOT EXISTS fills (
    client_order_id TEXT NOT NULL REFERENCES orders(client_order_id),
    cum_qty REAL NOT NULL,
    qty REAL NOT NULL,
    price REAL NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (client_order_id, cum_qty)
);
"""

_COLUMNS = (
    "client_order_id, symbol, side, qty, order_type, time_in_force, limit_price, origin_ts, "
    "created_ns, status, broker_order_id, filled_qty, avg_fill_price, reason"
)


def _row(o: Order) -> tuple[object, ...]:
    return (
        o.client_order_id,
        o.symbol,
        o.side.value,
        o.qty,
        o.order_type.value,
        o.time_in_force.value,
        o.limit_price,
        o.origin_ts,
        o.created_ns,
        o.status.value,
        o.broker_order_id,
        o.filled_qty,
        o.avg_fill_price,
        o.reason,
    )


def _order(r: tuple[Any, ...]) -> Order:
    return Order(
        client_order_id=r[0],
        symbol=r[1],
        side=Side(r[2]),
        qty=r[3],
        order_type=OrderType(r[4]),
        time_in_force=TimeInForce(r[5]),
        limit_price=r[6],
        origin_ts=r[7],
        created_ns=r[8],
        status=OrderStatus(r[9]),
        broker_order_id=r[10],
        filled_qty=r[11],
        avg_fill_price=r[12],
        reason=r[13],
    )


class OrderStore:
    """One connection, serialized by a lock (the engine's worker and startup both write)."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def add(self, order: Order) -> bool:
        """Insert a new order; False if its client_order_id is already known (a replayed intent)."""
        with self._lock:
            cur = self._db.execute(
                f"INSERT OR IGNORE INTO orders ({_COLUMNS}) VALUES ({','.join('?' * 14)})", _row(order)
            )
            return cur.rowcount == 1

    def save(self, order: Order, fill: Fill | None = None, ts: int = 0) -> None:
        """Persist the order's state and, in the same transaction, the fill that produced it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "UPDATE orders SET status=?, broker_order_id=?, filled_qty=?, avg_fill_price=?, reason=? "
                    "WHERE client_order_id=?",
                    (
                        order.status.value,
                        order.broker_order_id,
                        order.filled_qty,
                        order.avg_fill_price,
                        order.reason,
                        order.client_order_id,
                    ),
                )
                if fill is not None:
                    self._db.execute(
                        "INSERT OR IGNORE INTO fills VALUES (?,?,?,?,?)",
                        (order.client_order_id, order.filled_qty, fill.qty, fill.price, ts),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def get(self, client_order_id: str) -> Order | None:
        with self._lock:
            r = self._db.execute(
                f"SELECT {_COLUMNS} FROM orders WHERE client_order_id=?", (client_order_id,)
            ).fetchone()
        return _order(r) if r else None

    def open_orders(self) -> list[Order]:
        """Orders not in a terminal state, oldest first."""
        terminal = tuple(s.value for s in TERMINAL)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM orders WHERE status NOT IN (?,?,?,?) ORDER BY created_ns",
                terminal,
            ).fetchall()
        return [_order(r) for r in rows]

    def positions(self) -> dict[str, float]:
        """Signed filled quantity per symbol over every order this engine placed."""
        with self._lock:
            rows = self._db.execute("SELECT symbol, side, filled_qty FROM orders").fetchall()
        out: dict[str, float] = defaultdict(float)
        for symbol, side, filled in rows:
            out[symbol] += filled if side == Side.BUY.value else -filled
        return {s: q for s, q in out.items() if q}

    def fill_count(self, client_order_id: str) -> int:
        with self._lock:
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM fills WHERE client_order_id=?", (client_order_id,)
            ).fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._db.close()
