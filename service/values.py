"""Turning workbook cell values into the domain's types, whatever backend read them.

openpyxl gives ``datetime`` for date cells; Graph gives Excel serial numbers (days since
1899-12-30) and strings. People type anything.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from connectors.base import Table

EXCEL_EPOCH = datetime(1899, 12, 30)


def sheet_row(table: Table, index: int) -> int:
    """The 1-based sheet row of ``table.rows[index]``, for messages that name it; a backend
    that gives no row numbers has the header on row 1."""
    return table.row_numbers[index] if index < len(table.row_numbers) else index + 2


def from_excel_serial(value: float) -> datetime:
    return EXCEL_EPOCH + timedelta(days=float(value))


def as_text(value: Any) -> str:
    """Cell → trimmed text; numbers without a spurious ``.0``; dates as ISO."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return (
            value.strftime("%Y-%m-%d %H:%M")
            if (value.hour or value.minute)
            else value.date().isoformat()
        )
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def as_datetime(value: Any, tz: ZoneInfo) -> datetime | None:
    """A cell that should hold a date-time → aware datetime (naive values are in ``tz``)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, date):
        result = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not 1 <= float(value) < 2958466:  # Excel's valid serial range
            return None
        result = from_excel_serial(value)
    elif isinstance(value, str):
        parsed = _parse_text(value.strip())
        if parsed is None:
            return None
        result = parsed
    else:
        return None
    if result.tzinfo is None:
        result = result.replace(tzinfo=tz)
    return result.astimezone(UTC)


_TEXT_FORMATS = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y")


def _parse_text(text: str) -> datetime | None:
    """ISO 8601 in any form Python reads ("2026-07-31 23:30:00+00:00", "…T23:30:00.123Z",
    "…T23:30", "2026-07-31"), or a UK day-first date with or without a time."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for fmt in _TEXT_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
