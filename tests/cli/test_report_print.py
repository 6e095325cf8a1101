"""The board report prints (issue 8): every sheet landscape and one page wide with its header
row repeated, headers that wrap inside their columns, each chart below its table and whole on
a page, and the action plan RAG chart in red, amber and green. Read back with openpyxl from
the workbook ``report`` writes for the demo."""

from __future__ import annotations

import textwrap

import pytest
from openpyxl import load_workbook
from openpyxl.workbook.workbook import Workbook

from connectors.report_xlsx import _PAGE_HEIGHT_PT
from tests.cli.helpers import run_cli


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Workbook:
    folder = tmp_path_factory.mktemp("print") / "demo"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    config = str(folder / "config.toml")
    assert run_cli("--config", config, "poll").returncode == 0
    out = folder / "board.xlsx"
    made = run_cli("--config", config, "report", "--out", str(out))
    assert made.returncode == 0, made.stderr
    return load_workbook(out)


def test_every_sheet_prints_landscape_one_page_wide(report: Workbook) -> None:
    assert len(report.worksheets) >= 8
    for ws in report.worksheets:
        setup = ws.page_setup
        assert setup.orientation == "landscape", ws.title
        assert ws.sheet_properties.pageSetUpPr.fitToPage, ws.title
        assert (setup.fitToWidth, setup.fitToHeight) == (1, 0), ws.title
        if ws.title != "Summary":
            assert ws.print_title_rows == "$1:$1", ws.title  # the header row on every page


def test_headers_wrap_inside_their_columns(report: Workbook) -> None:
    """No header runs into the next ("Due within 30 dOverdue"): each wraps at word breaks and
    the header row is tall enough for the longest."""
    for ws in report.worksheets[1:]:
        needed = 1
        for cell in ws[1]:
            if cell.value is None:
                continue
            assert cell.alignment.wrap_text, (ws.title, cell.value)
            width = ws.column_dimensions[cell.column_letter].width
            needed = max(needed, len(textwrap.wrap(str(cell.value), int(width) - 3)))
        assert (ws.row_dimensions[1].height or 15) >= 15 * needed, ws.title
    training = report["Training"]
    due = next(c for c in training[1] if str(c.value).startswith("Due within"))
    assert training.row_dimensions[1].height >= 30  # "Due within 30 days" takes two lines
    assert due.alignment.wrap_text


def test_charts_sit_below_their_tables_and_are_never_split(report: Workbook) -> None:
    seen = 0
    for ws in report.worksheets:
        breaks = sorted(b.id for b in ws.row_breaks.brk)
        for chart in ws._charts:
            seen += 1
            anchor = chart.anchor._from
            assert anchor.col == 0, ws.title  # column A: not beside the table
            last_data = max(r for r in range(1, anchor.row + 1) if ws.cell(r, 1).value is not None)
            assert anchor.row + 1 > last_data, ws.title  # below everything written
            # Rows from the page's first row (after the last break above) down to the chart,
            # plus the chart, fit on one printed page.
            top = max([b for b in breaks if b <= anchor.row], default=0) + 1
            above = sum(ws.row_dimensions[r].height or 15 for r in range(top, anchor.row + 1))
            assert above + chart.height / 2.54 * 72 <= _PAGE_HEIGHT_PT, ws.title
    assert seen == 4  # months, indicator groups, training, RAG


def test_the_rag_chart_is_red_amber_and_green(report: Workbook) -> None:
    ws = report["RAG"]
    (chart,) = ws._charts
    labels = [ws.cell(r, 1).value for r in range(2, 5)]
    assert labels == ["Red", "Amber", "Green"]
    colours = {p.idx: str(p.graphicalProperties.solidFill.srgbClr) for p in chart.series[0].dPt}
    assert colours == {0: "DC2626", 1: "F59E0B", 2: "16A34A"}
