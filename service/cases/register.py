"""The concern register's layout: which columns the service owns and which the DSP owns.

The service writes its columns once, at intake, and never rewrites a row. The DSP's columns
follow what Keeping Children Safe in Education asks of a record (decision and rationale,
referrals with dates, parent/carer informed, actions, outcome, review). ``Source key`` is
hidden; it makes appends idempotent (an append after an unclear failure reads it back first).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from connectors.base import ColumnSpec, OptionalColumn, Table, TableSpec
from service.model import Concern
from service.values import as_datetime, as_text, from_excel_serial, sheet_row

STATUS_NEW = "New"
STATUS_CHOICES = (
    STATUS_NEW,
    "Acknowledged",
    "In progress",
    "Referred",
    "Monitoring",
    "Closed – no further action",
    "Closed",
)
CLOSED_STATUSES = ("Closed – no further action", "Closed")
RISK_CHOICES = ("Not yet assessed", "Low", "Medium", "High")
YES_NO = ("Yes", "No", "Not applicable")
REFERRAL_CHOICES = ("Not referred", "Referred", "Decided not to refer", "Not applicable")

SOURCE_KEY = "Source key"
REFERENCE = "Reference"
STATUS = "Status"
RECORDED_AT = "Recorded at"
RECEIVED_AT = "Received at"
RETENTION_REVIEW = "Retention review"
DOB_OR_AGE = "DOB or age"
CLOSED_DATE = "Closed date"
RETENTION_YEARS = 25  # IRMS / DfE toolkit: child-protection records to DOB + 25 years, then review

# Service-owned columns: header → Concern attribute (or a conversion of it, see register_row).
# "Received at" is when the concern reached the service (the mailbox's received time, the
# form's completion time); "Recorded at" when the service logged it; "Occurred at" is only
# ever the reporter's own words (a form's answer), never an e-mail's Date header.
SERVICE_COLUMNS: tuple[tuple[ColumnSpec, str], ...] = (
    (ColumnSpec(REFERENCE, "text", width=15), "reference"),
    (ColumnSpec(RECEIVED_AT, "datetime", width=16), "received_at"),
    (ColumnSpec("Source", "text", width=9), "source"),
    (ColumnSpec("Summary", "long_text", width=34), "summary"),
    (ColumnSpec("Critical risk factor", "text", width=14), "critical_text"),
    (ColumnSpec("Anyone in immediate danger", "text", width=14), "immediate_danger"),
    (ColumnSpec("Person of concern", "text", width=16), "person_of_concern"),
    (ColumnSpec("Learner ref", "text", width=10), "learner_ref"),
    (ColumnSpec(DOB_OR_AGE, "text", width=11), "dob_or_age"),
    (ColumnSpec("Centre/area", "text", width=22), "area"),
    (ColumnSpec("Occurred at", "datetime", width=15), "occurred_at"),
    (ColumnSpec("Reported by", "text", width=18), "reported_by"),
    (ColumnSpec("Reporter email", "text", width=24), "reporter_email"),
    (ColumnSpec("Others told", "text", width=18), "others_told"),
    (ColumnSpec("Attachments", "text", width=20), "attachments_text"),
    (ColumnSpec("Link to original", "text", width=24), "link"),
    (ColumnSpec(RECORDED_AT, "datetime", width=15), "recorded_at"),
    (ColumnSpec("Risk indicators", "long_text", width=44), "indicators_text"),
    (ColumnSpec("Account", "long_text", width=60), "account"),
    (ColumnSpec("Immediate action taken", "long_text", width=34), "immediate_action"),
)

# DSP-owned columns: the service leaves them empty and never writes them.
DSP_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec(STATUS, "choice", STATUS_CHOICES, width=15, owner="person"),
    ColumnSpec("Risk level", "choice", RISK_CHOICES, width=12, owner="person"),
    ColumnSpec("Decision and rationale", "long_text", width=34, owner="person"),
    ColumnSpec("Prevent referral (NRF)", "choice", REFERRAL_CHOICES, width=13, owner="person"),
    ColumnSpec("NRF date", "date", width=11, owner="person"),
    ColumnSpec("Channel", "choice", REFERRAL_CHOICES, width=13, owner="person"),
    ColumnSpec("Channel date", "date", width=11, owner="person"),
    ColumnSpec("Police", "choice", REFERRAL_CHOICES, width=13, owner="person"),
    ColumnSpec("Police date", "date", width=11, owner="person"),
    ColumnSpec("Children's social care", "choice", REFERRAL_CHOICES, width=13, owner="person"),
    ColumnSpec("Social care date", "date", width=11, owner="person"),
    ColumnSpec("Parent/carer informed", "choice", YES_NO, width=15, owner="person"),
    ColumnSpec("Actions (owner, due)", "long_text", width=30, owner="person"),
    ColumnSpec("Outcome", "long_text", width=26, owner="person"),
    ColumnSpec(CLOSED_DATE, "date", width=11, owner="person"),
    ColumnSpec("Review date", "date", width=11, owner="person"),
    # A calculated column (see retention_formula): Excel fills it in every new row.
    ColumnSpec(RETENTION_REVIEW, "date", width=12, owner="person"),
)

HIDDEN_COLUMNS: tuple[ColumnSpec, ...] = (ColumnSpec(SOURCE_KEY, "hidden", width=30),)

_SERVICE = {spec.header: spec for spec, _ in SERVICE_COLUMNS}
_SHORT_SERVICE = [spec for spec, _ in SERVICE_COLUMNS[2:] if spec.kind != "long_text"]
_LONG_SERVICE = [spec for spec, _ in SERVICE_COLUMNS[2:] if spec.kind == "long_text"]

# A new register's order (design.md flow 2): Reference and Received at, then the DSP's working
# columns, then the service's short fields, then its long text; the hidden key last. Summary
# (the subject line, 500 characters at most) sits with the short fields so that a concern is
# recognisable on the first screen. Existing registers keep their order: every reader finds a
# column by its header.
REGISTER_COLUMNS: tuple[ColumnSpec, ...] = (
    _SERVICE[REFERENCE],
    _SERVICE[RECEIVED_AT],
    *DSP_COLUMNS,
    _SERVICE["Summary"],
    *(s for s in _SHORT_SERVICE if s.header != "Summary"),
    *(s for s in _LONG_SERVICE if s.header != "Summary"),
    *HIDDEN_COLUMNS,
)

# Reference, Received at and Status stay in view when the DSP scrolls right or down.
FREEZE_AFTER = STATUS


def freeze_cell(columns: tuple[ColumnSpec, ...] = REGISTER_COLUMNS) -> str:
    """The top-left cell that is not frozen: below the header, right of ``FREEZE_AFTER``."""
    index = [c.header for c in columns].index(FREEZE_AFTER)
    return f"{_column_letter(index + 2)}2"


def _column_letter(n: int) -> str:
    letters = ""
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def retention_formula(table: str) -> str:
    """ "Retention review" as an Excel calculated column: the date of birth + 25 years when
    "DOB or age" holds a date, else the closed date + 25 years, else empty.

    A formula rather than a value the service writes: it follows the DSP's own edits (a
    closed date typed months later, a corrected date of birth) at once, needs no write-back
    and no extra column on older registers. EDATE and structured references calculate in
    Excel (desktop and web) and LibreOffice; a number below 3000 (a date before 1908) is an
    age, not a date of birth."""
    dob = f"{table}[[#This Row],[{DOB_OR_AGE}]]"
    closed = f"{table}[[#This Row],[{CLOSED_DATE}]]"
    months = RETENTION_YEARS * 12
    return (
        f"IF(AND(ISNUMBER({dob}),{dob}>=3000),EDATE({dob},{months}),"
        f'IF(ISNUMBER({closed}),EDATE({closed},{months}),""))'
    )


def retention_review(dob_or_age: Any, closed: Any) -> date | None:
    """What ``retention_formula`` calculates, for readers that get the formula, not its value
    (openpyxl reads a file the service wrote without cached values): the date of birth + 25
    years when "DOB or age" holds a date, else the closed date + 25 years, else None."""
    for value in (dob_or_age, closed):
        day = _as_date(value)
        if day is not None:
            try:
                return day.replace(year=day.year + RETENTION_YEARS)
            except ValueError:  # 29 February + 25 years: EDATE gives 28 February
                return day.replace(year=day.year + RETENTION_YEARS, day=28)
    return None


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    # Excel serials, as Graph reads dates; below 3000 (a date before 1908) is an age, as in
    # the formula.
    if isinstance(value, int | float) and not isinstance(value, bool) and 3000 <= value < 2958466:
        return from_excel_serial(int(value)).date()
    return None


def register_table_spec(
    table: str = "Concerns", rows: tuple[tuple[Any, ...], ...] = ()
) -> TableSpec:
    columns = tuple(
        replace(c, formula=retention_formula(table)) if c.header == RETENTION_REVIEW else c
        for c in REGISTER_COLUMNS
    )
    return TableSpec(
        sheet="Register",
        table=table,
        columns=columns,
        rows=rows,
        freeze=freeze_cell(columns),
        row_height=ROW_HEIGHT,
        header_height=HEADER_HEIGHT,
    )


# The register is the DSP's working list, so its data rows are a fixed three lines high: a
# screen shows a dozen concerns, not three (grown to its Account, a row was often a whole
# screen of white space beside its short first columns). The whole text is in the cell (the
# formula bar), in `prevent-service case`, and prints whole after Excel's AutoFit Row Height.
# 39 points is exactly three lines of 11-point Calibri/Carlito as LibreOffice draws them: it
# clips only whole lines, so one point more and it prints a fourth line over the row below.
# The Chronology and the compliance tables, short rows that are read on paper, grow instead
# (connectors.xlsx_rows). The header has room for three lines.
ROW_HEIGHT = 39.0
HEADER_HEIGHT = 44.0

# Columns a register made by an earlier version may not have: the service leaves them out
# there (Retention review is the workbook's own formula), and ``check`` does not ask for them.
OPTIONAL_COLUMNS = frozenset({RECEIVED_AT, RETENTION_REVIEW})

_DATE_TEXT = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:[ ,T]+(\d{1,2}):(\d{2}))?$")


def as_cell_date(text: str) -> str | date | datetime:
    """A date a form gave (``24/11/2026`` or ``24/11/2026 14:00``, as Forms' Date questions
    arrive) → a real date cell; anything else the reporter typed stays as they typed it."""
    match = _DATE_TEXT.match(text.strip())
    if not match:
        return text
    day, month, year, hour, minute = match.groups()
    try:
        if hour is None:
            return date(int(year), int(month), int(day))
        return datetime(int(year), int(month), int(day), int(hour), int(minute))
    except ValueError:
        return text


def register_row(concern: Concern) -> dict[str, Any]:
    """The service-owned cells of a new row (header → value); DSP columns start empty,
    except Status, which starts as ``New`` so that escalation can see it. Optional columns
    are keyed ``OptionalColumn`` (left out where an older register lacks them)."""
    row: dict[str, Any] = {}
    for spec, attr in SERVICE_COLUMNS:
        value = getattr(concern, attr)
        if spec.header in ("Occurred at", DOB_OR_AGE) and isinstance(value, str):
            value = as_cell_date(value)
        key = OptionalColumn(spec.header) if spec.header in OPTIONAL_COLUMNS else spec.header
        row[key] = value
    row[STATUS] = STATUS_NEW
    row[SOURCE_KEY] = concern.source_key
    return row


@dataclass(frozen=True)
class DatedRow:
    """A concern's register row, as the escalation check and the board report read it."""

    reference: str
    recorded_at: datetime  # aware
    cells: Mapping[str, Any]


def dated_rows(table: Table, tz: ZoneInfo) -> tuple[list[DatedRow], list[int]]:
    """The register's concern rows in sheet order, each with its "Recorded at" read as an aware
    date-time (naive cells are in ``tz``), and the sheet row numbers of rows whose "Recorded
    at" cannot be read (reported, never guessed). Rows without a Reference (blank, or a note
    someone typed below the table) are not concerns and are left out of both."""
    rows: list[DatedRow] = []
    unreadable: list[int] = []
    for i, row in enumerate(table.rows):
        reference = as_text(row.get(REFERENCE))
        if not reference:
            continue
        recorded = as_datetime(row.get(RECORDED_AT), tz)
        if recorded is None:
            unreadable.append(sheet_row(table, i))
            continue
        rows.append(DatedRow(reference, recorded, row))
    return rows, unreadable
