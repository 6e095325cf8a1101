"""A new register a DSP can work in (issue 8): column order, frozen panes, widths and heights,
real date cells, drop-downs, the retention formula, print settings — read back from the files
``init`` and ``poll`` write, with openpyxl. Registers of the earlier layout keep working."""

from __future__ import annotations

import textwrap
from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet

from connectors.base import ColumnSpec, TableSpec
from connectors.xlsx import DATE_FORMAT, DATETIME_FORMAT, XlsxWorkbook, create_workbook
from connectors.xlsx_rows import lines_of
from service.admin.setup import init_folder
from service.app import App
from service.cases.register import (
    DSP_COLUMNS,
    REGISTER_COLUMNS,
    RETENTION_REVIEW,
    SERVICE_COLUMNS,
    as_cell_date,
    register_table_spec,
    retention_formula,
)
from service.config import load_config
from service.intake.pipeline import CycleResult, poll
from tests.cli.helpers import outbox_messages, register_rows

TODAY = date(2026, 11, 24)
HEADERS = [c.header for c in REGISTER_COLUMNS]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo after one poll: three e-mails and two form responses in the register."""
    folder = init_folder(tmp_path_factory.mktemp("demo") / "demo", demo=True, today=TODAY)
    run(folder)
    return folder


def run(folder: Path) -> CycleResult:
    app = App(load_config(folder / "config.toml"))
    try:
        return poll(app)
    finally:
        app.close()


def sheet_of(path: Path) -> Worksheet:
    return load_workbook(path)["Register"]


def test_reference_and_received_first_then_the_dsps_working_columns() -> None:
    assert HEADERS[:7] == [
        "Reference",
        "Received at",
        "Status",
        "Risk level",
        "Decision and rationale",
        "Prevent referral (NRF)",
        "NRF date",
    ]
    dsp = [c.header for c in DSP_COLUMNS]
    assert HEADERS[2 : 2 + len(dsp)] == dsp  # the DSP's columns together


def test_long_text_last_and_the_hidden_key_at_the_very_end() -> None:
    kinds = [c.kind for c in REGISTER_COLUMNS]
    assert kinds[-1] == "hidden"
    service_long = [
        c.header
        for c, _ in SERVICE_COLUMNS
        if c.kind == "long_text" and c.header != "Summary"  # the subject line: kept in view
    ]
    assert HEADERS[-1 - len(service_long) : -1] == service_long
    assert set(HEADERS) == {c.header for c, _ in SERVICE_COLUMNS} | {
        c.header for c in DSP_COLUMNS
    } | {"Source key"}


def test_every_header_fits_its_column_in_three_lines() -> None:
    """Bold header text, wrapped at the column's width less the filter button (about three
    characters), fits the 44-point header row (three lines): nothing clipped."""
    spec = register_table_spec()
    assert spec.header_height is not None and spec.header_height >= 3 * 14
    for col in spec.columns:
        if col.kind == "hidden":
            continue
        assert col.width is not None
        room = int(col.width) - 3
        lines = textwrap.wrap(col.header, room, break_long_words=False)
        assert len(lines) <= 3 and max(len(line) for line in lines) <= room, col.header


def test_init_lays_out_panes_heights_widths_drop_downs_and_print(demo: Path) -> None:
    ws = sheet_of(demo / "workbooks" / "concern-register.xlsx")
    assert [c.value for c in ws[1]] == HEADERS
    # Reference, Received at and Status stay in view scrolling right and down.
    assert ws.freeze_panes == "D2"
    assert HEADERS.index("Status") == 2
    # Rows are a fixed three lines (a screen shows a dozen concerns): no row the service
    # wrote is taller, however long its Account.
    assert ws.sheet_format.defaultRowHeight == 39 and ws.sheet_format.customHeight
    account = letter("Account")
    assert (
        max(
            lines_of(ws[f"{account}{r}"].value, ws.column_dimensions[account].width)
            for r in range(2, 7)
        )
        > 3
    )  # the demo has Accounts longer than three lines
    assert all(ws.row_dimensions[r].height in (None, 39) for r in range(2, 7))
    assert ws.row_dimensions[1].height == 44
    assert ws.column_dimensions["A"].width == 15
    assert ws.column_dimensions["E"].width == 34  # Decision and rationale
    assert ws.column_dimensions[letter("Source key")].hidden
    # Every data cell wraps inside its cell, at the top (no text running over its neighbours).
    for row in ws.iter_rows(min_row=2, max_row=6, max_col=len(HEADERS) - 1):
        for cell in row:
            assert cell.alignment.wrap_text and cell.alignment.vertical == "top", cell.coordinate
    # The drop-downs cover the rows the service added and far below.
    lists = {
        str(dv.sqref): dv.formula1 for dv in ws.data_validations.dataValidation if dv.type == "list"
    }
    for header in ("Status", "Risk level", "Prevent referral (NRF)", "Parent/carer informed"):
        col = letter(header)
        covering = [s for s in lists if s.startswith(f"{col}2:")]
        assert covering, header
        assert int(covering[0].split(":")[1][len(col) :]) > 2000
    assert '"New,' in lists[next(s for s in lists if s.startswith("C2:"))]
    # Printing: landscape, the header row and the frozen columns on every page.
    assert ws.page_setup.orientation == "landscape"
    assert ws.print_title_rows == "$1:$1"
    assert ws.print_title_cols == "$A:$C"
    # Scaled to four pages across (37 columns stay readable), printed across then down.
    assert ws.sheet_properties.pageSetUpPr.fitToPage
    assert (ws.page_setup.fitToWidth, ws.page_setup.fitToHeight) == (4, 0)
    assert ws.page_setup.pageOrder == "overThenDown"


def letter(header: str) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(HEADERS.index(header) + 1)


def test_dates_are_real_date_cells(demo: Path) -> None:
    ws = sheet_of(demo / "workbooks" / "concern-register.xlsx")
    rows = {r["Reference"]: r for r in register_rows(demo / "workbooks" / "concern-register.xlsx")}
    assert len(rows) == 5
    for row in rows.values():
        assert isinstance(row["Received at"], datetime)
        assert isinstance(row["Recorded at"], datetime)
    by_source = {s: [r for r in rows.values() if r["Source"] == s] for s in ("E-mail", "Form")}
    # E-mail: never the Date header; the reporter's or DSP's own words go there.
    assert all(r["Occurred at"] is None for r in by_source["E-mail"])
    # Forms: what the form gave, as a date-time or a date.
    occurred = sorted(
        (r["Occurred at"] for r in by_source["Form"]), key=lambda v: (type(v).__name__, str(v))
    )
    assert isinstance(occurred[0], datetime) and occurred[0].hour == 14
    assert occurred[1] == datetime(2026, 11, 24)  # a date alone (openpyxl reads a datetime)
    received = {r["Source"]: r["Received at"] for r in rows.values()}
    assert received["Form"] < received["E-mail"]  # the form's completion time, a day before
    # Number formats: a date-time with its time, a date without "00:00".
    col = HEADERS.index("Occurred at") + 1
    formats = {
        ws.cell(r, col).value: ws.cell(r, col).number_format
        for r in range(2, 7)
        if ws.cell(r, col).value is not None
    }
    assert formats == {occurred[0]: DATETIME_FORMAT, occurred[1]: DATE_FORMAT}


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("24/11/2026", date(2026, 11, 24)),
        ("3/4/2008", date(2008, 4, 3)),
        ("24/11/2026 14:05", datetime(2026, 11, 24, 14, 5)),
        ("17", "17"),
        ("last Tuesday, after class", "last Tuesday, after class"),
        ("31/02/2026", "31/02/2026"),  # no such day: kept as typed
        ("", ""),
    ],
)
def test_a_forms_date_becomes_a_date_cell_and_words_stay_words(text: str, cell: object) -> None:
    assert as_cell_date(text) == cell


def test_area_is_suggested_from_the_text_and_the_alert_narrowed(demo: Path) -> None:
    rows = register_rows(demo / "workbooks" / "concern-register.xlsx")
    areas = sorted(str(r["Centre/area"]) for r in rows if r["Source"] == "E-mail")
    assert areas == [
        "Coventry (suggested from the e-mail text)",
        "Warwickshire (suggested from the e-mail text)",  # "at the Leamington centre"
        "Warwickshire (suggested from the e-mail text)",  # "at your Rugby centre"
    ]
    alerts = [m for m in outbox_messages(demo / "outbox") if "concern" in str(m["Subject"])]
    by_ref = {}
    for message in alerts:
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        for row in rows:
            if str(row["Reference"]) in str(message["Subject"]):
                by_ref[row["Reference"]] = (row, text)
    coventry = next(t for r, t in by_ref.values() if str(r["Centre/area"]).startswith("Cov"))
    assert "Coventry (suggested from the e-mail's wording):" in coventry
    assert "Warwickshire" not in coventry and "prevent.team@example.org" not in coventry


def test_retention_review_is_a_calculated_column_filled_into_each_new_row(demo: Path) -> None:
    book = load_workbook(demo / "workbooks" / "concern-register.xlsx")
    ws = book["Register"]
    table = ws.tables["Concerns"]
    column = table.tableColumns[HEADERS.index(RETENTION_REVIEW)]
    assert column.calculatedColumnFormula.attr_text == retention_formula("Concerns")
    col = HEADERS.index(RETENTION_REVIEW) + 1
    cells = [ws.cell(r, col) for r in range(2, 7)]
    assert all(c.data_type == "f" and c.value == "=" + retention_formula("Concerns") for c in cells)
    assert all("yy" in c.number_format for c in cells)


def test_retention_formula_reads_dob_then_closed_date() -> None:
    formula = retention_formula("Register2")
    assert "EDATE(Register2[[#This Row],[DOB or age]],300)" in formula
    assert "EDATE(Register2[[#This Row],[Closed date]],300)" in formula
    assert formula.index("DOB or age") < formula.index("Closed date")  # DOB wins
    assert ">=3000" in formula  # an age (17) is not a date of birth


OLD_LAYOUT = (  # the register as the previous version laid it out (no Received at, no formula)
    "Reference", "Recorded at", "Source", "Reported by", "Reporter email", "Person of concern",
    "Learner ref", "DOB or age", "Centre/area", "Occurred at", "Risk indicators",
    "Critical risk factor", "Summary", "Account", "Immediate action taken",
    "Anyone in immediate danger", "Others told", "Attachments", "Link to original", "Status",
    "Risk level", "Decision and rationale", "Closed date", "Source key",
)  # fmt: skip


def test_a_register_of_the_earlier_layout_takes_new_rows_by_header(tmp_path: Path) -> None:
    folder = init_folder(tmp_path / "svc", demo=True, today=TODAY)
    register = folder / "workbooks" / "concern-register.xlsx"
    register.unlink()
    old = TableSpec("Register", "Concerns", tuple(ColumnSpec(h) for h in OLD_LAYOUT))
    create_workbook(register, [old])
    result = run(folder)
    assert result.logged == 5 and not result.problems
    ws = sheet_of(register)
    assert [c.value for c in ws[1]] == list(OLD_LAYOUT)  # never reordered, nothing added
    assert ws.freeze_panes == "A2"
    rows = register_rows(register)
    assert len(rows) == 5 and all(r["Status"] == "New" for r in rows)
    assert all(isinstance(r["Recorded at"], datetime) for r in rows)


def test_the_memory_backend_also_leaves_out_a_column_the_table_lacks() -> None:
    from connectors.base import OptionalColumn
    from connectors.memory import MemoryWorkbook

    wb = MemoryWorkbook()
    wb.add_table("Concerns", ["Reference", "Source key"])
    wb.append_rows("Concerns", [{"Reference": "R1", OptionalColumn("Received at"): TODAY}])
    assert wb.read_table("Concerns").rows[0]["Reference"] == "R1"
    with pytest.raises(Exception, match="Received"):
        wb.append_rows("Concerns", [{"Reference": "R2", "Received at": TODAY}])


def test_xlsx_backend_fills_the_calculated_column_into_a_batch(tmp_path: Path) -> None:
    path = tmp_path / "r.xlsx"
    create_workbook(path, [register_table_spec()])
    wb = XlsxWorkbook(path)
    wb.append_rows(
        "Concerns",
        [{"Reference": f"PRV-2026-000{i}", "Source key": f"k{i}"} for i in range(1, 4)],
        key_column="Source key",
    )
    ws = sheet_of(path)
    col = HEADERS.index(RETENTION_REVIEW) + 1
    assert [ws.cell(r, col).value for r in (2, 3, 4)] == ["=" + retention_formula("Concerns")] * 3
    # The whole batch is styled like the first row (wrapped, at the top, date formats).
    for r in (2, 3, 4):
        assert ws.cell(r, 1).alignment.wrap_text
        assert "hh:mm" in ws.cell(r, 2).number_format


def test_an_emails_date_header_is_never_when_it_happened(tmp_path: Path) -> None:
    from tests.cli.helpers import alerts_in
    from tests.service.intake.test_hostile_input import drop

    folder = init_folder(tmp_path / "svc", demo=False, today=TODAY)
    config = folder / "config.toml"
    config.write_text(
        config.read_text().replace('alert_detail = "summary"', 'alert_detail = "full"')
    )
    drop(
        folder,
        "d.eml",
        b"From: Staff <staff@example.org>\r\nTo: safeguarding@example.org\r\n"
        b"Subject: A worry\r\nMessage-ID: <dated@example.org>\r\n"
        b"Date: Mon, 23 Nov 2026 08:15:00 +0000\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nSomething happened last week.\r\n",
    )
    run(folder)
    (row,) = register_rows(folder / "workbooks" / "concern-register.xlsx")
    assert row["Occurred at"] is None
    assert isinstance(row["Received at"], datetime)
    (alert,) = alerts_in(folder / "outbox")
    text = alert.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "When it happened:      Not stated – see the account" in text
    assert "23/11/2026 08:15" not in text


def test_check_accepts_a_register_without_the_new_columns() -> None:
    from service.admin.checks import _register_columns
    from service.cases.register import OPTIONAL_COLUMNS

    earlier = tuple(h for h in HEADERS if h not in OPTIONAL_COLUMNS)
    assert _register_columns(earlier) is None
    without_status = tuple(h for h in earlier if h != "Status")
    assert "Status" in str(_register_columns(without_status))


def test_the_other_sheets_init_lays_out_print_one_page_wide_with_rows_that_fit(
    demo: Path,
) -> None:
    """The Chronology and the compliance tables: landscape, scaled to one page across, every
    cell wrapped at the top and each row as tall as its longest wrapped text (nothing printed
    over the row below, nothing cut), dates as dd/mm/yyyy."""
    register = load_workbook(demo / "workbooks" / "concern-register.xlsx")
    compliance = load_workbook(demo / "workbooks" / "compliance.xlsx")
    sheets = [register["Chronology"], *compliance.worksheets]
    assert len(sheets) == 4
    tall = 0
    for ws in sheets:
        assert ws.page_setup.orientation == "landscape", ws.title
        assert ws.sheet_properties.pageSetUpPr.fitToPage, ws.title
        assert (ws.page_setup.fitToWidth, ws.page_setup.fitToHeight) == (1, 0), ws.title
        assert not ws.sheet_format.customHeight, ws.title
        for row in ws.iter_rows(min_row=2, max_row=ws.max_row):
            lines = 1
            for cell in row:
                dim = ws.column_dimensions[cell.column_letter]
                if isinstance(cell.value, str) and cell.data_type == "s" and not dim.hidden:
                    assert cell.alignment.wrap_text, (ws.title, cell.coordinate)
                    lines = max(lines, lines_of(cell.value, dim.width))
                if isinstance(cell.value, datetime):
                    assert cell.number_format in (DATE_FORMAT, DATETIME_FORMAT), cell.coordinate
            height = ws.row_dimensions[row[0].row].height
            assert (height or 15) >= 15 * lines, (ws.title, row[0].row)
            tall += lines > 1
    assert tall > 5  # the demo's long objectives and two-line notes were checked
