"""The services' SQLite files: checkpoints run beside the writer, never inside its commits; each
transaction at the durability its caller asks for."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tradingsystem.common.sqlite import Checkpointer, Transactions, connect
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


def test_each_transaction_commits_at_the_level_asked_for_and_a_run_at_one_level_sets_it_once(
    tmp_path: Path,
) -> None:
    db = connect(tmp_path / "s.sqlite", SCHEMA, synchronous="NORMAL")
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    tx = Transactions(db, "NORMAL")
    levels = []
    for i, fsync in enumerate((False, True, True, False)):
        tx.begin(fsync=fsync)
        db.execute("INSERT INTO t VALUES (?, x'00')", (i,))
        db.execute("COMMIT")
        levels.append(db.execute("PRAGMA synchronous").fetchone()[0])
    assert levels == [1, 2, 2, 1]  # NORMAL, FULL, FULL, NORMAL
    assert [s for s in statements if s.startswith("PRAGMA synchronous=")] == [
        "PRAGMA synchronous=FULL",
        "PRAGMA synchronous=NORMAL",
    ]
    db.close()
