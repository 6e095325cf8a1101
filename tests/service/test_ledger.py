"""The ledger: numbered migrations, claims, references that are never reused."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.ledger import MIGRATIONS, ItemState, Ledger


def test_migrations_apply_once_and_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    first = Ledger(path)
    assert sorted(MIGRATIONS) == [r[0] for r in first.db.execute("SELECT number FROM migrations")]
    first.close()
    again = Ledger(path)
    assert again.migrate() == []
    again.close()


def test_a_claim_succeeds_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    assert ledger.claim_item("mail:1", "mail", "<a@example.org>")
    assert not ledger.claim_item("mail:1", "mail", "<a@example.org>")
    assert ledger.item("mail:1").state == ItemState.OPEN  # type: ignore[union-attr]


def test_references_are_sequential_per_year_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = Ledger(path)
    for n in range(3):
        ledger.claim_item(f"k{n}", "mail", None)
    assert ledger.assign_reference("k0", "PRV", 2026) == "PRV-2026-0001"
    assert ledger.assign_reference("k0", "PRV", 2026) == "PRV-2026-0001"  # stable
    assert ledger.assign_reference("k1", "PRV", 2026) == "PRV-2026-0002"
    ledger.close()
    reopened = Ledger(path)
    assert reopened.assign_reference("k2", "PRV", 2027) == "PRV-2027-0001"
    reopened.claim_item("k3", "mail", None)
    assert reopened.assign_reference("k3", "PRV", 2026) == "PRV-2026-0003"


def test_an_uncommitted_reference_is_not_handed_out_twice(tmp_path: Path) -> None:
    """A crash inside the transaction rolls back both the counter and the assignment."""
    path = tmp_path / "l.db"
    ledger = Ledger(path)
    ledger.claim_item("a", "mail", None)
    ledger.claim_item("b", "mail", None)
    ledger.db.execute("BEGIN IMMEDIATE")
    ledger.db.execute("INSERT INTO sequences VALUES ('PRV', 2026, 0)")
    ledger.db.execute("UPDATE sequences SET last = last + 1")
    ledger.db.close()  # dies mid-transaction
    again = Ledger(path)
    assert again.assign_reference("a", "PRV", 2026) == "PRV-2026-0001"
    assert again.assign_reference("b", "PRV", 2026) == "PRV-2026-0002"


def test_the_register_can_raise_the_counter_but_never_lower_it(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    ledger.ensure_sequence_at_least("PRV", 2026, 41)
    ledger.ensure_sequence_at_least("PRV", 2026, 7)
    ledger.claim_item("a", "mail", None)
    assert ledger.assign_reference("a", "PRV", 2026) == "PRV-2026-0042"


def test_steps_are_recorded_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    ledger.claim_item("a", "mail", None)
    assert ledger.mark_step("a", "alerted")
    assert not ledger.mark_step("a", "alerted")


def test_parked_items_wait_for_their_time(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    ledger.claim_item("a", "mail", None)
    ledger.park("a", "LockedError: open in Excel", datetime(2026, 1, 1, 10, tzinfo=UTC))
    assert ledger.open_items(now=datetime(2026, 1, 1, 9, tzinfo=UTC)) == []
    assert [r.source_key for r in ledger.open_items(now=datetime(2026, 1, 1, 11, tzinfo=UTC))] == [
        "a"
    ]


def test_the_ledger_holds_no_free_text_columns_for_content(tmp_path: Path) -> None:
    """Least data: no subject, body, name or address columns in the items table."""
    db = sqlite3.connect(tmp_path / "x.db")
    Ledger(tmp_path / "x.db").close()
    columns = {r[1] for r in db.execute("PRAGMA table_info(items)")}
    assert not columns & {"subject", "body", "text", "name", "sender", "from_address", "account"}


@pytest.mark.usefixtures("open_umask")
def test_the_ledger_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    assert ledger.claim_item("mail:1", "mail", "<a@example.org>")
    files = sorted((tmp_path / "state").iterdir())
    assert files[0].name == "ledger.sqlite3" and len(files) >= 2  # and -wal, -shm
    assert {p.stat().st_mode & 0o777 for p in files} == {0o600}
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    ledger.close()
