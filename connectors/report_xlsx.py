"""The board report as an .xlsx file: a Summary sheet, one sheet per table, native charts.

Written with openpyxl beside the xlsx backend so that it stores text the same way: text that
Excel would read as a formula (``= + - @``) is kept as text with the quote prefix, and cells
are fitted to Excel's limits (``fit_cell``). Dates are real dates. The file is written to a
temporary name in the same folder and renamed, so a reader never sees half a workbook.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpyxl import Workbook as XlWorkbook
from openpyxl.chart import BarChart, Reference
from openpyxl.chart.data_source import AxDataSource, StrRef
from openpyxl.styles import Font, PatternFill
from openpyxl.worksheet.worksheet import Worksheet

from connectors.files import PRIVATE_DIR, write_atomic
from connectors.xlsx import DATE_FORMAT, DATETIME_FORMAT, fit_cell, looks_like_formula
from service.errors import PermanentError

if TYPE_CHECKING:
    from service.reporting.report import BoardReport

_BOLD = Font(bold=True)
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
    summary["A1"].font = Font(bold=True, size=14)
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
        _bar(ws, "Action plan RAG status", "Items", len(rag), cats=1, data=2, at="D2")

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
) -> None:
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
    ws.add_chart(chart, at)


def _save(book: XlWorkbook, path: Path) -> Path:
    path = Path(path)
    buffer = io.BytesIO()
    book.save(buffer)
    try:
        path.parent.mkdir(PRIVATE_DIR, parents=True, exist_ok=True)
        write_atomic(path, buffer.getvalue())
    except OSError as exc:
        raise PermanentError(f"cannot write the report to {path}: {exc.strerror}") from exc
    return path
