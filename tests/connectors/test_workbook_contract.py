"""The Workbook contract, one test body per behaviour, run over every registered backend."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from connectors.base import CellUpdate, ColumnSpec, TableSpec
from service.errors import InputError, LockedError
from tests.connectors.harness import WorkbookHarness

HEADERS = ["Reference", "Recorded at", "Summary", "Status", "Source key"]
ROWS: list[list[object]] = [
    ["PRV-2026-0001", None, "First concern", "Open", "mail:a"],
    ["PRV-2026-0002", None, "Second concern", None, "mail:b"],
]


def as_date(value: Any) -> Any:
    """Graph gives dates as Excel serial numbers; the domain copes with both forms."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        moment = datetime(1899, 12, 30) + timedelta(days=value)
        return moment.date() if moment.time() == datetime.min.time() else moment
    return value


@pytest.fixture
def wb(workbook_harness: WorkbookHarness) -> WorkbookHarness:
    workbook_harness.create_table("Concerns", HEADERS, ROWS)
    return workbook_harness


def test_reads_a_table_by_header_name(wb: WorkbookHarness) -> None:
    table = wb.workbook.read_table("Concerns")

    assert list(table.headers) == HEADERS
    assert [r["Reference"] for r in table.rows] == ["PRV-2026-0001", "PRV-2026-0002"]
    assert table.rows[0]["Status"] == "Open"
    assert table.rows[1]["Status"] in (None, "")
    assert len(table.row_numbers) == 2


def test_table_names_match_without_case(wb: WorkbookHarness) -> None:
    assert len(wb.workbook.read_table("concerns").rows) == 2


def test_a_missing_table_is_named_in_the_error(wb: WorkbookHarness) -> None:
    with pytest.raises(InputError, match="Concerns") as info:
        wb.workbook.read_table("Referrals")
    assert "Referrals" in str(info.value)


def test_append_extends_the_table_and_keeps_other_cells(wb: WorkbookHarness) -> None:
    wb.workbook.append_rows(
        "Concerns",
        [
            {"Reference": "PRV-2026-0003", "Summary": "Third", "Source key": "mail:c"},
            {"reference": "PRV-2026-0004", "source  key": "form:7"},  # case/space-insensitive
        ],
    )

    table = wb.workbook.read_table("Concerns")

    assert [r["Reference"] for r in table.rows] == [f"PRV-2026-000{n}" for n in range(1, 5)]
    assert table.rows[0] == dict(zip(HEADERS, ROWS[0], strict=True)) | {"Recorded at": None}
    assert table.rows[2]["Summary"] == "Third"
    assert table.rows[2]["Status"] in (None, "")
    assert table.rows[3]["Source key"] == "form:7"
    assert len(set(table.row_numbers)) == 4


def test_append_to_an_unknown_column_is_refused(wb: WorkbookHarness) -> None:
    with pytest.raises(InputError, match="Colour"):
        wb.workbook.append_rows("Concerns", [{"Reference": "PRV-2026-0009", "Colour": "red"}])

    assert len(wb.workbook.read_table("Concerns").rows) == 2


HOSTILE = [
    '=HYPERLINK("http://example.org/x","click")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)",
    "\t=1+1",
    "\r=1+1",
    "＝1+1",
    "#N/A",
    "0123",
]


def test_formula_text_stays_text(wb: WorkbookHarness) -> None:
    wb.workbook.append_rows(
        "Concerns",
        [{"Reference": f"PRV-2026-1{n:03d}", "Summary": t} for n, t in enumerate(HOSTILE)],
    )

    table = wb.workbook.read_table("Concerns")

    # Line breaks in a cell are LF in Excel (a bare CR does not survive the file format).
    expected = [t.replace("\r", "\n") for t in HOSTILE]
    assert [r["Summary"] for r in table.rows[2:]] == expected


def test_dates_and_times_round_trip(wb: WorkbookHarness) -> None:
    when = datetime(2026, 2, 2, 9, 30, 15)
    wb.workbook.append_rows(
        "Concerns",
        [
            {"Reference": "PRV-2026-0005", "Recorded at": when},
            {"Reference": "PRV-2026-0006", "Recorded at": date(2026, 3, 1)},
        ],
    )

    rows = wb.workbook.read_table("Concerns").rows

    assert as_date(rows[2]["Recorded at"]) == when
    assert as_date(rows[3]["Recorded at"]) in (date(2026, 3, 1), datetime(2026, 3, 1))


def test_overlong_text_is_cut_with_a_marker(wb: WorkbookHarness) -> None:
    wb.workbook.append_rows("Concerns", [{"Reference": "PRV-2026-0007", "Summary": "é" * 40_000}])

    summary = wb.workbook.read_table("Concerns").rows[2]["Summary"]

    assert 32_000 < len(summary) <= 32_767
    assert summary.startswith("éééé")
    assert "truncated" in summary[-120:]


def test_find_rows_by_key(wb: WorkbookHarness) -> None:
    table = wb.workbook.read_table("Concerns")

    found = wb.workbook.find_rows("Concerns", "Source key", ["mail:b", "mail:zz", "mail:a"])

    assert found == {"mail:a": table.row_numbers[0], "mail:b": table.row_numbers[1]}


def test_update_cells_fills_only_empty_cells(wb: WorkbookHarness) -> None:
    written = wb.workbook.update_cells(
        "Concerns",
        [
            CellUpdate("Status", "Closed", 0, {"Reference": "PRV-2026-0001"}),  # a person's value
            CellUpdate("Status", "New", 1, {"Reference": "PRV-2026-0002"}),  # empty: filled
        ],
    )

    rows = wb.workbook.read_table("Concerns").rows
    assert written == 1
    assert [r["Status"] for r in rows] == ["Open", "New"]


def test_update_cells_skips_rows_that_moved(wb: WorkbookHarness) -> None:
    # Someone sorted the table since it was read: row 0 is no longer PRV-2026-0002.
    written = wb.workbook.update_cells(
        "Concerns", [CellUpdate("Status", "New", 0, {"Reference": "PRV-2026-0002"})]
    )

    rows = wb.workbook.read_table("Concerns").rows
    assert written == 0
    assert [r["Status"] for r in rows][1] in (None, "")


def test_update_cells_overwrite_replaces_a_service_cell_but_keeps_the_row_guard(
    wb: WorkbookHarness,
) -> None:
    written = wb.workbook.update_cells(
        "Concerns",
        [
            # A service-owned cell already holding a date: replaced.
            CellUpdate("Recorded at", date(2026, 11, 25), 0, {"Reference": "PRV-2026-0001"}),
        ],
    )
    assert written == 1
    written = wb.workbook.update_cells(
        "Concerns",
        [
            CellUpdate(
                "Recorded at", date(2026, 12, 2), 0, {"Reference": "PRV-2026-0001"}, overwrite=True
            ),
            # The guard still applies: row 1 is not PRV-2026-0001 (sorted since the read).
            CellUpdate("Status", "Closed", 1, {"Reference": "PRV-2026-0001"}, overwrite=True),
        ],
    )

    rows = wb.workbook.read_table("Concerns").rows
    assert written == 1
    assert as_date(rows[0]["Recorded at"]) == date(2026, 12, 2)
    assert [r["Status"] for r in rows][1] in (None, "")
    assert rows[0]["Status"] == "Open"  # other cells untouched
    # The same value again is not a write.
    again = CellUpdate(
        "Recorded at", date(2026, 12, 2), 0, {"Reference": "PRV-2026-0001"}, overwrite=True
    )
    assert wb.workbook.update_cells("Concerns", [again]) == 0


def test_locked_workbook_refuses_writes_and_writes_nothing(wb: WorkbookHarness) -> None:
    wb.lock()

    assert wb.workbook.writable() is not None
    with pytest.raises(LockedError):
        wb.workbook.append_rows("Concerns", [{"Reference": "PRV-2026-0008"}])
    with pytest.raises(LockedError):
        wb.workbook.update_cells("Concerns", [CellUpdate("Status", "New", 1, {})])

    wb.unlock()
    table = wb.workbook.read_table("Concerns")
    assert [r["Reference"] for r in table.rows] == ["PRV-2026-0001", "PRV-2026-0002"]
    assert table.rows[1]["Status"] in (None, "")


def test_after_unlock_writes_go_through(wb: WorkbookHarness) -> None:
    wb.lock()
    with pytest.raises(LockedError):
        wb.workbook.append_rows("Concerns", [{"Reference": "PRV-2026-0008"}])
    wb.unlock()

    assert wb.workbook.writable() is None
    wb.workbook.append_rows("Concerns", [{"Reference": "PRV-2026-0008"}])

    assert wb.workbook.read_table("Concerns").rows[-1]["Reference"] == "PRV-2026-0008"


CHRONOLOGY = TableSpec(
    sheet="Chronology",
    table="Chronology",
    columns=(
        ColumnSpec("Reference", "text", width=16),
        ColumnSpec("When", "datetime", width=17),
        ColumnSpec("Event", "text", width=22),
        ColumnSpec("Service key", "hidden", width=12),
    ),
)


def test_ensure_table_adds_a_missing_table_once_and_leaves_others(wb: WorkbookHarness) -> None:
    assert wb.workbook.ensure_table(CHRONOLOGY) is True
    assert wb.workbook.ensure_table(CHRONOLOGY) is False  # there now: nothing done

    added = wb.workbook.read_table("Chronology")
    assert list(added.headers) == ["Reference", "When", "Event", "Service key"]
    assert added.rows == ()
    wb.workbook.append_rows(
        "Chronology",
        [{"Reference": "PRV-2026-0001", "Event": "Reported", "Service key": "k1"}],
        key_column="Service key",
    )
    assert wb.workbook.find_rows("Chronology", "Service key", ["k1"]) != {}
    # The table that was there is as it was: same columns, same rows.
    concerns = wb.workbook.read_table("Concerns")
    assert list(concerns.headers) == HEADERS
    assert [r["Reference"] for r in concerns.rows] == ["PRV-2026-0001", "PRV-2026-0002"]


def test_ensure_table_leaves_an_existing_table_of_that_name_alone(wb: WorkbookHarness) -> None:
    # A person's own "Chronology" with their columns in their order: never reshaped.
    wb.create_table("Chronology", ["Event", "Reference", "Mine"], [["Call", "PRV-1", "x"]])

    assert wb.workbook.ensure_table(CHRONOLOGY) is False

    table = wb.workbook.read_table("Chronology")
    assert list(table.headers) == ["Event", "Reference", "Mine"]
    assert [r["Mine"] for r in table.rows] == ["x"]


def test_ensure_table_waits_while_the_workbook_is_locked(wb: WorkbookHarness) -> None:
    wb.lock()
    with pytest.raises(LockedError):
        wb.workbook.ensure_table(CHRONOLOGY)
    wb.unlock()
    with pytest.raises(InputError):
        wb.workbook.read_table("Chronology")  # nothing half-made
    assert wb.workbook.ensure_table(CHRONOLOGY) is True
