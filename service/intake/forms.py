"""Reading the Microsoft Forms responses workbook.

Forms writes one row per response to an Excel table: ``ID``, ``Start time``,
``Completion time``, ``Email``, ``Name``, optionally ``Last modified time``, then one column
per question headed with the question's text (m365-notes.md §8). Columns are matched by header
name, never by position. ``ID`` is the key and the watermark. Which question feeds which
register field is config (``[intake.forms.columns]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from connectors.base import ColumnSpec, Table, TableSpec
from service.config import DEFAULT_FORM_COLUMNS
from service.errors import InputError
from service.indicators import form_choices
from service.values import as_datetime, as_int, as_text, from_excel_serial, sheet_row

FIXED_COLUMNS = ("ID", "Start time", "Completion time", "Email", "Name")
ANONYMOUS = {"", "anonymous"}


@dataclass(frozen=True)
class FormResponse:
    response_id: int
    row_number: int
    completed_at: datetime | None
    email: str | None  # None when anonymous
    name: str
    answers: dict[str, str]  # register field → answer text
    # "Last modified time", on forms whose respondents may edit after submitting.
    modified_at: datetime | None = None


# Typographic quotes (a phone's keyboard, text pasted from Word) read as plain ones.
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def _normalise(header: str) -> str:
    return " ".join(header.replace("\u00a0", " ").translate(_QUOTES).split()).casefold()


def column_map(table: Table, columns: dict[str, str], *, where: str) -> dict[str, str]:
    """Field → actual header in the table. An error names the missing column and the field."""
    by_norm = {_normalise(h): h for h in table.headers}
    missing_fixed = [c for c in ("ID",) if _normalise(c) not in by_norm]
    if missing_fixed:
        raise InputError(
            f"{where}: the column 'ID' is missing; this does not look like a Microsoft Forms "
            f"responses table (columns: {', '.join(table.headers) or 'none'})"
        )
    found: dict[str, str] = {}
    for field_name, question in columns.items():
        header = by_norm.get(_normalise(question))
        if header is None:
            raise InputError(
                f"{where}: question column {question!r} (mapped to field {field_name!r} in "
                f"[intake.forms.columns]) is not in the table; if the question was renamed in "
                f"the Form, put its new text in the config. Columns are: "
                f"{', '.join(h for h in table.headers if h not in FIXED_COLUMNS)}"
            )
        found[field_name] = header
    return found


def new_responses(
    table: Table, columns: dict[str, str], *, tz: ZoneInfo, where: str
) -> list[FormResponse]:
    """Every response in the table, oldest first, with answers by register field."""
    mapping = column_map(table, columns, where=where)
    by_norm = {_normalise(h): h for h in table.headers}
    responses = []
    seen: set[int] = set()
    for index, row in enumerate(table.rows):
        number = sheet_row(table, index)
        response_id = as_int(row.get(by_norm["id"]))
        if response_id is None:
            if all(v in (None, "") for v in row.values()):
                continue  # an empty row inside the table
            raise InputError(f"{where}, row {number}: 'ID' is not a whole number")
        if response_id in seen:
            continue  # Forms never repeats an ID; a pasted copy must not make two concerns
        seen.add(response_id)
        email = as_text(row.get(by_norm.get("email", ""), ""))
        name = as_text(row.get(by_norm.get("name", ""), ""))
        completed = row.get(by_norm.get("completion time", ""))
        responses.append(
            FormResponse(
                response_id=response_id,
                row_number=number,
                completed_at=as_datetime(completed, tz),
                modified_at=as_datetime(row.get(by_norm.get("last modified time", "")), tz),
                email=None if email.casefold() in ANONYMOUS or "@" not in email else email,
                name="" if name.casefold() in ANONYMOUS else name,
                answers={f: _answer(row.get(h), tz, f) for f, h in mapping.items()},
            )
        )
    responses.sort(key=lambda r: r.response_id)
    return responses


# Fields a Form may ask with a Date question. Graph's ``values`` gives a date cell as its
# Excel serial number (46350 is 24/11/2026); openpyxl gives a datetime. A number this large
# is no age, so in these fields it is read as a date.
DATE_FIELDS = frozenset({"occurred_at", "dob_or_age"})
_SMALLEST_DATE_SERIAL = 3000  # 18/03/1908


def _answer(value: Any, tz: ZoneInfo, field_name: str = "") -> str:
    if (
        field_name in DATE_FIELDS
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and _SMALLEST_DATE_SERIAL <= value < 2958466
    ):
        value = from_excel_serial(round(value * 1440) / 1440)  # to the minute
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.strftime("%d/%m/%Y")
    if isinstance(value, datetime):
        return (
            value.strftime("%d/%m/%Y %H:%M")
            if (value.hour or value.minute)
            else value.strftime("%d/%m/%Y")
        )
    return as_text(value)


# Answers written in the reporter's own words, scanned for indicators like an e-mail's text.
# Names, references, dates and the area are not: they are no account of what happened.
FREE_TEXT_FIELDS = ("account", "immediate_action", "immediate_danger", "others_told")


def free_text(answers: dict[str, str], unknown_options: list[str] | tuple[str, ...] = ()) -> str:
    """The free-text answers (and any "Other" typed under the indicators question), one
    paragraph each so that no phrase is read across two answers."""
    parts = [answers.get(name, "") for name in FREE_TEXT_FIELDS]
    parts += list(unknown_options)
    return "\n\n".join(part for part in parts if part and part.strip())


def forms_table_spec(
    rows: tuple[tuple[Any, ...], ...] = (), columns: dict[str, str] | None = None
) -> TableSpec:
    """The layout of a Forms responses workbook (sheet ``Form1``, table ``Table1``) — what
    Forms makes for a group form with the recommended questions; used by ``init``."""
    questions = columns or DEFAULT_FORM_COLUMNS
    specs = [
        ColumnSpec("ID", "number", width=6),
        ColumnSpec("Start time", "datetime", width=17),
        ColumnSpec("Completion time", "datetime", width=17),
        ColumnSpec("Email", "text", width=24),
        ColumnSpec("Name", "text", width=20),
    ]
    specs += [ColumnSpec(q, "long_text", width=30) for q in questions.values()]
    return TableSpec(sheet="Form1", table="Table1", columns=tuple(specs), rows=rows)


def indicator_question_help() -> str:
    """The options to give the Form's multi-select indicators question, one per line."""
    return "\n".join(form_choices())
