"""Streaming appends (connectors.xlsx_append): the same workbook as the openpyxl path, the same
safety rules, and files LibreOffice opens without repair."""

from __future__ import annotations

import csv
import shutil
import subprocess
import zipfile
import zlib
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl.formatting.rule import CellIsRule
from openpyxl.styles import PatternFill

import connectors.xlsx_append as append_mod
from connectors.base import ColumnSpec, TableSpec
from connectors.xlsx import XlsxWorkbook, create_workbook
from connectors.xlsx_append import crc32_combine
from service.errors import LockedError, PermanentError, TransientError

SPEC = TableSpec(
    sheet="Register",
    table="Concerns",
    columns=(
        ColumnSpec("Reference", width=16),
        ColumnSpec("Recorded at", kind="datetime"),
        ColumnSpec("Date of birth", kind="date"),
        ColumnSpec("Summary", kind="long_text"),
        ColumnSpec("Status", kind="choice", choices=("New", "Open", "Closed"), owner="person"),
        ColumnSpec("Count"),
        ColumnSpec("Source key", kind="hidden"),
        # A calculated column, as the register's Retention review: new rows get the formula.
        ColumnSpec("Review", kind="date", formula='IF(ISNUMBER([@Count]),[@Count]+1,"")'),
    ),
    rows=(
        ("PRV-2026-0001", datetime(2026, 1, 5, 10, 0), None, "First", "Open", 3, "mail:a", None),
        ("PRV-2026-0002", None, date(2001, 2, 3), "=not a formula", None, None, "mail:b", None),
    ),
)
HEADERS = [c.header for c in SPEC.columns]


def make(path: Path, *, rows: bool = True, formatting: bool = True) -> Path:
    spec = SPEC if rows else TableSpec(SPEC.sheet, SPEC.table, SPEC.columns)
    create_workbook(path, [spec])
    if formatting:  # a person's rule on the Status column, and one elsewhere
        book = openpyxl.load_workbook(path)
        red = PatternFill(start_color="FFC7CE", end_color="FFC7CE", fill_type="solid")
        ws = book["Register"]
        last = ws.tables["Concerns"].ref.split(":")[1][1:]
        ws.conditional_formatting.add(
            f"E2:E{last}", CellIsRule(operator="equal", formula=['"New"'], fill=red)
        )
        ws.conditional_formatting.add("K1:K5", CellIsRule(operator="equal", formula=["1"]))
        book.save(path)
    return path


def snapshot(path: Path) -> dict[str, Any]:
    """What a person (and the service) sees: values with their number formats and quote
    prefixes, table and filter ranges, drop-downs and conditional formatting ranges."""
    book = openpyxl.load_workbook(path)
    out: dict[str, Any] = {}
    for ws in book.worksheets:
        cells = {
            c.coordinate: (c.value, c.number_format, bool(c.quotePrefix), c.data_type)
            for row in ws.iter_rows()
            for c in row
            if c.value is not None
        }
        tables = {
            t.displayName: (t.ref, t.autoFilter.ref if t.autoFilter else None)
            for t in ws.tables.values()
        }
        dvs = sorted(
            (dv.formula1, sorted(str(r) for r in dv.sqref.ranges))
            for dv in ws.data_validations.dataValidation
        )
        cfs = sorted(sorted(str(r) for r in cf.sqref.ranges) for cf in ws.conditional_formatting)
        # Row heights: a row grows with its wrapped text (connectors.xlsx_rows) on both paths.
        heights = {r: d.height for r, d in ws.row_dimensions.items() if d.height is not None}
        out[ws.title] = {
            "cells": cells,
            "tables": tables,
            "dvs": dvs,
            "cfs": cfs,
            "heights": heights,
        }
    return out


def pair(tmp_path: Path, **kw: Any) -> tuple[XlsxWorkbook, XlsxWorkbook]:
    """The same workbook twice: one written by the openpyxl path, one by the streaming path."""
    old = make(tmp_path / "old" / "register.xlsx", **kw)
    new = tmp_path / "new" / "register.xlsx"
    new.parent.mkdir()
    shutil.copy2(old, new)
    return XlsxWorkbook(old, lock_wait_seconds=0.2), XlsxWorkbook(
        new, lock_wait_seconds=0.2, streaming=True
    )


def used_streaming(wb: XlsxWorkbook) -> bool:
    assert wb._appender is not None
    return wb._appender.last_fallback is None


# ---------------------------------------------------------------------------- the same result

FORMULA_LIKE = [
    "=1+1",
    '=HYPERLINK("http://example.org/","click")',
    "+44 7700 900000",
    "-5",
    "@SUM(A1)",
    "\tindented",
    "\uff1dfull-width",
    "#N/A",
    " ",
    "",
    "_x0041_ escaped-looking",
    "a & b < c > d \"quoted\" 'single'",
    "line one\r\nline two\rthree",
    "nul\x00 and bell\x07 and \ufffe",
]
texts = st.one_of(
    st.sampled_from(FORMULA_LIKE),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
)
values = st.one_of(
    st.none(),
    texts,
    # (numbers a date-formatted cell can show: openpyxl warns on others, on both paths)
    st.integers(min_value=0, max_value=2_000_000),
    st.floats(min_value=0, max_value=2e6, allow_nan=False, width=32),
    st.booleans(),
    st.dates(min_value=date(1900, 3, 1), max_value=date(9999, 12, 31)),
    st.datetimes(min_value=datetime(1900, 3, 1), max_value=datetime(9999, 12, 31)),
)
rows = st.lists(
    st.dictionaries(
        st.sampled_from([*HEADERS[:-1], "reference", "source  key"]), values, max_size=5
    ).map(lambda r: {k: v for k, v in r.items() if k.strip().lower() != "source key"})
    | st.fixed_dictionaries(
        {"Source key": st.sampled_from(["mail:a", "mail:c", "mail:d", " mail:c "])},
        optional={"Summary": texts, "Recorded at": values, "Count": values},
    ),
    min_size=1,
    max_size=4,
)
batches = st.lists(st.tuples(rows, st.booleans()), min_size=1, max_size=4)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=batches, start_empty=st.booleans())
def test_any_appends_give_the_workbook_the_openpyxl_path_gives(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[tuple[list[dict[str, Any]], bool]],
    start_empty: bool,
) -> None:
    old, new = pair(tmp_path_factory.mktemp("pair"), rows=not start_empty)
    for batch, keyed in batches:
        key = "Source key" if keyed else None
        old.append_rows("Concerns", batch, key_column=key)
        new.append_rows("Concerns", batch, key_column=key)
        assert used_streaming(new)
        assert snapshot(new.path) == snapshot(old.path)
    assert new.read_table("Concerns") == old.read_table("Concerns")
    with zipfile.ZipFile(new.path) as zf:
        assert zf.testzip() is None  # every part's CRC and size check out


def test_a_change_by_another_writer_between_appends_is_seen(tmp_path: Path) -> None:
    """The streaming path remembers the sheet it wrote; an edit in between (here the openpyxl
    path's update) changes the bytes, so it reads the sheet again."""
    old, new = pair(tmp_path)
    for wb in (old, new):
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0003", "Source key": "mail:c"}])
        XlsxWorkbook(wb.path).append_rows("Concerns", [{"Reference": "PRV-2026-0004"}])
        wb.append_rows(
            "Concerns",
            [{"Reference": "PRV-2026-0005", "Source key": "mail:c"}, {"Reference": "P6"}],
            key_column="Source key",
        )
    assert used_streaming(new)
    assert snapshot(new.path) == snapshot(old.path)
    assert [r["Reference"] for r in new.read_table("Concerns").rows][-2:] == ["PRV-2026-0004", "P6"]


def test_layouts_it_does_not_handle_go_to_the_openpyxl_path(tmp_path: Path) -> None:
    old, new = pair(tmp_path)
    for wb in (old, new):  # a person typed a note two rows below the table
        book = openpyxl.load_workbook(wb.path)
        book["Register"]["A6"] = "note typed below"
        book.save(wb.path)
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0003"}])
    assert used_streaming(new)  # row 4: the note below it stays where it is
    assert snapshot(new.path) == snapshot(old.path)
    with pytest.raises(PermanentError, match="row 6 just below table"):
        new.append_rows("Concerns", [{"Reference": "X1"}, {"Reference": "X2"}])
    assert new._appender is not None and "where the new rows go" in str(new._appender.last_fallback)


def test_crc32_combine_matches_zlib() -> None:
    a, b = b"head of the sheet" * 7, b"<row r='2'>" * 1000
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b""), 0) == zlib.crc32(a)


# ---------------------------------------------------------------------------- the safety rules


@pytest.fixture
def streaming(tmp_path: Path) -> XlsxWorkbook:
    wb = XlsxWorkbook(make(tmp_path / "register.xlsx"), lock_wait_seconds=0.2, streaming=True)
    wb.append_rows("Concerns", [{"Reference": "PRV-2026-0003"}])  # warm: remembers the sheet
    return wb


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_refuses_to_write_while_open_in_excel(streaming: XlsxWorkbook) -> None:
    owner = streaming.path.with_name(f"~${streaming.path.name}")
    owner.write_bytes(b"someone")
    before = streaming.path.read_bytes()
    with pytest.raises(LockedError, match="open in Excel"):
        streaming.append_rows("Concerns", [{"Reference": "PRV-2026-0004"}])
    assert streaming.path.read_bytes() == before


def test_crash_while_writing_leaves_the_old_file_intact(
    streaming: XlsxWorkbook, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = streaming.path.read_bytes()

    def half_write(target: Path, members: object) -> None:
        Path(target).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(append_mod, "_write_zip", half_write)
    with pytest.raises(PermanentError, match="No space left"):
        streaming.append_rows("Concerns", [{"Reference": "PRV-2026-0004"}])
    assert streaming.path.read_bytes() == before
    assert leftovers(streaming.path.parent) == []
    monkeypatch.undo()  # and the next append still works from what is on disk
    streaming.append_rows("Concerns", [{"Reference": "PRV-2026-0005"}])
    assert [r["Reference"] for r in streaming.read_table("Concerns").rows][-2:] == [
        "PRV-2026-0003",
        "PRV-2026-0005",
    ]


def test_a_file_changed_during_the_write_is_not_clobbered(
    streaming: XlsxWorkbook, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = append_mod._write_zip
    path = streaming.path

    def write_while_someone_edits(target: Path, members: Any) -> None:
        real(target, members)
        st = path.stat()
        import os

        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))

    monkeypatch.setattr(append_mod, "_write_zip", write_while_someone_edits)
    with pytest.raises(TransientError, match="changed on disk"):
        streaming.append_rows("Concerns", [{"Reference": "PRV-2026-0004"}])
    assert len(XlsxWorkbook(path).read_table("Concerns").rows) == 3


def test_backups_and_file_mode_are_kept(streaming: XlsxWorkbook) -> None:
    streaming.path.chmod(0o640)
    streaming.append_rows("Concerns", [{"Reference": "PRV-2026-0004"}])
    assert streaming.path.stat().st_mode & 0o777 == 0o640
    backups = sorted((streaming.path.parent / ".backups").iterdir())
    assert len(backups) == 2  # before each of the two appends
    newest = XlsxWorkbook(backups[-1]).read_table("Concerns")
    assert newest.rows[-1]["Reference"] == "PRV-2026-0003"


def test_a_lossy_feature_is_still_refused(streaming: XlsxWorkbook) -> None:
    with zipfile.ZipFile(streaming.path, "a") as zf:
        zf.writestr("xl/vbaProject.bin", b"macros")
    with pytest.raises(PermanentError, match="macros"):
        streaming.append_rows("Concerns", [{"Reference": "PRV-2026-0004"}])


# ---------------------------------------------------------------------------- LibreOffice


def soffice(args: list[str], cwd: Path) -> None:
    if shutil.which("soffice") is None:
        pytest.fail("LibreOffice (soffice) is not installed; .ci/run installs it")
    profile = cwd / "lo-profile"
    subprocess.run(
        ["soffice", f"-env:UserInstallation=file://{profile}", "--headless", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=180,
    )


def test_libreoffice_reads_appended_rows_and_its_own_files_take_appends(tmp_path: Path) -> None:
    """A file saved by another office program (LibreOffice: shared strings, its own styles and
    XML) takes streaming appends; LibreOffice then reads every row, text stays text."""
    made = make(tmp_path / "made.xlsx")
    out = tmp_path / "lo"
    out.mkdir()
    soffice(["--convert-to", "xlsx", "--outdir", str(out), str(made)], tmp_path)
    path = out / "made.xlsx"
    with zipfile.ZipFile(path) as zf:
        assert "xl/sharedStrings.xml" in zf.namelist()
    twin = tmp_path / "twin" / "made.xlsx"
    twin.parent.mkdir()
    shutil.copy2(path, twin)
    new = XlsxWorkbook(path, streaming=True)
    old = XlsxWorkbook(twin)
    batch = [
        {"Reference": "PRV-2026-0003", "Summary": "=1+2", "Recorded at": datetime(2026, 5, 1, 9)},
        {"Reference": "PRV-2026-0004", "Date of birth": date(2002, 3, 4), "Count": 7},
        {"Reference": "dup", "Source key": "mail:a"},  # in the table already
    ]
    for wb in (new, old):
        wb.append_rows("Concerns", batch[:2])
        wb.append_rows("Concerns", batch[2:], key_column="Source key")
    assert used_streaming(new)
    assert snapshot(path) == snapshot(twin)
    soffice(["--convert-to", "csv", "--outdir", str(tmp_path / "csv"), str(path)], tmp_path)
    with open(tmp_path / "csv" / "made.csv", newline="", encoding="utf-8") as fh:
        got = list(csv.reader(fh))
    refs = ["Reference", *(f"PRV-2026-000{n}" for n in range(1, 5))]
    assert [r[0] for r in got] == refs
    assert got[3][3] == "=1+2"  # text, not the formula's result 3
    assert got[4][5] == "7"


# ---------------------------------------------------------------------------- read_columns


def test_read_columns_gives_those_columns_of_read_table(tmp_path: Path) -> None:
    path = make(tmp_path / "register.xlsx")
    wb = XlsxWorkbook(path)
    wb.append_rows("Concerns", [{"Summary": "only a summary"}, {"Reference": "PRV-2026-0003"}])
    full = XlsxWorkbook(path).read_table("Concerns")
    part = XlsxWorkbook(path).read_columns("Concerns", ["reference", "Date of birth", "Nope"])

    assert part.headers == ("Reference", "Date of birth")
    expected = [
        (n, {"Reference": r["Reference"], "Date of birth": r["Date of birth"]})
        for n, r in zip(full.row_numbers, full.rows, strict=True)
        if r["Reference"] or r["Date of birth"]
    ]
    assert list(zip(part.row_numbers, part.rows, strict=True)) == expected
    assert expected[1][1]["Date of birth"] == date(2001, 2, 3)  # a date cell reads as a date
    assert [n for n, _ in expected] == [2, 3, 5]  # the summary-only row 4 is left out


def test_read_columns_with_a_formula_reads_saved_values_as_read_table_does(
    tmp_path: Path,
) -> None:
    path = make(tmp_path / "register.xlsx")
    got = XlsxWorkbook(path).read_columns("Concerns", ["Reference", "Review"])
    assert got == XlsxWorkbook(path).read_table("Concerns")  # the whole table, formulas read


# ---------------------------------------------------------------------------- init's registers


def styled_snapshot(path: Path) -> dict[str, Any]:
    """``snapshot`` and how the cells look: wrap and alignment, row heights, frozen panes."""
    out = snapshot(path)
    book = openpyxl.load_workbook(path)
    for ws in book.worksheets:
        out[ws.title]["look"] = {
            c.coordinate: (c.alignment.wrap_text, c.alignment.vertical, c.style_id != 0)
            for row in ws.iter_rows()
            for c in row
        }
        out[ws.title]["heights"] = {r: d.height for r, d in ws.row_dimensions.items() if d.height}
        out[ws.title]["frame"] = (ws.freeze_panes, ws.sheet_format.defaultRowHeight)
    return out


def init_register(path: Path) -> Path:
    """A register as ``prevent-service init`` (and ``provision``) lays it out: every table
    empty, its first row formatted and blank."""
    from service.cases.chronology import chronology_table_spec
    from service.cases.register import register_table_spec

    create_workbook(path, [register_table_spec(), chronology_table_spec()])
    return path


REGISTER_ROW = st.fixed_dictionaries(
    {"Reference": st.from_regex(r"PRV-2026-\d{5}", fullmatch=True)},
    optional={
        "Received at": st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
        "Summary": texts,
        "Account": texts,
        "Status": st.sampled_from(["New", "=cmd", ""]),
        "Source key": st.sampled_from(["mail:1", "mail:2", "mail:3"]),
        "Closed date": st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)),
    },
)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(st.lists(REGISTER_ROW, min_size=1, max_size=3), min_size=1, max_size=3))
def test_an_init_register_takes_streaming_appends_from_its_first_row(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[dict[str, Any]]]
) -> None:
    """The first row of an empty register (formatted and blank, as init lays it out) is filled
    by the streaming path as the openpyxl path fills it: the same values, number formats,
    wrap, row heights and frozen panes; the Chronology's likewise."""
    folder = tmp_path_factory.mktemp("init")
    old = init_register(folder / "old.xlsx")
    new = folder / "new" / "old.xlsx"
    new.parent.mkdir()
    shutil.copy2(old, new)
    wbs = (XlsxWorkbook(old), XlsxWorkbook(new, streaming=True))
    for batch in batches:
        for wb in wbs:
            wb.append_rows("Concerns", batch, key_column="Source key")
            wb.append_rows("Chronology", [{"Reference": batch[0]["Reference"], "Event": "x"}])
        assert used_streaming(wbs[1]), wbs[1]._appender and wbs[1]._appender.last_fallback
        assert styled_snapshot(new) == styled_snapshot(old)
    assert wbs[1].read_table("Concerns") == wbs[0].read_table("Concerns")


def test_formatted_blank_rows_are_filled_and_rows_below_kept(tmp_path: Path) -> None:
    """A table a person pre-formatted (blank rows with styles and heights, a note in a column
    beside the table) is filled from its first blank row; what is below stays."""
    old = make(tmp_path / "old" / "register.xlsx", rows=False)
    book = openpyxl.load_workbook(old)
    ws = book["Register"]
    for r in range(3, 7):
        for c in range(1, 9):
            ws.cell(r, c).number_format = "0.00" if c == 6 else "General"
            ws.cell(r, c).alignment = openpyxl.styles.Alignment(wrap_text=True)
        ws.row_dimensions[r].height = 30
    ws["D4"] = "   "  # blank: whitespace only
    ws["K3"] = "a note beside the table"
    book.save(old)
    new = tmp_path / "new" / "register.xlsx"
    new.parent.mkdir()
    shutil.copy2(old, new)
    wbs = (XlsxWorkbook(old), XlsxWorkbook(new, streaming=True))
    for batch in ([{"Reference": "A"}, {"Reference": "B", "Count": 2}], [{"Reference": "C"}]):
        for wb in wbs:
            wb.append_rows("Concerns", batch)
        assert used_streaming(wbs[1])
        assert styled_snapshot(new) == styled_snapshot(old)
    refs = [r["Reference"] for r in wbs[1].read_table("Concerns").rows]
    assert refs == ["A", "B", "C"]
    assert openpyxl.load_workbook(new)["Register"]["K3"].value == "a note beside the table"


def test_libreoffice_opens_an_init_register_after_streaming_appends(tmp_path: Path) -> None:
    path = init_register(tmp_path / "register.xlsx")
    wb = XlsxWorkbook(path, streaming=True)
    rows = [
        {"Reference": "PRV-2026-00001", "Summary": "=not a formula", "Source key": "k1"},
        {"Reference": "PRV-2026-00002", "Received at": datetime(2026, 3, 4, 9, 30)},
    ]
    wb.append_rows("Concerns", rows[:1], key_column="Source key")
    wb.append_rows("Concerns", rows[1:], key_column="Source key")
    assert used_streaming(wb)
    soffice(["--convert-to", "csv", "--outdir", str(tmp_path / "csv"), str(path)], tmp_path)
    with open(tmp_path / "csv" / "register.csv", newline="", encoding="utf-8") as fh:
        got = list(csv.reader(fh))
    assert [r[0] for r in got] == ["Reference", "PRV-2026-00001", "PRV-2026-00002"]
    assert "=not a formula" in got[1]
    assert "2026" in got[2][1] and "09:30" in got[2][1]  # a date (as LibreOffice's locale shows it)


def test_dates_appended_to_a_fresh_table_get_the_uk_formats_on_both_paths(tmp_path: Path) -> None:
    """A table laid out with no starting rows (as the Chronology sheet): its dates show as
    dd/mm/yyyy (hh:mm), never openpyxl's ISO default, even in a column with no format of its
    own (Count here), on the streaming path and the openpyxl path alike."""
    old, new = pair(tmp_path, rows=False, formatting=False)
    row = {
        "Reference": "PRV-2026-0003",
        "Recorded at": datetime(2026, 12, 4, 21, 48, 37),
        "Date of birth": date(2010, 5, 6),
        "Count": datetime(2026, 12, 5, 9, 30),
    }
    for wb in (old, new):
        wb.append_rows("Concerns", [row, {**row, "Reference": "PRV-2026-0004"}])
    assert used_streaming(new)
    for wb in (old, new):
        ws = openpyxl.load_workbook(wb.path)["Register"]
        for r in (2, 3):
            assert ws.cell(r, 2).number_format == "dd/mm/yyyy hh:mm"
            assert ws.cell(r, 3).number_format == "dd/mm/yyyy"
            assert ws.cell(r, 6).number_format == "dd/mm/yyyy hh:mm"
    assert snapshot(new.path) == snapshot(old.path)


def test_rows_grow_with_their_wrapped_text_on_both_paths(tmp_path: Path) -> None:
    """Neither Excel nor LibreOffice grows a row a program wrote, so a long Summary (a wrapped
    column, 50 wide) gets a row tall enough for its lines; a short one keeps the default."""
    # (every column init lays out wraps; the height is the tallest cell's)
    old, new = pair(tmp_path, rows=False, formatting=False)
    long = "A long account of what was seen and heard, " * 6  # 264 characters: 5 lines
    for wb in (old, new):
        wb.append_rows(
            "Concerns",
            [
                {"Reference": "PRV-2026-0003", "Summary": long},
                {"Reference": "PRV-2026-0004", "Summary": "short"},
                {"Reference": "PRV-2026-0005", "Summary": "one\ntwo", "Source key": long},
            ],
        )
    assert used_streaming(new)
    for wb in (old, new):
        ws = openpyxl.load_workbook(wb.path)["Register"]
        assert ws.row_dimensions[2].height == 75.0
        assert ws.row_dimensions[3].height is None
        # A hidden column does not print: only the Summary's two lines count.
        assert ws.row_dimensions[4].height == 30.0
    assert snapshot(new.path) == snapshot(old.path)


def test_rows_of_a_fixed_height_sheet_keep_it_on_both_paths(tmp_path: Path) -> None:
    """A sheet laid out with fixed-height rows (an earlier register) keeps its layout."""
    old, new = pair(tmp_path, formatting=False)
    for wb in (old, new):
        book = openpyxl.load_workbook(wb.path)
        book["Register"].sheet_format.customHeight = True
        book["Register"].sheet_format.defaultRowHeight = 39
        book.save(wb.path)
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0003", "Summary": "x " * 400}])
    assert used_streaming(new)
    for wb in (old, new):
        ws = openpyxl.load_workbook(wb.path)["Register"]
        assert ws.row_dimensions[4].height is None
