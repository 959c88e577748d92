"""The risk manager's durable safety state (SQLite, stdlib).

One row holds ``RiskEngine.export()`` (msgpack, decimals exact: latches, day baseline, book)
and the last execution report applied (``last_seq``); the open orders are one row each,
written as they change. Everything of one save is one transaction: after a crash the state
and the point to resume the report stream from always agree, so a report is applied exactly
once.

WAL. A ``durable`` save (a control, a latch) is fsynced before it returns
(``synchronous=FULL``), like every order of the execution store: an acknowledged halt is on
disk. Approvals and reports are written with ``synchronous=NORMAL``: in the file before the
intent is published, so a killed or OOM-killed process loses nothing, without an fsync on the
order path (a machine crash can lose the last few ms; the next durable save or checkpoint
syncs them).
"""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec

from tradingsystem.common.sqlite import Checkpointer, Transactions, connect
from tradingsystem.risk.engine import PersistedOrder, PersistedState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS risk_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state BLOB NOT NULL,
    last_seq INTEGER,
    ts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS risk_open_orders (
    client_order_id TEXT PRIMARY KEY,
    open_order BLOB NOT NULL
);
"""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(PersistedState).decode
_decode_order = msgspec.msgpack.Decoder(PersistedOrder).decode


class RiskStore:
    def __init__(self, path: Path | str) -> None:
        self._db = connect(path, _SCHEMA, synchronous="NORMAL")
        self._tx = Transactions(self._db, "NORMAL")
        self._checkpointer = Checkpointer(path)
        self._lock = threading.Lock()

    def load(self) -> tuple[PersistedState, dict[str, PersistedOrder], int | None] | None:
        """The stored state, open orders and last applied report_seq; None on a first start."""
        with self._lock:
            row = self._db.execute("SELECT state, last_seq FROM risk_state WHERE id = 1").fetchone()
            orders = self._db.execute("SELECT client_order_id, open_order FROM risk_open_orders").fetchall()
        if row is None:
            return None
        return _decode(row[0]), {cid: _decode_order(blob) for cid, blob in orders}, row[1]

    def save(
        self,
        state: PersistedState,
        last_seq: int | None,
        ts: int,
        orders: tuple[dict[str, PersistedOrder], list[str]] = ({}, []),
        *,
        durable: bool = False,
    ) -> None:
        """Replace the state, upsert/delete the changed open orders; fsynced if ``durable``."""
        upserts, closed = orders
        with self._lock:
            self._tx.begin(fsync=durable)
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO risk_state (id, state, last_seq, ts) VALUES (1, ?, ?, ?)",
                    (_encode(state), last_seq, ts),
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO risk_open_orders VALUES (?, ?)",
                    [(cid, _encode(o)) for cid, o in upserts.items()],
                )
                self._db.executemany(
                    "DELETE FROM risk_open_orders WHERE client_order_id = ?", [(cid,) for cid in closed]
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._checkpointer.close()
        with self._lock:
            self._db.close()


__all__ = ["RiskStore"]
