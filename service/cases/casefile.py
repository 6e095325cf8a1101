"""``prevent-service case PRV-…``: one case's register row and its chronology, in time order.

For the DSP at a terminal preparing a referral or a handover, so it shows everything the
register holds, concern text included (the register is where that text lives). Nothing else
is printed: no secrets, no ledger internals. Chronology events the service has recorded but
could not yet write (the register was locked) are shown too, marked pending.
"""

from __future__ import annotations

import re
import textwrap
from datetime import date, datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from connectors.base import read_rows_matching, read_rows_where
from service.app import App
from service.cases import chronology
from service.cases.register import (
    CLOSED_DATE,
    DOB_OR_AGE,
    REFERENCE,
    RETENTION_REVIEW,
    SOURCE_KEY,
    retention_review,
)
from service.errors import ConnectorError, InputError
from service.ledger import ItemRow
from service.values import as_datetime, as_text, from_excel_serial

EXIT_OK, EXIT_NOT_FOUND = 0, 1
_ERROR_TYPE = re.compile(r"^\w*Error: ")  # the ledger's "LockedError: …": the message is enough
_DATEISH = re.compile(r"\b(date|at|when|time)\b", re.IGNORECASE)
_HIDDEN = {SOURCE_KEY.casefold(), chronology.KEY.casefold()}
WIDTH = 100


def _norm(reference: str) -> str:
    return reference.strip().upper()


def show(header: str, value: Any, tz: ZoneInfo) -> str:
    """A cell as a person reads it: dates day-first in local time, Graph's serials as dates."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(tz)
        return (
            value.strftime("%d/%m/%Y %H:%M")
            if (value.hour or value.minute)
            else (value.strftime("%d/%m/%Y"))
        )
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and _DATEISH.search(header)
        and 3000 <= value < 2958466
    ):
        return show(header, from_excel_serial(round(float(value) * 1440) / 1440), tz)
    return as_text(value)


def _when(value: Any, tz: ZoneInfo) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = from_excel_serial(round(float(value) * 86400) / 86400)
    return as_datetime(value, tz)


def case_command(app: App, reference: str, out: TextIO) -> int:
    tz = app.config.organisation.tz
    wanted = _norm(reference)
    workbook = app.workbook("register")
    # Only this case's row, found by streaming where the backend can: a large register is
    # never loaded whole for one case.
    table = read_rows_where(workbook, app.config.register.table, REFERENCE, [wanted])
    rows = list(table.rows)
    if not rows:
        known = app.ledger.item_by_reference(wanted)
        if known is None:
            print(
                f"No concern {wanted} in the register (table {app.config.register.table}). "
                "Check the reference; a follow-up has none of its own (it is in its case's "
                "chronology).",
                file=out,
            )
            return EXIT_NOT_FOUND
        _not_in_register(app, known, wanted, tz, out)
        _print_chronology(app, wanted, tz, out)
        return EXIT_NOT_FOUND
    print(f"Case {wanted}", file=out)
    print("=" * (5 + len(wanted)), file=out)
    width = max(len(h) for h in table.headers)
    for row in rows:  # one, unless someone copied a row
        for header in table.headers:
            if header.casefold() in _HIDDEN:
                continue
            value = row.get(header)
            if header.casefold() == RETENTION_REVIEW.casefold() and as_text(value).startswith("="):
                # The workbook's formula, uncalculated (no program has saved the file since the
                # service wrote it): show what it gives.
                value = retention_review(row.get(DOB_OR_AGE), row.get(CLOSED_DATE))
            text = show(header, value, tz)
            if not text:
                continue
            lines = text.splitlines() or [""]
            print(f"{header.ljust(width)}  {lines[0]}", file=out)
            for line in lines[1:]:
                print(f"{'':{width}}  {line}", file=out)
        print(file=out)
    _print_chronology(app, wanted, tz, out)
    return EXIT_OK


def _not_in_register(app: App, item: ItemRow, reference: str, tz: ZoneInfo, out: TextIO) -> None:
    """The service took the concern in but the register has no row for it: say which of the
    two it is (not written yet, or gone since), rather than "check the reference"."""
    seen = datetime.fromisoformat(item.first_seen).astimezone(tz).strftime("%d/%m/%Y %H:%M")
    alerted = "the DSP was alerted" if item.alerted_at else "the DSP alert is not sent yet"
    table = app.config.register.table
    if item.logged_at is None:
        why = _ERROR_TYPE.sub("", item.last_error or "").strip()
        print(
            f"{reference} was received on {seen} and {alerted}, but its register row (table "
            f"{table}) is not written yet."
            + (f" Last try: {why}" if why else "")
            + ("" if why.endswith(".") or not why else ".")
            + " The service writes the row as soon as it can; 'prevent-service status' shows "
            "what is in the way.",
            file=out,
        )
    else:
        logged = datetime.fromisoformat(item.logged_at).astimezone(tz).strftime("%d/%m/%Y %H:%M")
        print(
            f"{reference} was received on {seen} and written to the register on {logged}, "
            f"but no row in table {table} has that reference now: it may have been deleted, "
            "or its Reference cell changed. Look in the register's backups and its version "
            "history.",
            file=out,
        )
    print(file=out)


def _print_chronology(app: App, wanted: str, tz: ZoneInfo, out: TextIO) -> None:
    events = _chronology(app, wanted, tz)
    print(f"Chronology ({len(events)} entr{'y' if len(events) == 1 else 'ies'})", file=out)
    print("-" * 20, file=out)
    if not events:
        print("Nothing recorded yet.", file=out)
    for when, event, by, note, pending in events:
        stamp = when.astimezone(tz).strftime("%d/%m/%Y %H:%M") if when else "(no date)"
        flag = "  [pending: not yet in the register]" if pending else ""
        print(f"{stamp}  {event}{f' – {by}' if by else ''}{flag}", file=out)
        for paragraph in note.splitlines():
            wrapped = textwrap.wrap(paragraph, WIDTH - 6) or [""]
            for line in wrapped:
                print(f"      {line}", file=out)


def _chronology(
    app: App, reference: str, tz: ZoneInfo
) -> list[tuple[datetime | None, str, str, str, bool]]:
    """(when, event, by, note, pending) in time order; undated rows (a person's) last, in
    the order they were typed."""
    found: list[tuple[datetime | None, str, str, str, bool]] = []
    keys: set[str] = set()
    ranks: dict[int, str] = {}  # id(entry) → its service key, for ties in time
    try:
        # Only this case's rows: a local register finds them in the sheet's bytes (no
        # whole-workbook load, no row-by-row read of 50,000 events).
        table = read_rows_matching(
            app.workbook("register"),
            chronology.TABLE,
            chronology.REFERENCE,
            lambda value: _norm(as_text(value)) == reference,
            [c.header for c in chronology.COLUMNS],
        )
    except (InputError, ConnectorError):
        table = None  # a register from before the chronology, not yet upgraded
    for row in table.rows if table else ():
        if _norm(as_text(row.get(chronology.REFERENCE))) != reference:
            continue
        key = as_text(row.get(chronology.KEY))
        keys.add(key)
        entry = (
            _when(row.get(chronology.WHEN), tz),
            as_text(row.get(chronology.EVENT)),
            as_text(row.get(chronology.BY)),
            as_text(row.get(chronology.NOTE)),
            False,
        )
        ranks[id(entry)] = key
        found.append(entry)
    for row in app.ledger.db.execute(
        "SELECT key, at, event, by_whom, note FROM case_events "
        "WHERE reference = ? AND written_at IS NULL",
        (reference,),
    ):
        if row["key"] in keys:
            continue
        at = datetime.fromisoformat(row["at"])
        pending = (at, row["event"], row["by_whom"], row["note"], True)
        ranks[id(pending)] = row["key"]
        found.append(pending)
    order = {id(item): n for n, item in enumerate(found)}
    return sorted(
        found,
        key=lambda e: (
            e[0] is None,
            e[0] or datetime.min.replace(tzinfo=tz),
            _event_rank(ranks[id(e)]),
            order[id(e)],
        ),
    )


# At the same time (the register keeps whole seconds, and a person may sort the sheet), the
# service's events read in the order they happen: reported, alerted, acknowledged, then a
# follow-up, its alert and its acknowledgement; other events and a person's rows after them.
_EVENT_ORDER = ("reported", "alert", "ack", "followup", "followup-alert", "followup-ack")


def _event_rank(key: str) -> int:
    """The place of a chronology row's service key (``PRV-…|kind|…``) in ``_EVENT_ORDER``."""
    parts = key.split("|")
    kind = parts[1] if len(parts) > 1 else ""
    return _EVENT_ORDER.index(kind) if kind in _EVENT_ORDER else len(_EVENT_ORDER)
