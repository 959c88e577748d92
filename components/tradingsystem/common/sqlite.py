"""Opening the services' SQLite state files: one definition of the connection settings."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_S = 1.0


def connect(path: Path | str, schema: str, synchronous: Literal["NORMAL", "FULL"]) -> sqlite3.Connection:
    """A WAL-mode connection in autocommit (transactions are explicit), shareable across threads
    (callers serialize with their own lock), with ``schema`` applied. ``FULL`` fsyncs every
    commit; ``NORMAL`` leaves the last commits to a checkpoint (callers fsync what must survive).

    Automatic checkpoints are off on this connection: run a ``Checkpointer`` beside it.
    Otherwise the commit that crosses SQLite's threshold (1,000 WAL pages) copies them into
    the database and fsyncs it, inline: a stall of several ms on the order path every few
    hundred commits, which is what a p99 sees."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.executescript(schema)
    return db


class Transactions:
    """Explicit transactions on one connection, each fsynced or not as its caller decides.

    SQLite's ``synchronous`` can change only outside a transaction, so ``begin`` sets it there,
    and only when it differs from the last transaction's: a run of commits at one level pays
    nothing for it. A ``FULL`` commit also makes every earlier ``NORMAL`` one durable (one WAL
    file, one fsync). Callers serialize with their own lock."""

    def __init__(self, db: sqlite3.Connection, synchronous: Literal["NORMAL", "FULL"]) -> None:
        self._db = db
        self._level = synchronous  # what ``connect`` set

    def begin(self, *, fsync: bool) -> None:
        level: Literal["NORMAL", "FULL"] = "FULL" if fsync else "NORMAL"
        if level != self._level:
            self._db.execute(f"PRAGMA synchronous={level}")
            self._level = level
        self._db.execute("BEGIN IMMEDIATE")


class Checkpointer:
    """WAL checkpoints on a thread and connection of their own, every ``every_s``.

    ``PASSIVE``: it copies what it can without waiting for, or blocking, the writer, which
    goes on committing meanwhile (the sqlite3 module releases the GIL while SQLite works).
    The WAL is reused from its start by the first commit after a complete checkpoint, so it
    stays small. Durability is unchanged: a commit is durable when it is in the WAL (fsynced
    under ``FULL``); the checkpoint only moves it into the main file."""

    def __init__(self, path: Path | str, every_s: float = CHECKPOINT_EVERY_S) -> None:
        self._path = str(path)
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._path != ":memory:":
            self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            while not self._stop.wait(self._every_s):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # busy or I/O: the next round tries again
                    log.warning("WAL checkpoint of %s failed: %s", self._path, exc)
        finally:
            db.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
