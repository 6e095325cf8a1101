"""The local .xlsx backend: people in the loop, atomic writes, features openpyxl would drop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest

import connectors.xlsx as xlsx_mod
from connectors.base import CellUpdate, ColumnSpec, Formula, TableSpec, UnsavedFormula
from connectors.xlsx import (
    EXCEL_CELL_LIMIT,
    TRUNCATION_MARKER,
    XlsxWorkbook,
    create_workbook,
    fit_cell,
    lock_path,
)
from service.errors import InputError, LockedError, PermanentError, TransientError

SPEC = TableSpec(
    sheet="Register",
    table="Concerns",
    columns=(
        ColumnSpec("Reference", width=16),
        ColumnSpec("Recorded at", kind="datetime"),
        ColumnSpec("Date of birth", kind="date"),
        ColumnSpec("Summary", kind="long_text"),
        ColumnSpec("Status", kind="choice", choices=("New", "Open", "Closed"), owner="person"),
        ColumnSpec("Source key", kind="hidden"),
    ),
    rows=(("PRV-2026-0001", datetime(2026, 1, 5, 10, 0), None, "First", "Open", "mail:a"),),
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "register.xlsx"
    create_workbook(p, [SPEC])
    return p


@pytest.fixture
def wb(path: Path) -> XlsxWorkbook:
    return XlsxWorkbook(path, lock_wait_seconds=0.2)


def refs(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return re.findall(r'ref="([^"]+)"', zf.read("xl/tables/table1.xml").decode())


def sheet_xml(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        return zf.read("xl/worksheets/sheet1.xml").decode()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------------------- layout


def test_create_workbook_lays_out_a_usable_register(path: Path) -> None:
    book = openpyxl.load_workbook(path)
    ws = book["Register"]
    table = ws.tables["Concerns"]

    assert table.ref == "A1:F2"
    assert table.tableStyleInfo.name == "TableStyleMedium2"
    assert ws.freeze_panes == "A2"
    assert ws.column_dimensions["A"].width == 16
    assert ws.column_dimensions["F"].hidden
    assert ws.column_dimensions["B"].number_format == xlsx_mod.DATETIME_FORMAT
    assert ws.column_dimensions["C"].number_format == xlsx_mod.DATE_FORMAT
    assert ws["D2"].alignment.wrap_text
    (dv,) = ws.data_validations.dataValidation
    assert dv.type == "list" and dv.formula1 == '"New,Open,Closed"'
    assert str(dv.sqref) == f"E2:E{xlsx_mod.VALIDATION_ROWS + 2}"
    # Service-owned and person-owned headers look different.
    assert ws["A1"].fill.start_color.rgb.endswith(xlsx_mod.SERVICE_FILL)
    assert ws["E1"].fill.start_color.rgb.endswith(xlsx_mod.PERSON_FILL)
    assert ws["B2"].is_date and ws["B2"].value == datetime(2026, 1, 5, 10, 0)


def test_create_workbook_never_overwrites(path: Path) -> None:
    before = path.read_bytes()

    with pytest.raises(PermanentError, match="already exists"):
        create_workbook(path, [SPEC])

    assert path.read_bytes() == before


def test_an_empty_table_gets_its_first_row_inside_the_table(tmp_path: Path) -> None:
    p = tmp_path / "empty.xlsx"
    create_workbook(p, [TableSpec("Form1", "Table1", (ColumnSpec("ID"), ColumnSpec("Name")))])
    wb = XlsxWorkbook(p)

    assert wb.read_table("Table1").rows == ()
    wb.append_rows("Table1", [{"ID": 1, "Name": "anonymous"}])

    assert refs(p) == ["A1:B2", "A1:B2"]
    assert wb.read_table("Table1").rows == ({"ID": 1, "Name": "anonymous"},)


# ---------------------------------------------------------------------------- people in the loop


@pytest.mark.parametrize("owner", ["~$register.xlsx", "~$gister.xlsx", ".~lock.register.xlsx#"])
def test_refuses_to_write_while_open_in_excel(wb: XlsxWorkbook, path: Path, owner: str) -> None:
    (path.parent / owner).write_bytes(b"\x0bExample User")
    before = path.read_bytes()

    assert "open in Excel" in (wb.writable() or "")
    with pytest.raises(LockedError, match="open in Excel") as info:
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])

    assert info.value.retry_after
    assert path.read_bytes() == before
    assert wb.read_table("Concerns").rows[0]["Reference"] == "PRV-2026-0001"  # reading is fine


def test_a_second_writer_waits_for_the_lock(wb: XlsxWorkbook, path: Path) -> None:
    with xlsx_mod.writer_lock(path, 0):
        with pytest.raises(LockedError, match="another prevent-service process"):
            wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])
        assert wb.writable() is not None
    wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])

    assert len(wb.read_table("Concerns").rows) == 2


def test_a_full_disk_is_a_clear_error_not_a_crash(
    wb: XlsxWorkbook, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk even the lock file's few bytes cannot be written: that must not crash
    the cycle (before the DSP alert went out); the save itself says what is wrong."""
    import errno

    def no_space(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xlsx_mod.os, "pwrite", no_space)
    monkeypatch.setattr(xlsx_mod.os, "fsync", no_space)
    before = path.read_bytes()

    assert wb.writable() is None  # nothing tells a full disk apart cheaply; the write will
    with pytest.raises(PermanentError, match="No space left on device; check free space"):
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])

    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_lock_left_by_a_killed_process_is_not_stale(wb: XlsxWorkbook, path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from connectors.xlsx import writer_lock\n"
        "with writer_lock(Path(sys.argv[1]), 0):\n"
        "    print('locked', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError):
            wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])
        assert "pid" in lock_path(path).read_text()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    assert lock_path(path).exists()  # the file stays; the lock died with its process
    wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])
    assert len(wb.read_table("Concerns").rows) == 2


def test_typed_below_the_table_is_never_overwritten(path: Path, wb: XlsxWorkbook) -> None:
    book = openpyxl.load_workbook(path)
    book["Register"]["D3"] = "a note someone typed under the table"
    book.save(path)
    before = path.read_bytes()

    with pytest.raises(PermanentError, match=r"row 3 .*not empty") as info:
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])

    assert "Resize Table" in str(info.value)
    assert path.read_bytes() == before


def test_appends_after_the_table_not_after_formatted_blank_rows(
    path: Path, wb: XlsxWorkbook
) -> None:
    book = openpyxl.load_workbook(path)
    ws = book["Register"]
    for r in range(3, 200):
        ws.cell(r, 2).number_format = "dd/mm/yyyy"  # formatted but empty: counts in max_row
    book.save(path)

    wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}, {"Reference": "PRV-2026-0003"}])

    table = wb.read_table("Concerns")
    assert table.row_numbers == (2, 3, 4)
    assert refs(path) == ["A1:F4", "A1:F4"]


def test_append_extends_table_ref_autofilter_and_drop_downs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx_mod, "VALIDATION_ROWS", 2)
    p = tmp_path / "small.xlsx"
    create_workbook(p, [SPEC])
    wb = XlsxWorkbook(p)

    wb.append_rows("Concerns", [{"Reference": f"PRV-2026-00{n:02d}"} for n in range(2, 8)])

    assert refs(p) == ["A1:F8", "A1:F8"]
    ws = openpyxl.load_workbook(p)["Register"]
    (dv,) = ws.data_validations.dataValidation
    assert "E8" in dv.sqref
    assert ws.cell(8, 1).value == "PRV-2026-0007"


def test_conditional_formatting_on_the_table_covers_appended_rows(
    path: Path, wb: XlsxWorkbook
) -> None:
    """The DSP colours Status "New" red over the table's column: Excel extends that rule as
    the table grows, so a new concern is red too; rules elsewhere are left alone."""
    from openpyxl.formatting.rule import CellIsRule
    from openpyxl.styles import PatternFill

    red = PatternFill(start_color="FFC7CE", end_color="FFC7CE", fill_type="solid")
    book = openpyxl.load_workbook(path)
    ws = book["Register"]
    ws.conditional_formatting.add(
        "E2:E2", CellIsRule(operator="equal", formula=['"New"'], fill=red)
    )
    ws.conditional_formatting.add("H1:H5", CellIsRule(operator="equal", formula=["1"], fill=red))
    book.save(path)

    wb.append_rows("Concerns", [{"Reference": f"PRV-2026-000{n}"} for n in (2, 3)])

    ws = openpyxl.load_workbook(path)["Register"]
    ranges = sorted(str(cf.sqref) for cf in ws.conditional_formatting)
    assert ranges == ["E2:E4", "H1:H5"]
    assert [len(cf.rules) for cf in ws.conditional_formatting] == [1, 1]


def test_update_cells_never_overwrites_and_skips_the_save_when_idle(
    path: Path, wb: XlsxWorkbook
) -> None:
    before = path.stat().st_mtime_ns
    assert wb.update_cells("Concerns", [CellUpdate("Status", "New", 0)]) == 0
    assert path.stat().st_mtime_ns == before
    assert not (path.parent / ".backups").exists()

    assert wb.update_cells("Concerns", [CellUpdate("Date of birth", date(2010, 5, 6), 0)]) == 1
    assert wb.read_table("Concerns").rows[0]["Date of birth"] == date(2010, 5, 6)


def test_append_with_a_key_column_never_makes_a_second_row(wb: XlsxWorkbook) -> None:
    row = {"Reference": "PRV-2026-0002", "Source key": "mail:b"}
    wb.append_rows("Concerns", [row], key_column="Source key")
    wb.append_rows(
        "Concerns", [row, {"Reference": "x", "Source key": "mail:a"}], key_column="source key"
    )

    assert [r["Source key"] for r in wb.read_table("Concerns").rows] == ["mail:a", "mail:b"]


def test_a_table_with_a_total_row_is_not_appended_to(path: Path, wb: XlsxWorkbook) -> None:
    book = openpyxl.load_workbook(path)
    book["Register"].tables["Concerns"].totalsRowCount = 1
    book.save(path)

    with pytest.raises(PermanentError, match="Total Row"):
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])


def test_aware_datetimes_are_written_in_local_time(path: Path) -> None:
    wb = XlsxWorkbook(path, tz=ZoneInfo("Europe/London"))

    wb.append_rows("Concerns", [{"Recorded at": datetime(2026, 7, 1, 8, 0, 30, 999, tzinfo=UTC)}])

    assert wb.read_table("Concerns").rows[1]["Recorded at"] == datetime(2026, 7, 1, 9, 0, 30)


# ---------------------------------------------------------------------------- atomic, backups


def test_previous_version_is_kept_as_a_backup(path: Path, wb: XlsxWorkbook) -> None:
    original = path.read_bytes()
    wb.backups = 2

    for n in range(2, 6):
        wb.append_rows("Concerns", [{"Reference": f"PRV-2026-000{n}"}])

    backups = sorted((path.parent / ".backups").iterdir())
    assert len(backups) == 2
    newest = XlsxWorkbook(backups[-1]).read_table("Concerns")
    assert [r["Reference"] for r in newest.rows][-1] == "PRV-2026-0004"
    assert original not in [b.read_bytes() for b in backups]  # rotated out


def test_failed_replace_leaves_the_old_file_intact(
    path: Path, wb: XlsxWorkbook, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = path.read_bytes()

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(xlsx_mod.os, "replace", broken_replace)
    with pytest.raises(TransientError, match="old version is unchanged"):
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])

    assert path.read_bytes() == before
    assert leftovers(path.parent) == []


def test_crash_while_saving_leaves_the_old_file_intact(
    path: Path, wb: XlsxWorkbook, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = path.read_bytes()

    def half_save(self: object, filename: str | Path) -> None:
        Path(filename).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(openpyxl.Workbook, "save", half_save)
    with pytest.raises(PermanentError, match="No space left"):
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])

    assert path.read_bytes() == before
    assert leftovers(path.parent) == []


def test_a_file_changed_during_the_write_is_not_clobbered(
    path: Path, wb: XlsxWorkbook, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = openpyxl.Workbook.save

    def save_while_someone_edits(self: openpyxl.Workbook, filename: str | Path) -> None:
        real_save(self, filename)
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))  # a sync client

    monkeypatch.setattr(openpyxl.Workbook, "save", save_while_someone_edits)
    with pytest.raises(TransientError, match="changed on disk"):
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])

    monkeypatch.undo()
    assert len(XlsxWorkbook(path).read_table("Concerns").rows) == 1


# ---------------------------------------------------------------------------- hostile text


def test_hostile_text_is_stored_as_text_not_formulas(path: Path, wb: XlsxWorkbook) -> None:
    hostile = [
        '=HYPERLINK("http://example.org/","click me")',
        "+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "\t=1+1",
        "\r\n=1+1",
        "＝1+1",
    ]
    wb.append_rows("Concerns", [{"Summary": text, "Status": text} for text in hostile])

    xml = sheet_xml(path)
    assert "<f>" not in xml and "<f " not in xml
    assert xml.count('t="inlineStr"') >= 2 * len(hostile)
    book = openpyxl.load_workbook(path)
    ws = book["Register"]
    for r in range(3, 3 + len(hostile)):
        cell = ws.cell(r, 4)
        assert cell.data_type == "s"
        assert cell.quotePrefix  # Excel keeps it as text even when a person edits the cell
    assert ws.cell(3, 4).value == hostile[0]
    assert ws.cell(8, 4).value == "\n=1+1"


def test_control_characters_and_error_codes_are_safe(wb: XlsxWorkbook) -> None:
    wb.append_rows("Concerns", [{"Summary": "bell\x07 nul\x00 ok", "Reference": "#REF!"}])

    row = wb.read_table("Concerns").rows[1]
    assert row["Summary"] == "bell\ufffd nul\ufffd ok"
    assert row["Reference"] == "#REF!"


def test_fit_cell_cuts_at_excels_limit_with_a_marker() -> None:
    assert fit_cell("a" * EXCEL_CELL_LIMIT) == "a" * EXCEL_CELL_LIMIT
    cut = fit_cell("a" * (EXCEL_CELL_LIMIT + 1))
    assert len(cut) == EXCEL_CELL_LIMIT and cut.endswith(TRUNCATION_MARKER)
    # Excel counts UTF-16 units: an emoji is two, and is never split in half.
    emoji = fit_cell("\U0001f600" * 20_000)
    assert len(emoji.encode("utf-16-le")) // 2 <= EXCEL_CELL_LIMIT
    assert emoji.endswith(TRUNCATION_MARKER)
    assert "\ufffd" not in emoji


# ---------------------------------------------------------------------------- lossy features


def inject(path: Path, *, sheet_tail: str = "", parts: dict[str, str] | None = None) -> None:
    """Rewrite ``path`` as Excel would have saved it with extra parts / a worksheet extLst."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml" and sheet_tail:
                data = data.replace(b"</worksheet>", sheet_tail.encode() + b"</worksheet>")
            dst.writestr(item, data)
        for name, text in (parts or {}).items():
            dst.writestr(name, text)
    os.replace(tmp, path)


X14_LIST = (
    '<extLst><ext uri="{CCE6A557-97BC-4b89-ADB6-D9C93CAAB3DF}" '
    'xmlns:x14="http://schemas.microsoft.com/office/spreadsheetml/2009/9/main">'
    '<x14:dataValidations count="1" '
    'xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main">'
    '<x14:dataValidation type="list" allowBlank="1" showInputMessage="1" showErrorMessage="1">'
    "<x14:formula1><xm:f>Lists!$A$1:$A$3</xm:f></x14:formula1><xm:sqref>E2:E50</xm:sqref>"
    "</x14:dataValidation></x14:dataValidations></ext></extLst>"
)
X14_CF = (
    '<extLst><ext uri="{78C0D931-6437-407d-A8EE-F0AAD7539E65}" '
    'xmlns:x14="http://schemas.microsoft.com/office/spreadsheetml/2009/9/main">'
    "<x14:conditionalFormattings><x14:conditionalFormatting "
    'xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main"><x14:cfRule type="dataBar" '
    'id="{00000000-000E-0000-0000-000001000000}"><x14:dataBar/></x14:cfRule>'
    "<xm:sqref>A2:A9</xm:sqref></x14:conditionalFormatting></x14:conditionalFormattings>"
    "</ext></extLst>"
)
PIVOT = (
    '<pivotCacheDefinition xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'refreshOnLoad="1"><cacheSource type="worksheet"><worksheetSource ref="A1:F2" '
    'sheet="Register"/></cacheSource></pivotCacheDefinition>'
)
DRAWING = (
    '<xdr:wsDr xmlns:xdr="http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing">'
    "</xdr:wsDr>"
)

FEATURES: dict[str, tuple[dict[str, object], str, str]] = {
    "x14 cross-sheet drop-down": (
        {"sheet_tail": X14_LIST},
        "drop-down lists that take their choices from another sheet",
        "Define Name",
    ),
    "x14 conditional formatting": (
        {"sheet_tail": X14_CF},
        "conditional formatting",
        "remove those conditional formatting rules",
    ),
    "pivot cache": (
        {"parts": {"xl/pivotCache/pivotCacheDefinition1.xml": PIVOT}},
        "a pivot table",
        "separate workbook",
    ),
    "drawing": (
        {"parts": {"xl/drawings/drawing1.xml": DRAWING}},
        "shapes, charts or pictures",
        "separate workbook",
    ),
    "vba": ({"parts": {"xl/vbaProject.bin": "not really vba"}}, "macros (VBA)", "without macros"),
    "slicer": (
        {"parts": {"xl/slicers/slicer1.xml": "<slicers/>"}},
        "slicers",
        "remove the slicers",
    ),
    "threaded comments": (
        {"parts": {"xl/threadedComments/threadedComment1.xml": "<ThreadedComments/>"}},
        "threaded comments",
        "Convert to Notes",
    ),
}


@pytest.mark.parametrize("feature", list(FEATURES))
def test_refuses_to_write_a_workbook_with_features_openpyxl_drops(path: Path, feature: str) -> None:
    kwargs, lost, todo = FEATURES[feature]
    inject(path, **kwargs)  # type: ignore[arg-type]
    before = path.read_bytes()
    wb = XlsxWorkbook(path)

    with pytest.raises(PermanentError) as info:
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])

    message = str(info.value)
    assert "register.xlsx" in message and lost in message and todo in message
    assert wb.writable() == message
    assert path.read_bytes() == before
    # Reading stays possible (nothing is saved).
    assert wb.read_table("Concerns").rows[0]["Reference"] == "PRV-2026-0001"


def test_openpyxl_really_drops_the_cross_sheet_drop_down(path: Path) -> None:
    """Why the check exists: a load/save round trip deletes the x14 extension."""
    inject(path, sheet_tail=X14_LIST)
    with pytest.warns(UserWarning, match="extension is not supported and will be removed"):
        book = openpyxl.load_workbook(path)
    book.save(path)

    assert "x14:dataValidation" not in sheet_xml(path)


def test_comments_as_notes_do_not_block_writes(path: Path) -> None:
    book = openpyxl.load_workbook(path)
    book["Register"]["E2"].comment = openpyxl.comments.Comment("checked", "Example DSP")
    book.save(path)
    wb = XlsxWorkbook(path)

    wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])

    assert openpyxl.load_workbook(path)["Register"]["E2"].comment.text == "checked"


# ---------------------------------------------------------------------------- broken input


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"this is not a workbook"),
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        lambda p: _drop_part(p, "xl/workbook.xml"),
    ],
    ids=["not-a-zip", "truncated", "missing-part"],
)
def test_a_broken_workbook_is_an_input_error_naming_the_file(
    path: Path, damage: Callable[[Path], object]
) -> None:
    damage(path)
    wb = XlsxWorkbook(path)

    with pytest.raises(InputError, match=r"register\.xlsx"):
        wb.read_table("Concerns")
    with pytest.raises(InputError, match=r"register\.xlsx"):
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])


def _drop_part(path: Path, name: str) -> None:
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
        for item in src.infolist():
            if item.filename != name:
                dst.writestr(item, src.read(item.filename))
    os.replace(tmp, path)


def test_a_missing_workbook_says_where_it_looked(tmp_path: Path) -> None:
    wb = XlsxWorkbook(tmp_path / "nowhere.xlsx")

    with pytest.raises(PermanentError, match=r"nowhere\.xlsx not found"):
        wb.read_table("Concerns")
    assert "not found" in (wb.writable() or "")


def test_a_missing_table_lists_the_tables_present(wb: XlsxWorkbook) -> None:
    with pytest.raises(InputError, match=r"no table named 'Table1'.*Concerns \(sheet Register\)"):
        wb.read_table("Table1")


def test_a_missing_column_lists_the_columns(wb: XlsxWorkbook) -> None:
    with pytest.raises(InputError, match=r"no column 'Risk'.*'Reference'"):
        wb.find_rows("Concerns", "Risk", ["x"])


def test_reads_are_cached_until_the_file_changes(path: Path, wb: XlsxWorkbook) -> None:
    first = wb.read_table("Concerns")
    assert wb.read_table("Concerns") is first

    XlsxWorkbook(path).append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])

    assert len(wb.read_table("Concerns").rows) == 2


# ---------------------------------------------------------------------------- people's formulas


def put_formulas(path: Path, cells: dict[str, str]) -> None:
    """Type formulas into sheet Register, as a person would (openpyxl saves no results)."""
    book = openpyxl.load_workbook(path)
    for ref, formula in cells.items():
        book["Register"][ref] = formula
    book.save(path)


def save_results(path: Path, results: dict[str, str]) -> None:
    """Add the results Excel saves beside each formula: ``<f>…</f><v>46001</v>``."""
    xml = sheet_xml(path)
    for ref, value in results.items():
        xml, count = re.subn(
            rf'(<c r="{ref}"[^>]*>)(<f>[^<]*</f>)<v\s*/>', rf"\g<1>\g<2><v>{value}</v>", xml
        )
        assert count == 1, ref
    replace_part(path, "xl/worksheets/sheet1.xml", xml.encode())


def replace_part(path: Path, name: str, data: bytes) -> None:
    tmp = path.with_suffix(".new")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, data if item.filename == name else src.read(item.filename))
    os.replace(tmp, path)


def test_a_formula_reads_as_the_value_excel_saved(path: Path, wb: XlsxWorkbook) -> None:
    put_formulas(path, {"C2": "=DATE(2026,11,28)", "D2": '=IF(E2="Open","open","closed")'})
    save_results(path, {"C2": "46354"})  # C is a date column: 28/11/2026

    row = wb.read_table("Concerns").rows[0]

    assert row["Date of birth"] == date(2026, 11, 28)
    assert isinstance(row["Summary"], UnsavedFormula)  # no result saved for D2
    assert row["Summary"] == '=IF(E2="Open","open","closed")'
    assert row["Reference"] == "PRV-2026-0001"


def test_a_write_keeps_peoples_formulas_as_formulas(path: Path, wb: XlsxWorkbook) -> None:
    put_formulas(path, {"C2": "=DATE(2026,11,28)"})
    save_results(path, {"C2": "46354"})
    written = wb.update_cells(
        "Concerns",
        [
            # The guard compares with what a read gave: the formula's saved value.
            CellUpdate(
                "Source key", "mail:z", 0, {"Date of birth": date(2026, 11, 28)}, overwrite=True
            ),
        ],
    )

    assert written == 1
    cell = openpyxl.load_workbook(path)["Register"]["C2"]
    assert cell.data_type == "f" and cell.value == "=DATE(2026,11,28)"
    assert wb.read_table("Concerns").rows[0]["Source key"] == "mail:z"


def test_a_calculated_column_a_person_added_fills_new_rows_as_excel_would(
    path: Path, wb: XlsxWorkbook
) -> None:
    """The DSP adds "Days open" = TODAY()-[@[Recorded at]] to the table: Excel keeps the
    formula on the column and fills every row it adds; rows the service adds get it too."""
    from openpyxl.worksheet.table import TableColumn, TableFormula

    formula = "TODAY()-Concerns[[#This Row],[Recorded at]]"
    book = openpyxl.load_workbook(path)
    ws = book["Register"]
    table = ws.tables["Concerns"]
    ws["G1"] = "Days open"
    ws["G2"] = f"={formula}"
    table.tableColumns.append(
        TableColumn(id=7, name="Days open", calculatedColumnFormula=TableFormula(attr_text=formula))
    )
    table.ref = table.autoFilter.ref = "A1:G2"
    book.save(path)

    wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002"}])

    cell = openpyxl.load_workbook(path)["Register"]["G3"]
    assert cell.data_type == "f" and cell.value == f"={formula}"
    assert refs(path) == ["A1:G3", "A1:G3"]


def test_create_workbook_writes_formulas_as_formulas(tmp_path: Path) -> None:
    spec = TableSpec(
        "Sheet",
        "Things",
        (ColumnSpec("When", kind="date"), ColumnSpec("Later", kind="date")),
        ((date(2026, 1, 31), Formula('=IF(A2="","",EDATE(A2,1))')), ("=A2", None)),
    )
    p = tmp_path / "f.xlsx"
    create_workbook(p, [spec])

    sheet = openpyxl.load_workbook(p)["Sheet"]
    assert sheet["B2"].data_type == "f" and sheet["B2"].value == '=IF(A2="","",EDATE(A2,1))'
    assert sheet["A3"].data_type == "s" and sheet["A3"].quotePrefix  # text stays text
    rows = XlsxWorkbook(p).read_table("Things").rows
    assert isinstance(rows[0]["Later"], UnsavedFormula)
    assert rows[1]["When"] == "=A2" and not isinstance(rows[1]["When"], UnsavedFormula)


# ---------------------------------------------------------------------------- hostile files


def _rewrite_sheet(path: Path, target: Path, change: Callable[[bytes], bytes]) -> None:
    with zipfile.ZipFile(path) as zi, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zo:
        for info in zi.infolist():
            data = zi.read(info.filename)
            zo.writestr(info, change(data) if info.filename == "xl/worksheets/sheet1.xml" else data)


_LAUGHS = b'<!DOCTYPE lolz [<!ENTITY lol0 "lol">' + b"".join(
    b'<!ENTITY lol%d "%s">' % (n, b"&lol%d;" % (n - 1) * 10) for n in range(1, 10)
)
_HOSTILE = {
    "entity bomb": (_LAUGHS + b"]>", b"&lol9;"),
    "external entity": (b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>', b"&xxe;"),
}


def test_openpyxl_parses_with_defusedxml() -> None:
    """defusedxml is a runtime dependency so that openpyxl never parses with plain expat."""
    assert openpyxl.DEFUSEDXML is True


@pytest.mark.parametrize("kind", sorted(_HOSTILE))
def test_a_workbook_with_xml_entities_is_refused_naming_the_file(
    path: Path, tmp_path: Path, kind: str
) -> None:
    doctype, ref = _HOSTILE[kind]
    hostile = tmp_path / "hostile.xlsx"
    _rewrite_sheet(path, hostile, lambda xml: doctype + xml.replace(b"First", ref, 1))
    with pytest.raises(InputError, match=r"hostile\.xlsx holds XML entity declarations"):
        XlsxWorkbook(hostile).read_table("Concerns")
    with pytest.raises(InputError, match=r"hostile\.xlsx holds XML entity declarations"):
        XlsxWorkbook(hostile, lock_wait_seconds=0.2).append_rows("Concerns", [{"Reference": "X"}])


def test_a_zip_bomb_is_refused_before_it_is_inflated(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small file that would inflate past the bound: refused from the zip directory."""
    monkeypatch.setattr(xlsx_mod, "MAX_UNPACKED_BYTES", 2**20)  # 200 MB in production
    bomb = tmp_path / "bomb.xlsx"
    pad = b" " * 3 * 2**20
    _rewrite_sheet(path, bomb, lambda xml: xml.replace(b"<sheetData>", pad + b"<sheetData>", 1))
    assert bomb.stat().st_size < 2**16
    with pytest.raises(InputError, match=r"bomb\.xlsx unpacks to 3 MB, more than the 1 MB"):
        XlsxWorkbook(bomb).read_table("Concerns")
    with pytest.raises(InputError, match=r"bomb\.xlsx unpacks to"):
        XlsxWorkbook(bomb, lock_wait_seconds=0.2).append_rows("Concerns", [{"Reference": "X"}])


@pytest.mark.usefixtures("open_umask")
def test_a_new_workbook_is_private_and_a_saved_one_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "register.xlsx"
    create_workbook(path, [SPEC])
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o640)  # the administrator's choice (e.g. the DSP's group) is kept
    wb = XlsxWorkbook(path, lock_wait_seconds=0.2)
    seen: list[int] = []
    real_save = xlsx_mod.openpyxl.Workbook.save

    def spy(book: object, target: Path) -> None:  # the temp file, before it is written
        seen.append(Path(target).stat().st_mode & 0o777)
        real_save(book, target)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(xlsx_mod.openpyxl.Workbook, "save", spy)
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0002", "Source key": "mail:b"}])
    assert seen == [0o640] and path.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / ".backups").stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / ".backups").iterdir()} == {0o640}


def test_unclosed_extension_tags_do_not_stall_the_writer(path: Path, tmp_path: Path) -> None:
    """Checked in linear time: a quadratic scan of 200,000 open tags would take hours."""
    hostile = tmp_path / "hostile.xlsx"
    _rewrite_sheet(path, hostile, lambda xml: xml.replace(b"</worksheet>", b"<extLst>" * 200_000))
    assert xlsx_mod.lossy_features(hostile) == []  # (and returns at once)
    blocks = list(xlsx_mod._extlst_blocks(b"<x:extLst><ext/></x:extLst><extLst>a</extLst><extLst>"))
    assert blocks == [b"<x:extLst><ext/></x:extLst>", b"<extLst>a</extLst>"]
