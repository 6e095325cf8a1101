"""read_rows_where: one case's row without reading the whole register where the backend can
(the local xlsx one streams the sheet), and always the same rows read_table would give."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from connectors.base import Table, UnsavedFormula, read_rows_where, rows_where
from connectors.memory import MemoryWorkbook
from connectors.xlsx import XlsxWorkbook, create_workbook
from service.cases.register import REFERENCE, RETENTION_REVIEW, register_table_spec

LONDON = ZoneInfo("Europe/London")


def rows(n: int) -> list[dict[str, object]]:
    return [
        {
            REFERENCE: f"PRV-2026-{i:04d}",
            "Received at": datetime(2026, 11, 1 + i % 28, 9, i % 60, tzinfo=LONDON),
            "Status": "New",
            "Summary": f"=not a formula {i}",  # formula-like text stays text
            "Source key": f"key-{i}",
        }
        for i in range(1, n + 1)
    ]


@pytest.fixture
def xlsx(tmp_path: Path) -> XlsxWorkbook:
    path = tmp_path / "register.xlsx"
    spec = register_table_spec("Concerns")
    create_workbook(path, [spec], tz=LONDON)
    workbook = XlsxWorkbook(path, tz=LONDON, streaming=True)
    workbook.append_rows("Concerns", rows(40), key_column="Source key")
    return workbook


def same(a: Table, b: Table) -> None:
    assert a.headers == b.headers
    assert a.rows == b.rows
    assert a.row_numbers == b.row_numbers


def test_xlsx_finds_the_rows_read_table_would_give(xlsx: XlsxWorkbook) -> None:
    wanted = [" prv-2026-0007", "PRV-2026-0031", "PRV-2026-9999"]  # spacing, case, no such
    found = read_rows_where(xlsx, "Concerns", REFERENCE, wanted)
    same(found, rows_where(xlsx.read_table("Concerns"), REFERENCE, wanted))
    assert [r[REFERENCE] for r in found.rows] == ["PRV-2026-0007", "PRV-2026-0031"]
    assert found.rows[0]["Summary"] == "=not a formula 7"
    # The calculated column nobody has calculated yet reads as its formula, as in read_table.
    assert isinstance(found.rows[0][RETENTION_REVIEW], UnsavedFormula)


def test_xlsx_reads_the_value_excel_saved_for_a_formula(xlsx: XlsxWorkbook) -> None:
    """A file Excel saved holds the formula's value: that is what is read (simulated by
    writing the cached value into the sheet XML the way Excel does)."""
    import zipfile

    path = xlsx.path
    with zipfile.ZipFile(path) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    sheet = next(n for n in parts if n.startswith("xl/worksheets/sheet"))
    xml = parts[sheet].decode()
    # openpyxl writes <c r=".."><f>…</f><v></v></c>; give the 7th data row's formula a value.
    wb = openpyxl.load_workbook(path)
    ws = wb.worksheets[0]
    headers = [c.value for c in ws[1]]
    col = openpyxl.utils.get_column_letter(headers.index(RETENTION_REVIEW) + 1)
    cell = f"{col}8"
    start = xml.index(f'<c r="{cell}"')
    end = xml.index("</c>", start)
    formula = xml[start:end]
    value = "<v>50000</v>"
    cached = formula.split("<v")[0] + value if "<v" in formula else formula + value
    parts[sheet] = (xml[:start] + cached + xml[end:]).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    found = read_rows_where(xlsx, "Concerns", REFERENCE, ["PRV-2026-0007"])
    same(found, rows_where(xlsx.read_table("Concerns"), REFERENCE, ["PRV-2026-0007"]))
    assert found.rows[0][RETENTION_REVIEW] == date(2036, 11, 21)  # serial 50000, a date cell


def test_memory_backend_filters_its_table() -> None:
    memory = MemoryWorkbook(tz=LONDON)
    spec = register_table_spec("Concerns")
    memory.add_table("Concerns", [c.header for c in spec.columns], [], sheet="Register")
    memory.append_rows("Concerns", rows(5))
    found = read_rows_where(memory, "Concerns", "reference", ["prv-2026-0002"])
    assert [r[REFERENCE] for r in found.rows] == ["PRV-2026-0002"]
