"""Opening the services' SQLite state files: one definition of the connection settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal


def connect(path: Path | str, schema: str, synchronous: Literal["NORMAL", "FULL"]) -> sqlite3.Connection:
    """A WAL-mode connection in autocommit (transactions are explicit), shareable across threads
    (callers serialize with their own lock), with ``schema`` applied. ``FULL`` fsyncs every
    commit; ``NORMAL`` leaves the last commits to a checkpoint (callers fsync what must survive)."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.executescript(schema)
    return db
