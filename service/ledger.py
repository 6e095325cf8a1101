"""The SQLite ledger: the durable truth of what the service has done.

It holds ids, states and times only, never concern text or names. Steps are claimed with
conditional updates so that a crash anywhere resumes without doing a step twice. The schema
changes by numbered migrations, each in its own transaction, recorded in ``migrations``.

Migration numbers: 1–9 intake, 10–19 reminders, 20–29 Microsoft Graph, 30–39 IMAP/SMTP,
40–49 the case record (chronology, follow-ups).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from service.errors import PreventServiceError
from service.locks import exclusive_lock

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE items (
        source_key   TEXT PRIMARY KEY,      -- 'mail:<mailbox item id>' or 'form:<response ID>'
        source       TEXT NOT NULL,         -- 'mail' | 'form'
        message_id   TEXT,                  -- RFC 5322 Message-ID, for duplicate detection
        reference    TEXT UNIQUE,
        state        TEXT NOT NULL,         -- see ItemState
        critical     INTEGER NOT NULL DEFAULT 0,
        first_seen   TEXT NOT NULL,
        alert_tried  TEXT,                  -- a send was started; a resend reuses its Message-ID
        alerted_at   TEXT,
        log_tried    TEXT,                  -- an append was started: read the register back first
        logged_at    TEXT,
        acked_at     TEXT,
        done_at      TEXT,
        attempts     INTEGER NOT NULL DEFAULT 0,
        retry_at     TEXT,
        last_error   TEXT                   -- error class and a content-free message
    );
    CREATE INDEX items_message_id ON items(message_id);
    CREATE INDEX items_state ON items(state);
    CREATE TABLE sequences (
        prefix TEXT NOT NULL,
        year   INTEGER NOT NULL,
        last   INTEGER NOT NULL,
        PRIMARY KEY (prefix, year)
    );
    CREATE TABLE kv (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        kind        TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        ok          INTEGER,
        summary     TEXT
    );
    """,
    2: """
    -- What a parked item waits for ('sender', 'register', 'mailbox'): the first success of
    -- that service releases it at once instead of at its back-off time.
    ALTER TABLE items ADD COLUMN waiting_on TEXT;
    """,
    10: """
    -- Compliance rows by identity (sheet and hidden ID): when the service first saw each,
    -- so that "Immediate" has a fixed day.
    CREATE TABLE compliance_rows (
        item_id    TEXT PRIMARY KEY,        -- 'ActionPlan:AP-1a2b3c4d'
        first_seen TEXT NOT NULL            -- local date, ISO
    );
    -- One row per reminder step per recipient: sent once, or superseded by a later step
    -- (catch-up after downtime sends only the latest). Problems use step 'problem:…'.
    CREATE TABLE reminders (
        item_id    TEXT NOT NULL,
        due        TEXT NOT NULL,           -- ISO date, '' for problems
        step       TEXT NOT NULL,           -- 'before:30', 'due', 'overdue:2', 'team', 'problem:…'
        recipient  TEXT NOT NULL,
        state      TEXT NOT NULL,           -- 'sent' | 'superseded'
        message_id TEXT,                    -- the digest that carried it
        at         TEXT NOT NULL,
        PRIMARY KEY (item_id, due, step, recipient)
    );
    -- Every e-mail the reminder and escalation jobs sent: a bounce names one of these.
    CREATE TABLE sent_messages (
        message_id TEXT PRIMARY KEY,
        kind       TEXT NOT NULL,           -- 'reminder-digest' | 'escalation' | 'weekly-digest'
        recipients TEXT NOT NULL,           -- comma-separated addresses
        day        TEXT NOT NULL,           -- local date it was for
        entries    INTEGER NOT NULL DEFAULT 0,
        sent_at    TEXT NOT NULL,
        bounced_at TEXT
    );
    -- Concerns as the escalation check saw them: time-to-acknowledge is left_new_at minus
    -- recorded_at (an upper bound: the check runs every few minutes).
    CREATE TABLE concern_watch (
        reference     TEXT PRIMARY KEY,
        recorded_at   TEXT NOT NULL,        -- UTC ISO, from the register
        first_checked TEXT NOT NULL,
        left_new_at   TEXT,
        status        TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE escalations (
        reference  TEXT NOT NULL,
        level      INTEGER NOT NULL,
        state      TEXT NOT NULL,           -- 'sent' | 'superseded'
        message_id TEXT,
        at         TEXT NOT NULL,
        PRIMARY KEY (reference, level)
    );
    """,
    30: """
    -- IMAP messages the mailbox has read, so that after a UIDVALIDITY change (which renumbers
    -- every message) it can skip those already taken and find old ids again. The fingerprint
    -- is the Message-ID, or 'sha256:…' of the bytes for a message without one.
    CREATE TABLE imap_messages (
        account     TEXT NOT NULL,          -- 'user@host:port/folder'
        item_id     TEXT NOT NULL,          -- 'UIDVALIDITY:UID'
        fingerprint TEXT NOT NULL,
        seen_at     TEXT NOT NULL,
        taken_at    TEXT,                   -- when the consumer took it
        PRIMARY KEY (account, item_id)
    );
    CREATE INDEX imap_messages_fingerprint ON imap_messages(account, fingerprint);
    """,
    31: """
    -- When the mailbox moved the message out of the intake folder (to Processed or Quarantine).
    -- Taken and not moved means in flight: after a UIDVALIDITY change, a message with its
    -- fingerprint is that message renumbered; once moved, a copy is a duplicate to record.
    ALTER TABLE imap_messages ADD COLUMN moved_at TEXT;
    -- Rows from before: an item the intake has finished was moved out (or found gone).
    UPDATE imap_messages SET moved_at = taken_at WHERE taken_at IS NOT NULL
        AND ('mail:' || item_id) IN (SELECT source_key FROM items WHERE state != 'open');
    """,
    40: """
    -- The case record. Chronology events the service writes, keyed so that each goes to the
    -- register's Chronology table once (tried_at: an append was started, so read the key
    -- column back before trying again). Notes are content-free: roles, configured
    -- addresses, statuses and dates, never concern text or a reporter's address.
    CREATE TABLE case_events (
        key        TEXT PRIMARY KEY,        -- 'PRV-2026-0001|alert', '…|Status|2', …
        reference  TEXT NOT NULL,
        at         TEXT NOT NULL,           -- UTC ISO: when it happened (or was first seen)
        event      TEXT NOT NULL,
        by_whom    TEXT NOT NULL,
        note       TEXT NOT NULL,
        tried_at   TEXT,
        written_at TEXT
    );
    CREATE INDEX case_events_pending ON case_events(written_at);
    -- Message-IDs of mail the service sent about a case, so a reply threads back to it.
    CREATE TABLE case_messages (
        message_id TEXT PRIMARY KEY,
        reference  TEXT NOT NULL,
        kind       TEXT NOT NULL
    );
    -- The DSP's columns as the escalation check last saw them (choices and dates only).
    CREATE TABLE case_fields (
        reference TEXT NOT NULL,
        field     TEXT NOT NULL,
        value     TEXT NOT NULL,
        changes   INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (reference, field)
    );
    -- A follow-up item joins an existing case: no reference of its own.
    ALTER TABLE items ADD COLUMN case_ref TEXT;
    ALTER TABLE concern_watch ADD COLUMN decided_at TEXT;
    """,
}


class LedgerError(PreventServiceError):
    """The ledger file cannot be opened or migrated."""


class ItemState:
    """Where an intake item is. ``alerted_at``/``logged_at``/``acked_at`` record the steps,
    which are independent; the state says whether work remains."""

    OPEN = "open"  # seen; some steps remain
    DONE = "done"  # alerted, logged, acknowledged (if due) and marked processed
    IGNORED = "ignored"  # auto-reply, bounce, own mail: never a concern
    DUPLICATE = "duplicate"  # same Message-ID as an earlier item
    QUARANTINED = "quarantined"  # unreadable; a person was told
    FINAL = (DONE, IGNORED, DUPLICATE, QUARANTINED)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime) -> str:
    """The ledger's time format: UTC ISO 8601 to the second (sorts as text)."""
    return value.astimezone(UTC).isoformat(timespec="seconds")


_iso = iso


@dataclass(frozen=True)
class ItemRow:
    source_key: str
    source: str
    message_id: str | None
    reference: str | None
    state: str
    critical: bool
    first_seen: str
    alert_tried: str | None
    alerted_at: str | None
    log_tried: str | None
    logged_at: str | None
    acked_at: str | None
    done_at: str | None
    attempts: int
    retry_at: str | None
    last_error: str | None
    case_ref: str | None = None  # a follow-up: the case it was added to
    waiting_on: str | None = None  # parked behind an outage of this service


class Ledger:
    """A thin, typed wrapper over one SQLite file. One worker process at a time."""

    def __init__(self, path: Path | str, *, now: Callable[[], datetime] | None = None) -> None:
        self.path = Path(path)
        # The service's clock (frozen in tests), so times recorded here agree with the App's.
        self.now = now or utcnow
        if str(path) != ":memory:":
            self.path.parent.mkdir(0o700, parents=True, exist_ok=True)
            # Created 0600 whatever the umask (SQLite would make it 0644; its -wal and -shm
            # files copy this mode): item states and times are still about young people.
            with contextlib.suppress(OSError):  # exists, or SQLite reports the problem below
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        # One App (and ledger) serves the worker; the scheduler runs one job at a time.
        self.db = sqlite3.connect(
            str(path), isolation_level=None, timeout=30, check_same_thread=False
        )
        self.db.row_factory = sqlite3.Row
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.migrate()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise LedgerError(
                f"the ledger {self.path} cannot be used ({exc}); if it is damaged, restore it "
                "from a backup or move it aside (a new one is made; mail already in Processed "
                "is not taken again)"
            ) from None

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Hold a lock beside the ledger for the length of a cycle; yields False (without
        waiting) when another process holds it, so two cycles never send the same alert."""
        if str(self.path) == ":memory:":
            yield True
            return
        with exclusive_lock(self.path.with_name(f"{name}.lock")) as mine:
            yield mine

    # -- schema -------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Apply numbered migrations not yet applied, each in its own transaction."""
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS migrations (number INTEGER PRIMARY KEY, applied_at TEXT)"
        )
        done = {r[0] for r in self.db.execute("SELECT number FROM migrations")}
        applied = []
        for number in sorted(MIGRATIONS):
            if number in done:
                continue
            with self.transaction():
                for statement in _split_sql(MIGRATIONS[number]):
                    self.db.execute(statement)
                self.db.execute("INSERT INTO migrations VALUES (?, ?)", (number, _iso(self.now())))
            applied.append(number)
        return applied

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # -- items --------------------------------------------------------------------------

    def claim_item(self, source_key: str, source: str, message_id: str | None) -> bool:
        """Record a new item; False if it was seen before (a replay)."""
        cur = self.db.execute(
            "INSERT INTO items (source_key, source, message_id, state, first_seen) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(source_key) DO NOTHING",
            (source_key, source, message_id, ItemState.OPEN, _iso(self.now())),
        )
        return cur.rowcount == 1

    def item(self, source_key: str) -> ItemRow | None:
        row = self.db.execute("SELECT * FROM items WHERE source_key = ?", (source_key,)).fetchone()
        return ItemRow(**dict(row)) if row else None

    def highest_form_id(self) -> int | None:
        """The highest Forms response ID this ledger has taken, or None if it has taken none."""
        row = self.db.execute(
            "SELECT MAX(CAST(substr(source_key, 6) AS INTEGER)) FROM items WHERE source = 'form'"
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def item_by_reference(self, reference: str) -> ItemRow | None:
        row = self.db.execute("SELECT * FROM items WHERE reference = ?", (reference,)).fetchone()
        return ItemRow(**dict(row)) if row else None

    def earlier_with_message_id(self, message_id: str, source_key: str) -> str | None:
        """The source key of an earlier item with the same Message-ID, if any."""
        row = self.db.execute(
            "SELECT source_key FROM items WHERE message_id = ? AND source_key != ? "
            "AND state NOT IN (?, ?) ORDER BY rowid LIMIT 1",
            (message_id, source_key, ItemState.DUPLICATE, ItemState.IGNORED),
        ).fetchone()
        return row[0] if row else None

    def open_items(self, *, now: datetime | None = None) -> list[ItemRow]:
        """Items with work left whose retry time has come, oldest first."""
        now_iso = _iso(now or self.now())
        rows = self.db.execute(
            "SELECT * FROM items WHERE state = ? AND (retry_at IS NULL OR retry_at <= ?) "
            "ORDER BY rowid",
            (ItemState.OPEN, now_iso),
        ).fetchall()
        return [ItemRow(**dict(r)) for r in rows]

    def assign_reference(self, source_key: str, prefix: str, year: int) -> str:
        """Give the item the next reference for ``year``, once; the same one if it has one.

        Counter and assignment commit together, so a crash never reuses or skips a number
        that was handed out."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT reference FROM items WHERE source_key = ?", (source_key,)
            ).fetchone()
            if row is None:
                raise KeyError(source_key)
            if row[0]:
                return str(row[0])
            db.execute(
                "INSERT INTO sequences (prefix, year, last) VALUES (?, ?, 0) "
                "ON CONFLICT(prefix, year) DO NOTHING",
                (prefix, year),
            )
            db.execute(
                "UPDATE sequences SET last = last + 1 WHERE prefix = ? AND year = ?",
                (prefix, year),
            )
            (number,) = db.execute(
                "SELECT last FROM sequences WHERE prefix = ? AND year = ?", (prefix, year)
            ).fetchone()
            reference = f"{prefix}-{year}-{number:04d}"
            db.execute(
                "UPDATE items SET reference = ? WHERE source_key = ?", (reference, source_key)
            )
            return reference

    def ensure_sequence_at_least(self, prefix: str, year: int, last: int) -> None:
        """Never hand out a number the register already shows (e.g. after a lost ledger)."""
        self.db.execute(
            "INSERT INTO sequences (prefix, year, last) VALUES (?, ?, ?) "
            "ON CONFLICT(prefix, year) DO UPDATE SET last = MAX(last, excluded.last)",
            (prefix, year, last),
        )

    def mark_step(self, source_key: str, step: str) -> bool:
        """Record that ``step`` (alerted, logged, acked) happened; True only the first time."""
        if step not in {"alerted", "logged", "acked"}:
            raise ValueError(step)
        cur = self.db.execute(
            f"UPDATE items SET {step}_at = ? WHERE source_key = ? AND {step}_at IS NULL",  # noqa: S608
            (_iso(self.now()), source_key),
        )
        return cur.rowcount == 1

    def mark_tried(self, source_key: str, step: str) -> None:
        """Record that ``step`` (alert, log) was started, before its outcome is known."""
        if step not in {"alert", "log"}:
            raise ValueError(step)
        self.db.execute(
            f"UPDATE items SET {step}_tried = COALESCE({step}_tried, ?) WHERE source_key = ?",  # noqa: S608
            (_iso(self.now()), source_key),
        )

    def set_critical(self, source_key: str, critical: bool) -> None:
        self.db.execute(
            "UPDATE items SET critical = ? WHERE source_key = ?", (int(critical), source_key)
        )

    def finish(self, source_key: str, state: str, *, note: str | None = None) -> None:
        self.db.execute(
            "UPDATE items SET state = ?, done_at = ?, retry_at = NULL, last_error = ? "
            "WHERE source_key = ?",
            (state, _iso(self.now()), note, source_key),
        )

    def park(
        self, source_key: str, error: str, retry_at: datetime, *, waiting_on: str | None = None
    ) -> int:
        """Put an item aside until ``retry_at`` (or until ``waiting_on`` answers again, see
        ``release``); returns the attempt count."""
        self.db.execute(
            "UPDATE items SET attempts = attempts + 1, retry_at = ?, last_error = ?, "
            "waiting_on = ? WHERE source_key = ?",
            (_iso(retry_at), error[:500], waiting_on, source_key),
        )
        row = self.db.execute(
            "SELECT attempts FROM items WHERE source_key = ?", (source_key,)
        ).fetchone()
        return int(row[0]) if row else 0

    def reopen_quarantined(self, source_key: str) -> None:
        """A quarantined item is back in the intake folder: open it as if new (its notice to
        the DSP was about the unreadable message, not an alert, so the alert is owed)."""
        self.db.execute(
            "UPDATE items SET state = ?, done_at = NULL, alert_tried = NULL, alerted_at = NULL, "
            "attempts = 0, retry_at = NULL, last_error = NULL, waiting_on = NULL "
            "WHERE source_key = ? AND state = ?",
            (ItemState.OPEN, source_key, ItemState.QUARANTINED),
        )

    def release(self, waiting_on: str) -> int:
        """``waiting_on`` answered again: open items parked behind its outage go on the next
        cycle instead of at their back-off time. Their attempts stand (the admin's notice
        counts on). Returns how many were released."""
        params = (ItemState.OPEN, waiting_on)
        where = "state = ? AND waiting_on = ? AND retry_at IS NOT NULL"
        if self.db.execute(f"SELECT 1 FROM items WHERE {where} LIMIT 1", params).fetchone():  # noqa: S608
            cur = self.db.execute(
                f"UPDATE items SET retry_at = NULL, waiting_on = NULL WHERE {where}",  # noqa: S608
                params,
            )
            return cur.rowcount
        return 0  # the usual case: a read, no write

    def clear_retry(self, source_key: str) -> None:
        self.db.execute(
            "UPDATE items SET retry_at = NULL, last_error = NULL WHERE source_key = ?",
            (source_key,),
        )

    def counts_by_state(self) -> dict[str, int]:
        return {
            r[0]: r[1] for r in self.db.execute("SELECT state, COUNT(*) FROM items GROUP BY state")
        }

    def items_in_state(self, state: str) -> list[ItemRow]:
        rows = self.db.execute(
            "SELECT * FROM items WHERE state = ? ORDER BY rowid", (state,)
        ).fetchall()
        return [ItemRow(**dict(r)) for r in rows]

    # -- key/value cursors --------------------------------------------------------------

    def get(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else default

    def set(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (key, value, _iso(self.now())),
        )

    def delete(self, key: str) -> None:
        self.db.execute("DELETE FROM kv WHERE key = ?", (key,))

    def kv_with_prefix(self, prefix: str) -> list[tuple[str, str, str]]:
        """(key, value, updated_at) of every key starting with ``prefix``."""
        rows = self.db.execute(
            "SELECT key, value, updated_at FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key",
            (len(prefix), prefix),
        ).fetchall()
        return [(str(k), str(v), str(u)) for k, v, u in rows]

    # -- runs ---------------------------------------------------------------------------

    def start_run(self, kind: str) -> int:
        cur = self.db.execute(
            "INSERT INTO runs (kind, started_at) VALUES (?, ?)", (kind, _iso(self.now()))
        )
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, ok: bool, summary: str) -> None:
        self.db.execute(
            "UPDATE runs SET finished_at = ?, ok = ?, summary = ? WHERE id = ?",
            (_iso(self.now()), int(ok), summary, run_id),
        )

    def last_runs(self, kind: str, limit: int = 1) -> Sequence[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM runs WHERE kind = ? ORDER BY id DESC LIMIT ?", (kind, limit)
        ).fetchall()

    def consecutive_failures(self, kind: str) -> int:
        """How many of the latest finished runs of ``kind`` failed in a row."""
        count = 0
        for (ok,) in self.db.execute(
            "SELECT ok FROM runs WHERE kind = ? AND finished_at IS NOT NULL ORDER BY id DESC "
            "LIMIT 1000",
            (kind,),
        ):
            if ok:
                break
            count += 1
        return count

    def last_good_run(self, kind: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM runs WHERE kind = ? AND ok = 1 ORDER BY id DESC LIMIT 1", (kind,)
        ).fetchone()
        return row


def _split_sql(script: str) -> list[str]:
    """Statements of a migration script, comments removed (a comment may hold a ';')."""
    statements, current = [], ""
    for line in script.splitlines():
        current += line.split("--", 1)[0] + "\n"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
