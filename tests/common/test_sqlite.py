"""The services' SQLite files: checkpoints run beside the writer, never inside its commits."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tradingsystem.common.sqlite import Checkpointer, connect
from tradingsystem_testing import eventually

SCHEMA = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, b BLOB NOT NULL);"
ROWS, ROW_BYTES = 200, 1_000


def _write_rows(path: Path) -> sqlite3.Connection:
    """Commits, one per row; the connection stays open (closing the last one checkpoints)."""
    db = connect(path, SCHEMA, synchronous="NORMAL")
    for i in range(ROWS):
        db.execute("INSERT INTO t VALUES (?, ?)", (i, os.urandom(ROW_BYTES)))
    return db


def test_a_connection_never_checkpoints_inside_a_commit(tmp_path: Path) -> None:
    db = connect(tmp_path / "s.sqlite", SCHEMA, synchronous="FULL")
    assert db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_checkpointer_moves_committed_pages_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    checkpointer = Checkpointer(path, every_s=0.05)
    try:
        db = _write_rows(path)
        # The rows are in the WAL; only a checkpoint puts them into the main file.
        eventually(lambda: os.path.getsize(path) >= ROWS * ROW_BYTES, "the rows in the database file")
        db.close()
    finally:
        checkpointer.close()


def test_without_the_checkpointer_the_rows_stay_in_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    db = _write_rows(path)
    assert os.path.getsize(path) < ROWS * ROW_BYTES
    assert os.path.getsize(f"{path}-wal") >= ROWS * ROW_BYTES
    db.close()
