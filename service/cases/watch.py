"""The DSP's columns as the escalation check sees them: each change goes in the chronology once.

On every escalation check the register's DSP columns (Status, Risk level, the referral choices
and their dates, Closed date) are compared with what the previous check saw (``case_fields``
in the ledger: choices and dates only, never text). Each difference is one chronology entry,
timed at the check that saw it, by "DSP (seen in the register)": the service records **what
it saw**, not every keystroke. A value changed and changed back between two checks was never
seen and is not recorded; two changes between checks are recorded as one (old → newest).

A concern's first sighting: if this ledger logged it after it got the case record, its starting
values are what the service wrote (Status ``New``, the rest blank), so a DSP who changed it
before the first check is still recorded. Any other row (a register older than the watch, a
new ledger) starts from what is there, silently, so an upgrade does not flood the chronology.

"Decision and rationale" is read only for whether it is filled: with a referral choice or a
closed status, the first check that sees one times the first decision (the board report's
"time to first decision").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from service.app import App
from service.cases import chronology
from service.cases.register import CLOSED_STATUSES, STATUS, STATUS_NEW
from service.ledger import iso
from service.values import as_datetime, as_text

log = logging.getLogger("prevent_service.watch")

BY = "DSP (seen in the register)"
DECISION = "Decision and rationale"
RISK = "Risk level"
CLOSED_DATE = "Closed date"
# Referral choice column → its date column.
REFERRALS: tuple[tuple[str, str], ...] = (
    ("Prevent referral (NRF)", "NRF date"),
    ("Channel", "Channel date"),
    ("Police", "Police date"),
    ("Children's social care", "Social care date"),
)
CHOICES = (STATUS, RISK, *(c for c, _ in REFERRALS))
DATES = (*(d for _, d in REFERRALS), CLOSED_DATE)
WATCHED = (*CHOICES, *DATES)
_CLOSED = {" ".join(s.lower().split()) for s in CLOSED_STATUSES}
_NOT_DECIDED = {"", "not yet assessed"}


def _norm(text: str) -> str:
    return " ".join(text.replace("\u00a0", " ").split()).casefold()


def watched_fields(row: Mapping[str, Any], tz: ZoneInfo) -> tuple[tuple[str, str], ...]:
    """The watched DSP columns of a register row (headers matched loosely), as text; dates
    day-first. A column the register does not have is left out (never reported as cleared)."""
    by_norm = {_norm(str(h)): h for h in row}
    out = []
    for field in WATCHED:
        header = by_norm.get(_norm(field))
        if header is None:
            continue
        value = row.get(header)
        if field in DATES and value not in (None, ""):
            moment = as_datetime(value, tz)
            text = moment.astimezone(tz).strftime("%d/%m/%Y") if moment else as_text(value)
        else:
            text = as_text(value)
        out.append((field, text))
    return tuple(out)


def decided(row: Mapping[str, Any], fields: Sequence[tuple[str, str]]) -> bool:
    """A first decision shows: a rationale written, a referral choice made, or closed."""
    by_norm = {_norm(str(h)): h for h in row}
    header = by_norm.get(_norm(DECISION))
    if header is not None and as_text(row.get(header)):
        return True
    values = dict(fields)
    if _norm(values.get(STATUS, "")) in _CLOSED:
        return True
    return any(values.get(choice, "") for choice, _ in REFERRALS)


def notice(app: App, concerns: Sequence[Any], now: datetime) -> int:
    """Record each change seen in the DSP's columns once; returns how many were recorded.
    ``concerns`` are ``escalation.ConcernRow`` (reference, fields, decided)."""
    db = app.ledger.db
    # Since this ledger had the case record (its migration): concerns logged after that
    # started from values the service wrote.
    row = db.execute("SELECT applied_at FROM migrations WHERE number = 40").fetchone()
    since = str(row[0]) if row else iso(now)
    stored: dict[str, dict[str, tuple[str, int]]] = {}
    for row in db.execute("SELECT reference, field, value, changes FROM case_fields"):
        stored.setdefault(row["reference"], {})[row["field"]] = (row["value"], row["changes"])
    at = iso(now)
    recorded = 0
    for concern in concerns:
        fields = dict(concern.fields)
        if not fields:
            continue
        seen = stored.get(concern.reference)
        ours = False
        if seen is None:
            item = app.ledger.item_by_reference(concern.reference)
            ours = item is not None and item.first_seen >= since
            if ours:
                seen = {f: ((STATUS_NEW if f == STATUS else ""), 0) for f in fields}
            else:
                seen = {f: (v, 0) for f, v in fields.items()}
            with app.ledger.transaction():
                db.executemany(
                    "INSERT INTO case_fields (reference, field, value, changes) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [(concern.reference, f, v, n) for f, (v, n) in seen.items()],
                )
        for field, value in fields.items():
            old, changes = seen.get(field, ("", 0))
            if _norm(old) == _norm(value):
                continue
            event, note = _describe(field, old, value)
            with app.ledger.transaction():
                chronology.record(
                    app, concern.reference, f"{field}|{changes + 1}", event,
                    by=BY, note=note, at=now,
                )  # fmt: skip
                db.execute(
                    "INSERT INTO case_fields (reference, field, value, changes) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT(reference, field) DO UPDATE SET "
                    "value = excluded.value, changes = excluded.changes",
                    (concern.reference, field, value, changes + 1),
                )
            recorded += 1
        if concern.decided and (ours or concern.reference in stored):
            db.execute(
                "UPDATE concern_watch SET decided_at = ? "
                "WHERE reference = ? AND decided_at IS NULL",
                (at, concern.reference),
            )
    if recorded:
        log.info("watch: %d change(s) in the DSP's columns recorded", recorded)
    return recorded


def _describe(field: str, old: str, new: str) -> tuple[str, str]:
    before, after = old or "(blank)", new or "(blank)"
    if field == STATUS:
        return "Status changed", f"{before} → {after}"
    if field == RISK:
        return "Risk level changed", f"{before} → {after}"
    if field == CLOSED_DATE:
        if not new:
            return "Closed date cleared", f"Was {old}"
        return "Closed", f"Closed date {new}" + (f" (was {old})" if old else "")
    if field in DATES:
        if not new:
            return "Referral date cleared", f"{field}: was {old}"
        return "Referral date filled", f"{field}: {new}" + (f" (was {old})" if old else "")
    return "Referral decision", f"{field}: {before} → {after}"
