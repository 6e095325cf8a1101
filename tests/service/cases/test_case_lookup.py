"""`case PRV-…` on a local register finds its rows from the sheet's bytes: the same output as
the row-by-row read, also after the DSP sorted the tables, typed a chronology row of their own,
edited a reference and saved the file in another office program."""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest

import connectors.xlsx_append as append_mod
from connectors.xlsx import create_workbook
from service.admin.setup import init_folder
from service.app import App
from service.cases import casefile, chronology
from service.cases.register import register_table_spec
from service.config import load_config

WANTED = "PRV-2026-00025"


def build(folder: Path, concerns: int = 60, events: int = 400) -> Path:
    """A local service folder whose register holds ``concerns`` rows and ``events`` events."""
    init_folder(folder, demo=False, today=date(2026, 11, 24))
    register = folder / "workbooks" / "concern-register.xlsx"
    register.unlink()
    spec, chron = register_table_spec(), chronology.chronology_table_spec()
    headers = [c.header for c in spec.columns]
    start = datetime(2026, 1, 5, 9, 0)
    rows = []
    for n in range(1, concerns + 1):
        values: dict[str, Any] = {
            "Reference": f"PRV-2026-{n:05d}",
            "Received at": start + timedelta(hours=n),
            "Summary": f"Concern number {n}",
            "Account": "Line one of the account.\nLine two, with & and <angle>.",
            "Status": "Closed" if n % 3 == 0 else "In progress",
            "DOB or age": "17",
            "Source key": f"mail:{n}",
        }
        rows.append(tuple(values.get(h) for h in headers))
    chron_rows = [
        (
            f"PRV-2026-{n % concerns + 1:05d}",
            start + timedelta(minutes=n),
            ("Reported", "Alert sent", "Status changed")[n % 3],
            "Service",
            f"Note {n}",
            f"key|{n}",
        )
        for n in range(events)
    ]
    create_workbook(
        register,
        [
            type(spec)(spec.sheet, spec.table, spec.columns, rows=tuple(rows)),
            type(chron)(chron.sheet, chron.table, chron.columns, rows=tuple(chron_rows)),
        ],
    )
    return folder


def case(folder: Path, reference: str = WANTED) -> str:
    app = App(load_config(folder / "config.toml"))
    try:
        out = io.StringIO()
        casefile.case_command(app, reference, out)
        return out.getvalue()
    finally:
        app.close()


def both_ways(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, int]:
    """The output found from the bytes, the output read row by row, and how many look-ups the
    bytes answered."""
    answered = 0
    real = append_mod.rows_matching

    def counting(*args: Any, **kw: Any) -> Any:
        nonlocal answered
        got = real(*args, **kw)
        answered += got is not None
        return got

    monkeypatch.setattr(append_mod, "rows_matching", counting)
    fast = case(folder)
    monkeypatch.setattr(append_mod, "rows_matching", lambda *a, **k: None)
    slow = case(folder)
    return fast, slow, answered


def test_case_from_the_bytes_prints_what_the_row_by_row_read_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = build(tmp_path / "svc")
    fast, slow, answered = both_ways(folder, monkeypatch)
    assert answered == 2  # the register row and the chronology
    assert fast == slow
    assert "Concern number 25" in fast and "Line two, with & and <angle>." in fast
    assert "Chronology (7 entries)" in fast  # events 24, 84, … 384 of 400


def test_a_sorted_and_edited_register_still_gives_the_right_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DSP sorts both tables newest first, edits the case's reference (lower case, spaces
    around it: still the case), types an undated chronology row of their own, and saves in
    LibreOffice (shared strings, calculated formulas): rows are found where they are now."""
    folder = build(tmp_path / "svc")
    register = folder / "workbooks" / "concern-register.xlsx"
    book = openpyxl.load_workbook(register)
    for ws in book.worksheets:
        grid = [[c.value for c in row] for row in ws.iter_rows(min_row=2)]
        for r, values in enumerate(reversed(grid), start=2):
            for c, value in enumerate(values, start=1):
                ws.cell(r, c).value = value
    ws = book["Register"] if "Register" in book.sheetnames else book.worksheets[0]
    for row in ws.iter_rows(min_row=2, max_col=1):
        if row[0].value == WANTED:
            row[0].value = f"  {WANTED.lower()} "
    chron = book["Chronology"]
    table = chron.tables[chronology.TABLE]
    last = int(table.ref.split(":")[1].lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")) + 1
    chron.cell(last, 1).value = WANTED
    chron.cell(last, 3).value = "Phoned the parent"
    chron.cell(last, 5).value = "Typed by the DSP"
    table.ref = f"A1:F{last}"
    table.autoFilter.ref = table.ref
    book.save(register)
    if shutil.which("soffice") is None:
        pytest.fail("LibreOffice (soffice) is not installed; .ci/run installs it")
    out = tmp_path / "lo"
    subprocess.run(
        [
            "soffice",
            f"-env:UserInstallation=file://{tmp_path / 'lo-profile'}",
            "--headless",
            "--convert-to",
            "xlsx",
            "--outdir",
            str(out),
            str(register),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    shutil.copy2(out / register.name, register)

    fast, slow, answered = both_ways(folder, monkeypatch)
    assert answered == 2
    assert fast == slow
    assert "Concern number 25" in fast and "Concern number 24" not in fast
    assert "Chronology (8 entries)" in fast and "Typed by the DSP" in fast
    assert case(folder, "PRV-2026-00026").count("Concern number 26") == 1
