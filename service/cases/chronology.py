"""The case chronology: what happened to each concern, in the register workbook's own table.

The ``Chronology`` table (its own sheet in the register workbook) has one row per event:
Reference, When, Event, By, Note and a hidden ``Service key``. The service appends its own
events; the DSP adds theirs (a call to the police Prevent team, a Channel panel) and the
service never touches a row it did not write.

Exactly once: an event is first recorded in the ledger (``case_events``, keyed), then
appended. An append is marked tried before it starts; a tried event's key is looked for in
the table before it is appended again (as the register's rows are), so a crash or an unclear
failure never makes a second row. A locked register leaves events pending for a later run.

A register made by an earlier version has no ``Chronology``: it is added (``ensure_table``)
the first time an event is written, and nothing else in the workbook is changed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from weakref import WeakSet

from connectors.base import ColumnSpec, TableSpec, Workbook
from service.app import App
from service.errors import ConnectorError, InputError
from service.ledger import iso
from service.model import Concern

log = logging.getLogger("prevent_service.chronology")

TABLE = "Chronology"
REFERENCE = "Reference"
WHEN = "When"
EVENT = "Event"
BY = "By"
NOTE = "Note"
KEY = "Service key"
SERVICE = "Service"

COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec(REFERENCE, "text", width=16),
    ColumnSpec(WHEN, "datetime", width=17),
    ColumnSpec(EVENT, "text", width=24),
    ColumnSpec(BY, "text", width=28, owner="person"),
    ColumnSpec(NOTE, "long_text", width=70, owner="person"),
    ColumnSpec(KEY, "hidden", width=30),
)
BATCH = 500  # events per append

# Workbooks (objects) known to hold the table in this process: checked once, not per append.
_ENSURED: WeakSet[Workbook] = WeakSet()


def step_done(step: str) -> None:
    """A seam for crash tests (they kill the process here): ``appended`` is after an append,
    before the ledger knows it went."""


def chronology_table_spec() -> TableSpec:
    # Reference frozen: it stays in view and is printed on every page, so a Note that prints
    # on a page of its own (the table is wider than A4) still says which case it belongs to.
    return TableSpec(sheet="Chronology", table=TABLE, columns=COLUMNS, freeze="B2")


@dataclass(frozen=True)
class Event:
    key: str
    reference: str
    at: datetime  # aware
    event: str
    by: str
    note: str

    def row(self) -> dict[str, Any]:
        return {
            REFERENCE: self.reference,
            WHEN: self.at,
            EVENT: self.event,
            BY: self.by,
            NOTE: self.note,
            KEY: self.key,
        }


def record(
    app: App,
    reference: str,
    key: str,
    event: str,
    *,
    by: str = SERVICE,
    note: str = "",
    at: datetime | None = None,
) -> bool:
    """Queue an event for the chronology, once per ``key`` (``reference|key``); True if new.

    ``note`` must be content-free (roles, configured addresses, statuses, dates): it waits
    in the ledger until the register can be written."""
    when = iso(at or app.now())
    cur = app.ledger.db.execute(
        "INSERT INTO case_events (key, reference, at, event, by_whom, note) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
        (f"{reference}|{key}", reference, when, event, by, note),
    )
    return cur.rowcount == 1


def pending_count(app: App) -> int:
    row = app.ledger.db.execute(
        "SELECT COUNT(*) FROM case_events WHERE written_at IS NULL"
    ).fetchone()
    return int(row[0])


def ensure(workbook: Workbook) -> None:
    """The register workbook holds the Chronology table (added if missing), once per process."""
    if workbook in _ENSURED:
        return
    if workbook.ensure_table(chronology_table_spec()):
        log.info("chronology: added the %s table to the register workbook", TABLE)
    _ENSURED.add(workbook)


def append_once(
    app: App, rows: Sequence[Mapping[str, Any]], *, tried: Iterable[str] = ()
) -> set[str]:
    """Append chronology rows (each with its ``Service key``); keys in ``tried`` were tried
    before, so they are looked up first. Returns the keys now in the table. Raises the
    workbook's errors (``LockedError`` and the like): the caller keeps them pending."""
    workbook = app.workbook("register")
    ensure(workbook)
    tried = [k for k in tried if k]
    try:
        present = set(workbook.find_rows(TABLE, KEY, tried)) if tried else set()
        to_add = [r for r in rows if r[KEY] not in present]
        if to_add:
            workbook.append_rows(TABLE, to_add, key_column=KEY)
    except InputError:
        _ENSURED.discard(workbook)  # someone removed the table: add it again next time
        raise
    return present | {str(r[KEY]) for r in rows}


def flush(app: App) -> str | None:
    """Write the pending events; None when all went, else why not (content-free)."""
    return flush_counted(app)[1]


def flush_counted(app: App) -> tuple[int, str | None]:
    """``flush``, and how many events it wrote (the intake cycle's summary counts them)."""
    db = app.ledger.db
    count = 0
    while True:
        pending = db.execute(
            "SELECT * FROM case_events WHERE written_at IS NULL ORDER BY at, rowid LIMIT ?",
            (BATCH,),
        ).fetchall()
        if not pending:
            return count, None
        events = [_event(r) for r in pending]
        tried = [r["key"] for r in pending if r["tried_at"]]
        now = iso(app.now())
        with app.ledger.transaction():
            db.executemany(
                "UPDATE case_events SET tried_at = COALESCE(tried_at, ?) WHERE key = ?",
                [(now, e.key) for e in events],
            )
        try:
            written = append_once(app, [e.row() for e in events], tried=tried)
        except (ConnectorError, InputError) as exc:
            log.warning("chronology: %d event(s) pending: %s", len(events), type(exc).__name__)
            return count, f"chronology: {len(events)} event(s) pending: {exc}"
        step_done("appended")
        with app.ledger.transaction():
            # Written: the ledger keeps the key and times only (a reporter's address in "By"
            # waited here while the register could not be written; it lives there now).
            db.executemany(
                "UPDATE case_events SET written_at = ?, by_whom = '', note = '' WHERE key = ?",
                [(iso(app.now()), key) for key in written],
            )
        log.info("chronology: %d event(s) written", len(events))
        count += len(events)
        if len(pending) < BATCH:
            return count, None


def _event(row: Any) -> Event:
    return Event(
        key=row["key"],
        reference=row["reference"],
        at=datetime.fromisoformat(row["at"]).astimezone(UTC),
        event=row["event"],
        by=row["by_whom"],
        note=row["note"],
    )


def people_text(app: App, addresses: Iterable[str]) -> str:
    """Recipients as roles with their configured addresses: "DSP (dsp@…), Executive
    Director (ed@…)"; an address with no role is given as it is."""
    config = app.config
    roles: dict[str, str] = {config.people.dsp.email.lower(): "DSP"}
    if config.people.deputy_dsp:
        roles.setdefault(config.people.deputy_dsp.email.lower(), "deputy DSP")
    for role, emails in config.roles.items():
        for email in emails:
            roles.setdefault(email.lower(), role)
    parts = []
    for address in dict.fromkeys(a for a in addresses if a):
        name = roles.get(address.lower())
        parts.append(f"{name} ({address})" if name else address)
    return ", ".join(parts)


# ---------------------------------------------------------------------------- intake's events


REPORTED_KEY = "reported"  # its "By" (the reporter) waits in the ledger until written


def reported(app: App, concern: Concern) -> None:
    how = (
        "E-mail to the safeguarding mailbox"
        if concern.source == "E-mail"
        else f"Microsoft Form ({concern.link})"
    )
    record(
        app,
        concern.reference,
        REPORTED_KEY,
        "Reported",
        by=concern.reporter_email or ("anonymous" if concern.source == "Form" else "unknown"),
        note=how,
        at=_first_seen(app, concern.source_key),
    )


def alert_sent(
    app: App, reference: str, key: str, to: Iterable[str], *, urgent: bool, what: str = "Alert sent"
) -> None:
    note = f"To {people_text(app, to)}" + ("; sent as urgent (high importance)" if urgent else "")
    record(app, reference, key, what, note=note)


def _first_seen(app: App, source_key: str) -> datetime | None:
    row = app.ledger.item(source_key)
    return datetime.fromisoformat(row.first_seen) if row else None
