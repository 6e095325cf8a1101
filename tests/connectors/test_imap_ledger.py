"""The IMAP mailbox's ledger table across an upgrade (no server needed)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from service.ledger import MIGRATIONS, Ledger, _split_sql


def test_upgrade_marks_finished_messages_as_moved_and_the_rest_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE migrations (number INTEGER PRIMARY KEY, applied_at TEXT)")
    for number in sorted(n for n in MIGRATIONS if n < 31):
        for statement in _split_sql(MIGRATIONS[number]):
            db.execute(statement)
        db.execute("INSERT INTO migrations VALUES (?, '2026-01-01')", (number,))
    for item_id, state in (("7:1", "done"), ("7:2", "open"), ("7:3", "quarantined")):
        db.execute(
            "INSERT INTO imap_messages VALUES ('a', ?, ?, '2026-01-01', '2026-01-01')",
            (item_id, f"<{item_id}@example.org>"),
        )
        db.execute(
            "INSERT INTO items (source_key, source, state, first_seen) "
            "VALUES (?, 'mail', ?, '2026-01-01')",
            (f"mail:{item_id}", state),
        )
    db.commit()
    db.close()

    ledger = Ledger(path)
    moved = dict(ledger.db.execute("SELECT item_id, moved_at FROM imap_messages").fetchall())
    ledger.close()

    assert moved == {"7:1": "2026-01-01", "7:2": None, "7:3": "2026-01-01"}
