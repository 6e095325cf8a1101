"""The board report as an .xlsx file: a Summary sheet, one sheet per table, native charts.

Written with openpyxl beside the xlsx backend so that it stores text the same way: text that
Excel would read as a formula (``= + - @``) is kept as text with the quote prefix, and cells
are fitted to Excel's limits (``fit_cell``). Dates are real dates. The file is written to a
temporary name in the same folder and renamed, so a reader never sees half a workbook.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpyxl import Workbook as XlWorkbook
from openpyxl.chart import BarChart, Reference
from openpyxl.chart.data_source import AxDataSource, StrRef
from openpyxl.chart.marker import DataPoint
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.worksheet.pagebreak import Break
from openpyxl.worksheet.worksheet import Worksheet

from connectors.files import PRIVATE_DIR, write_atomic
from connectors.xlsx import DATE_FORMAT, DATETIME_FORMAT, fit_cell, looks_like_formula
from service.errors import PermanentError

if TYPE_CHECKING:
    from service.reporting.report import BoardReport

_BOLD = Font(name="Calibri", bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="DBEAFE")
_RAG_FILL = {
    "Red": PatternFill("solid", fgColor="FCA5A5"),
    "Amber": PatternFill("solid", fgColor="FCD34D"),
    "Green": PatternFill("solid", fgColor="86EFAC"),
}


def write_report_workbook(report: BoardReport, path: Path) -> Path:
    """Write ``report`` to ``path`` (folders made as needed); returns the path."""
    from service.reporting.report import POLICY_SOON_DAYS, SOON_DAYS

    book = XlWorkbook()
    summary = book.active
    assert summary is not None
    summary.title = "Summary"
    c, t = report.concerns, report.training_total
    rag = report.rag_counts
    rows: list[tuple[Any, Any]] = [
        ("Organisation", report.organisation),
        ("Period from", report.period.start),
        ("Period to", report.period.end),
        ("Generated at", report.generated_at.replace(tzinfo=None)),
        ("", ""),
        ("Concerns", c.total),
        ("Critical (a more critical risk factor or immediate danger)", c.critical),
        ("Acknowledged, with a time recorded", c.acknowledged),
        ("Acknowledged, no time recorded", c.acknowledged_untimed),
        ("Still New", c.still_new),
        ("Time to acknowledge, median (hours)", c.ack_median_hours),
        ("Time to acknowledge, worst (hours)", c.ack_worst_hours),
        ("Time to first decision, median (hours)", c.decision_median_hours),
        ("Follow-ups added to cases (not counted as concerns)", c.follow_ups),
        *((f"Referrals made: {name}", n) for name, n in c.referrals),
    ]
    if c.unreadable_rows:
        rows.append(("Register rows not counted (no readable time)", c.unreadable_rows))
    if report.compliance_note:
        rows.append(("Compliance", report.compliance_note))
    else:
        rows += [
            ("Staff with Prevent training current (%)", t.percent),
            ("Staff", t.staff),
            (f"Training due within {SOON_DAYS} days", t.due_soon),
            ("Training overdue", t.overdue),
            ("Never trained", t.never),
            ("Training rows not understood", t.not_understood),
            ("Action plan items Red", rag["Red"]),
            ("Action plan items Amber", rag["Amber"]),
            ("Action plan items Green", rag["Green"]),
            ("Policies overdue for review", report.policies_overdue),
            (f"Policies due for review within {POLICY_SOON_DAYS} days", report.policies_soon),
        ]
    rows += [
        ("", ""),
        ("Note", "Counts only: no names, learner references or concern details."),
    ]
    summary.append(["Prevent report"])
    summary["A1"].font = Font(name="Calibri", bold=True, size=14)
    for label, value in rows:
        _append(summary, [label, value])
    summary.column_dimensions["A"].width = 58
    summary.column_dimensions["B"].width = 40

    ws = _sheet(book, "Concerns by month", ["Month", "Month starting", "Concerns"], [24, 16, 12])
    for month, count in c.by_month:
        _append(ws, [f"{month:%b %Y}", month, count])
    _bar(ws, "Concerns per month", "Concerns", len(c.by_month), cats=1, data=3, at="E2")

    ws = _sheet(
        book,
        "Indicator groups",
        ["Indicator group", "Concerns", "Suggested from e-mail text", "Ticked on the form"],
        [40, 12, 16, 16],
    )
    for group in c.by_group:
        _append(ws, [group.group, group.concerns, group.suggested, group.reported])
    _bar(ws, "Concerns by indicator group", "Concerns", len(c.by_group), cats=1, data=2, at="F2")
    _append(ws, [""])
    _append(ws, ["No indicator recorded", c.no_indicator])
    _append(ws, ["A concern counts once in each group it touches."])

    ws = _sheet(book, "Concern breakdown", ["By", "Value", "Concerns"], [14, 30, 12])
    for by, pairs in (("Source", c.by_source), ("Centre/area", c.by_area), ("Status", c.by_status)):
        for value, count in pairs:
            _append(ws, [by, value, count])

    if not report.compliance_note:
        ws = _sheet(
            book,
            "Training",
            [
                "Role",
                "Staff",
                "Current",
                f"Due within {SOON_DAYS} days",
                "Overdue",
                "Never trained",
                "Not understood",
                "Current (%)",
            ],
            [24, 8, 10, 14, 10, 12, 14, 12],
        )
        for row in [*report.training, t]:
            _append(
                ws,
                [
                    row.role,
                    row.staff,
                    row.current,
                    row.due_soon,
                    row.overdue,
                    row.never,
                    row.not_understood,
                    row.percent,
                ],
            )
        ws.cell(ws.max_row, 1).font = _BOLD
        _bar(
            ws,
            "Prevent training current (%)",
            "Current (%)",
            len(report.training) + 1,
            cats=1,
            data=8,
            at="J2",
        )

        ws = _sheet(
            book,
            "Action plan",
            ["Objective", "Action", "Owner", "Due", "Due as written", "Status", "RAG", "Note"],
            [36, 40, 22, 12, 18, 14, 8, 30],
        )
        for action in report.actions:
            _append(
                ws,
                [
                    action.objective,
                    action.action,
                    action.owner,
                    action.due,
                    action.due_text,
                    action.status,
                    action.rag,
                    action.note,
                ],
            )
            ws.cell(ws.max_row, 7).fill = _RAG_FILL[action.rag]

        ws = _sheet(book, "RAG", ["RAG", "Action plan items"], [10, 18])
        for name, count in rag.items():
            _append(ws, [name, count])
            ws.cell(ws.max_row, 1).fill = _RAG_FILL[name]
        chart = _bar(ws, "Action plan RAG status", "Items", len(rag), cats=1, data=2, at="D2")
        for index, name in enumerate(rag):  # each bar in its own colour: red, amber, green
            point = DataPoint(idx=index)
            point.graphicalProperties.solidFill = _RAG_COLOURS[name]
            point.graphicalProperties.line.solidFill = _RAG_COLOURS[name]
            chart.series[0].dPt.append(point)

        ws = _sheet(
            book,
            "Policies",
            ["Policy", "Owner", "Next review", "State", "Note"],
            [36, 22, 14, 20, 30],
        )
        for policy in report.policies:
            _append(
                ws, [policy.policy, policy.owner, policy.next_review, policy.state, policy.note]
            )
    return _save(book, path)


def _sheet(
    book: XlWorkbook, title: str, headers: Sequence[str], widths: Sequence[int]
) -> Worksheet:
    ws = book.create_sheet(title)
    _append(ws, list(headers))
    for n, width in enumerate(widths, start=1):
        cell = ws.cell(1, n)
        cell.font, cell.fill = _BOLD, _HEAD_FILL
        ws.column_dimensions[cell.column_letter].width = width
    ws.freeze_panes = "A2"
    return ws


def _append(ws: Worksheet, values: Sequence[Any]) -> None:
    """One row; text stays text (never a formula), dates get a date format."""
    row = ws.max_row + 1 if ws.max_row > 1 or ws.cell(1, 1).value is not None else 1
    for col, value in enumerate(values, start=1):
        cell = ws.cell(row, col)
        if isinstance(value, str):
            cell.value = fit_cell(value)
            cell.data_type = "s"  # openpyxl would turn "=…" into a formula
            cell.quotePrefix = looks_like_formula(value)
        elif isinstance(value, datetime):
            cell.value = value
            cell.number_format = DATETIME_FORMAT
        elif isinstance(value, date):
            cell.value = value
            cell.number_format = DATE_FORMAT
        else:
            cell.value = value


def _bar(
    ws: Worksheet, title: str, y_title: str, rows: int, *, cats: int, data: int, at: str
) -> BarChart:
    """A clustered bar chart of column ``data`` (header in row 1) by column ``cats``."""
    chart = BarChart()
    chart.type = "col"
    chart.title = title
    chart.y_axis.title = y_title
    chart.legend = None
    chart.width, chart.height = 18, 9
    # openpyxl 3.1 leaves out <c:delete> on the axes, and Excel then shows neither the labels
    # nor the scale: say they are kept, as Excel itself writes.
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    chart.add_data(Reference(ws, min_col=data, min_row=1, max_row=1 + rows), titles_from_data=True)
    # The categories are text (months as "Aug 2026", groups, roles): a string reference, not
    # the numeric one ``set_categories`` writes.
    labels = Reference(ws, min_col=cats, min_row=2, max_row=1 + rows)
    for series in chart.series:
        series.cat = AxDataSource(strRef=StrRef(f=str(labels)))
    ws.add_chart(chart, at)  # (placed below the table for printing by _place_charts)
    return chart


# Printing (the board pack is read on paper): landscape A4, one page wide, the header row on
# every page, each chart whole on a page. Applied to every sheet at the end, so a sheet added
# later gets it too.
_PAGE_HEIGHT_PT = 480.0  # printable height of landscape A4 with the margins below, in points
_CHART_GAP_ROWS = 2
_RAG_COLOURS = {"Red": "DC2626", "Amber": "F59E0B", "Green": "16A34A"}


def _lay_out_for_print(book: XlWorkbook) -> None:
    for ws in book.worksheets:
        table_sheet = ws.title != "Summary"
        if table_sheet:
            _fit_header(ws)
        _fit_rows(ws)
        _place_charts(ws)
        ws.page_setup.orientation = "landscape"
        ws.page_setup.paperSize = ws.PAPERSIZE_A4
        ws.page_setup.fitToWidth = 1
        ws.page_setup.fitToHeight = 0  # as many pages down as it takes
        ws.sheet_properties.pageSetUpPr.fitToPage = True
        ws.page_margins.left = ws.page_margins.right = 0.5
        ws.page_margins.top = ws.page_margins.bottom = 0.6
        ws.print_options.horizontalCentered = True
        if table_sheet:
            ws.print_title_rows = "1:1"
        ws.oddHeader.left.text = "&A"  # the sheet's name
        ws.oddFooter.center.text = "Page &P of &N"


def _fit_header(ws: Worksheet) -> None:
    """Headers wrap at word breaks inside their column (never run into the next header)."""
    lines = 1
    for cell in ws[1]:
        if cell.value is None:
            continue
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        width = ws.column_dimensions[cell.column_letter].width or 8.43
        lines = max(lines, _lines(str(cell.value), width, bold=True))
    ws.row_dimensions[1].height = 15.0 * lines


def _fit_rows(ws: Worksheet) -> None:
    """Long text wraps in its column and the row is made tall enough for it: Excel does not
    grow a row by itself when a program wrote the file (LibreOffice does)."""
    for row in ws.iter_rows(min_row=2):
        lines = 1
        for cell in row:
            if isinstance(cell.value, str) and cell.value:
                width = ws.column_dimensions[cell.column_letter].width or 8.43
                lines = max(lines, _lines(cell.value, width))
        if lines > 1:
            ws.row_dimensions[row[0].row].height = 15.0 * lines
            for cell in row:  # the whole row reads from the top, beside the wrapped text
                cell.alignment = Alignment(wrap_text=isinstance(cell.value, str), vertical="top")


def _lines(text: str, width: float, *, bold: bool = False) -> int:
    """How many lines ``text`` takes wrapped at word breaks in a column ``width`` characters
    wide (a little narrower for bold; a header also leaves room for Excel's filter button)."""
    # A column's width counts digit widths; ordinary text is narrower than digits.
    room = max(4, int(width) - 3 if bold else int(width * 1.1))
    total = 0
    for paragraph in text.splitlines() or [""]:
        total += max(1, len(textwrap.wrap(paragraph, room, break_long_words=True)))
    return total


def _row_height(ws: Worksheet, row: int) -> float:
    return ws.row_dimensions[row].height or 15.0


def _place_charts(ws: Worksheet) -> None:
    """Each chart below the table (not beside it, which would shrink the page to fit both
    across), starting on a new page when it would not fit whole under what is above it."""
    charts = list(ws._charts)
    if not charts:
        return
    row = ws.max_row + _CHART_GAP_ROWS
    used = sum(_row_height(ws, r) for r in range(1, row))
    for chart in charts:
        height_pt = chart.height / 2.54 * 72  # chart sizes are in cm
        used = used % _PAGE_HEIGHT_PT
        if used + height_pt > _PAGE_HEIGHT_PT and row > 1:
            ws.row_breaks.append(Break(id=row - 1))  # a page break above the chart
            used = 0.0
        chart.anchor = f"A{row}"
        rows_taken = int(height_pt // 15.0) + 1 + _CHART_GAP_ROWS
        row += rows_taken
        used += rows_taken * 15.0


def _save(book: XlWorkbook, path: Path) -> Path:
    path = Path(path)
    _lay_out_for_print(book)
    buffer = io.BytesIO()
    book.save(buffer)
    try:
        path.parent.mkdir(PRIVATE_DIR, parents=True, exist_ok=True)
        write_atomic(path, buffer.getvalue())
    except OSError as exc:
        raise PermanentError(f"cannot write the report to {path}: {exc.strerror}") from exc
    return path
