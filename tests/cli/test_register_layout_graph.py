"""The register a DSP can work in, on Microsoft 365: ``provision`` makes the register on the
(emulated) SharePoint site, ``poll`` adds the demo's concerns through the Excel table API, and
the file then has the same layout facts as a local register (issue 8): column order, frozen
panes, row heights, widths, drop-downs, print titles, real date cells, and the Retention
review formula filled into every row Graph added."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.utils import get_column_letter

from service.cases.register import REGISTER_COLUMNS, RETENTION_REVIEW, retention_formula
from tests.cli.test_e2e_graph import REGISTER, cli
from tests.cli.test_provision import folder, provision, tenant  # noqa: F401 (fixture)
from tests.connectors.harness_graph import MAILBOX, SITE_HOST, SITE_PATH

HEADERS = [c.header for c in REGISTER_COLUMNS]


def test_a_register_graph_made_and_filled_has_the_working_layout(
    graph: Any,
    folder: Path,  # noqa: F811
) -> None:
    tenant(graph, folder)
    made = provision(folder)
    assert made.returncode in (0, 1), made.stderr  # 1: check has remarks about the demo
    for eml in sorted((folder / "inbox").glob("*.eml")):
        graph.deliver(MAILBOX, eml.read_bytes())
    polled = cli(folder, "poll")
    assert "logged=5" in polled.stdout + polled.stderr, polled.stdout + polled.stderr

    book = openpyxl.load_workbook(io.BytesIO(graph.get_file(SITE_HOST, SITE_PATH, REGISTER)))
    ws = book["Register"]
    table = ws.tables["Concerns"]
    assert [c.value for c in ws[1]] == HEADERS
    assert ws.freeze_panes == "D2"  # Reference, Received at, Status stay in view
    assert ws.sheet_format.defaultRowHeight == 39 and ws.row_dimensions[1].height == 44
    assert ws.column_dimensions["A"].width == 15
    assert ws.print_title_rows == "$1:$1" and ws.page_setup.orientation == "landscape"
    status = get_column_letter(HEADERS.index("Status") + 1)
    assert any(
        str(dv.sqref).startswith(f"{status}2:") and dv.formula1.startswith('"New,')
        for dv in ws.data_validations.dataValidation
    )

    cells = ws[table.ref][1:]
    rows = [
        (row, {h: c.value for h, c in zip(HEADERS, row, strict=True)})
        for row in cells
        if row[0].value  # Graph adds after the table's empty first row, as Excel does
    ]
    assert len(rows) == 5
    retention = HEADERS.index(RETENTION_REVIEW)
    for row, values in rows:
        assert isinstance(values["Received at"], datetime), values["Reference"]
        assert isinstance(values["Recorded at"], datetime)
        assert row[retention].value == "=" + retention_formula("Concerns")
        assert row[HEADERS.index("Account")].alignment.wrap_text
        assert "hh:mm" in row[HEADERS.index("Received at")].number_format
    emailed = [v for _, v in rows if v["Source"] == "E-mail"]
    assert emailed and all(v["Occurred at"] is None for v in emailed)
    assert any(str(v["Centre/area"]).endswith("(suggested from the e-mail text)") for v in emailed)
