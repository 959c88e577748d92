"""Durable order state and the report outbox (SQLite, stdlib).

The order row is written as PENDING_SUBMIT *before* the HTTP submit, so after a crash the
restarted engine knows the order may exist at the broker and looks it up by its
client_order_id before it would ever resubmit. WAL mode; the intents that arrive together
are inserted in one transaction (``add_many``: one fsync for the batch).

The outbox: every order/fill state change writes its ``ExecutionReport`` in the same
transaction, under ``report_seq``. Reports are published from here, and served again to a
risk manager that asks for "every report after N" (a resync), so none is lost to a crash, a
restart or a subscriber that was not connected yet.

What is fsynced (``needs_fsync``): every commit whose loss after a machine crash could not
be recovered from the broker: new orders, and every report of an order the broker does not
hold (local rejections, refusals); such a report is published only once it is on disk. A
report of an order the broker holds (acknowledged, filled, cancelled) is published first
(``save(publish=...)``, before its transaction) and then committed with
``synchronous=NORMAL``: in the page cache, written to disk by the next fsynced commit or
checkpoint (≤ 1 s). If the process dies between the two, or a machine crash loses the
commit, the order is back to its last committed state (at worst PENDING_SUBMIT, with its
broker id unknown) and the start-up reconciliation looks it up and reports the broker's
state and cumulative fills again: the broker, not this row, is what remembers it.

Such a lost report may already have been published, so its ``report_seq`` must never be
used again: each open of the store starts a **generation** (a row fsynced before anything
else), and the generation's sequence starts at ``generation << 32``. Within a generation
the sequence has no gaps (unless a commit failed after its report left); every report also
carries ``prev_seq``, the row before it, so the risk manager can tell a restart (the chain
continues), a gap (it asks again) and a lost tail (the chain resumes below what it holds:
``risk/resync.py``).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from tradingsystem.common.sqlite import Checkpointer, Transactions, connect
from tradingsystem.common.wire import ExecutionReport, OrderStatus, OrderType, Side, TimeInForce
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
    reason TEXT NOT NULL,
    approved_ts INTEGER NOT NULL DEFAULT 0
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
CREATE TABLE IF NOT EXISTS outbox (
    report_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_order_id TEXT NOT NULL,
    report BLOB NOT NULL,
    ts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS generations (
    generation INTEGER PRIMARY KEY AUTOINCREMENT,
    opened_ns INTEGER NOT NULL
);
"""

GENERATION_SHIFT = 32  # 4 billion reports per engine start

_COLUMNS = (
    "client_order_id, symbol, side, qty, order_type, time_in_force, limit_price, origin_ts, "
    "created_ns, status, broker_order_id, filled_qty, avg_fill_price, reason, approved_ts"
)
_N_COLUMNS = _COLUMNS.count(",") + 1
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(ExecutionReport).decode


def needs_fsync(order: Order) -> bool:
    """Whether a report of ``order`` must be on disk before it is published: unless the
    broker holds the order (it has its id and did not refuse it), nothing but this commit
    would remember the state change after a machine crash. No I/O."""
    return order.broker_order_id is None or order.status is OrderStatus.REJECTED


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
        o.approved_ts,
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
        approved_ts=r[14],
    )


class OrderStore:
    """One connection, serialized by a lock (the engine's worker and bus thread both write).

    The lock is reentrant and ``lock`` is public: ``save`` publishes a report from inside its
    transaction, so a publisher that also reads the outbox takes this lock first, then its own.
    """

    def __init__(self, path: Path | str) -> None:
        self._db = connect(path, _SCHEMA, synchronous="FULL")
        self._tx = Transactions(self._db, "FULL")
        self._checkpointer = Checkpointer(path)
        self._lock = self.lock = threading.RLock()
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(orders)")}
        if "approved_ts" not in columns:  # a store written before the column existed
            self._db.execute("ALTER TABLE orders ADD COLUMN approved_ts INTEGER NOT NULL DEFAULT 0")
        # Fsynced (FULL) before any report of this generation can be written or published.
        cur = self._db.execute("INSERT INTO generations (opened_ns) VALUES (?)", (time.time_ns(),))
        self.generation = int(cur.lastrowid or 0)
        (last,) = self._db.execute("SELECT COALESCE(MAX(report_seq), 0) FROM outbox").fetchone()
        self._last_seq = int(last)
        self._next_seq = max(self._last_seq + 1, self.generation << GENERATION_SHIFT)

    def add(self, order: Order) -> bool:
        """Insert a new order; False if its client_order_id is already known (a replayed intent)."""
        return bool(self.add_many([order]))

    def add_many(self, orders: list[Order]) -> list[Order]:
        """Insert new orders in one transaction, so one fsync covers them all (group commit);
        returns those that were new (a known client_order_id is a replayed intent)."""
        sql = f"INSERT OR IGNORE INTO orders ({_COLUMNS}) VALUES ({','.join('?' * _N_COLUMNS)})"
        new = []
        with self._lock:
            self._tx.begin(fsync=True)
            try:
                for order in orders:
                    if self._db.execute(sql, _row(order)).rowcount == 1:
                        new.append(order)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return new

    def save(
        self,
        order: Order,
        fill: Fill | None = None,
        ts: int = 0,
        publish: Callable[[ExecutionReport], object] | None = None,
    ) -> ExecutionReport:
        """Persist the order's state, the fill that produced it and its report (the outbox),
        in one transaction (fsynced if ``needs_fsync``); returns the report with its
        ``report_seq`` and ``prev_seq``.

        ``publish``, when given, is called with a report that needs no fsync first, before
        the transaction, under this store's lock (so the outbox is published in order), and
        must not raise. A number that left this way is never given to another report, even
        if the commit then fails: the chain (``prev_seq``) resumes below it."""
        report = order.report(fill)
        fsync = needs_fsync(order)
        with self._lock:
            report.report_seq, report.prev_seq = self._next_seq, self._last_seq
            if publish is not None and not fsync:
                self._next_seq += 1  # the number leaves now
                publish(report)
            self._tx.begin(fsync=fsync)
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
                self._db.execute(
                    "INSERT INTO outbox (report_seq, client_order_id, report, ts) VALUES (?,?,?,?)",
                    (report.report_seq, order.client_order_id, _encode(report), ts),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._last_seq = report.report_seq
            self._next_seq = report.report_seq + 1
        return report

    def head(self) -> int:
        """The last report_seq written (0 for an empty outbox)."""
        with self._lock:
            (n,) = self._db.execute("SELECT COALESCE(MAX(report_seq), 0) FROM outbox").fetchone()
        return int(n)

    def reports_since(self, since: int, limit: int = 500) -> list[ExecutionReport]:
        """Reports with ``report_seq > since``, in order, at most ``limit``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT report_seq, report FROM outbox WHERE report_seq > ? ORDER BY report_seq LIMIT ?",
                (since, limit),
            ).fetchall()
        out = []
        for seq, blob in rows:
            report = _decode(blob)
            report.report_seq = seq
            out.append(report)
        return out

    def known(self, cids: list[str]) -> set[str]:
        """The subset of ``cids`` this store holds an order for."""
        found: set[str] = set()
        with self._lock:
            for i in range(0, len(cids), 500):  # SQLite's bound-parameter limit
                chunk = cids[i : i + 500]
                rows = self._db.execute(
                    f"SELECT client_order_id FROM orders WHERE client_order_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                found.update(r[0] for r in rows)
        return found

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
        self._checkpointer.close()
        with self._lock:
            self._db.close()
