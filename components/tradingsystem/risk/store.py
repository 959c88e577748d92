"""The risk manager's durable safety state (SQLite, stdlib): one row, replaced atomically.

The row holds ``RiskEngine.export()`` (msgpack, decimals exact) and the last execution
report applied (``last_seq``), written in one transaction: after a crash the state and the
point to resume the report stream from always agree, so a report is applied exactly once.
WAL with ``synchronous=FULL`` like the execution store: a halt acknowledged by ``/control``
or an approved order is on disk before anyone hears about it.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import msgspec

from tradingsystem.risk.engine import PersistedState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS risk_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state BLOB NOT NULL,
    last_seq INTEGER,
    ts INTEGER NOT NULL
);
"""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(PersistedState).decode


class RiskStore:
    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def load(self) -> tuple[PersistedState, int | None] | None:
        """The stored state and last applied report_seq, or None on a first start."""
        with self._lock:
            row = self._db.execute("SELECT state, last_seq FROM risk_state WHERE id = 1").fetchone()
        if row is None:
            return None
        return _decode(row[0]), row[1]

    def save(self, state: PersistedState, last_seq: int | None, ts: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO risk_state (id, state, last_seq, ts) VALUES (1, ?, ?, ?)",
                (_encode(state), last_seq, ts),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


__all__ = ["RiskStore"]
