"""Processes opening one new SQLite file at once (a group's workers and their ledger) all open it:
the switch to WAL can fail at once with "database is locked" (SQLite skips its busy handler when
two connections would deadlock), and `SqliteDatabase` retries it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from foundation.database import SqliteDatabase

SCHEMA = "CREATE TABLE IF NOT EXISTS marks (id TEXT PRIMARY KEY);"


def test_six_openers_of_one_new_file_all_get_it_in_wal(tmp_path: Path) -> None:
    failures: list[str] = []
    for round_ in range(60):
        path = tmp_path / f"ledger-{round_}.sqlite"
        start = threading.Barrier(6)

        def open_it(path: Path = path, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                SqliteDatabase(path, SCHEMA)
            except sqlite3.OperationalError as error:
                failures.append(str(error))

        openers = [threading.Thread(target=open_it) for _ in range(6)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join()
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    assert failures == []
