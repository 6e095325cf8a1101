"""register.dated_rows: the one walk over the register's rows that the escalation check and
the board report share (each had its own copy)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from connectors.memory import MemoryWorkbook
from service.cases import escalation
from service.cases.register import RECORDED_AT, REFERENCE, STATUS, dated_rows

LONDON = ZoneInfo("Europe/London")
HEADERS = [REFERENCE, RECORDED_AT, STATUS, "Summary"]


def table() -> MemoryWorkbook:
    wb = MemoryWorkbook(tz=LONDON)
    wb.add_table(
        "Concerns",
        HEADERS,
        [
            ["PRV-2026-0001", datetime(2026, 7, 1, 9, 0), "New", "Summer"],  # naive: local time
            [None, None, None, "a note someone typed below a row"],
            ["PRV-2026-0002", "not a time", "New", "Typed over"],
            ["  PRV-2026-0003 ", "15/11/2026 14:05", "Open", "Typed as text"],
            ["", "", "", ""],
        ],
    )
    return wb


def test_rows_with_a_reference_come_back_dated_and_the_unreadable_by_sheet_row() -> None:
    rows, unreadable = dated_rows(table().read_table("Concerns"), LONDON)

    assert [r.reference for r in rows] == ["PRV-2026-0001", "PRV-2026-0003"]
    # British Summer Time: 09:00 in London is 08:00 UTC; the text date is read day first.
    assert rows[0].recorded_at == datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    assert rows[1].recorded_at == datetime(2026, 11, 15, 14, 5, tzinfo=UTC)
    assert rows[1].cells["Summary"] == "Typed as text"  # the whole row, for the caller's columns
    assert unreadable == [4]  # the header is row 1: PRV-2026-0002 is on sheet row 4


def test_the_escalation_check_reads_the_register_through_it() -> None:
    from tests.service.cases.test_escalation import app_at

    app, _clock, _sender = app_at(table(), datetime(2026, 11, 23, 8, 0))
    concerns, unreadable = escalation.read_concerns(app)
    assert [(c.reference, c.status) for c in concerns] == [
        ("PRV-2026-0001", "New"),
        ("PRV-2026-0003", "Open"),
    ]
    assert unreadable == [4]
