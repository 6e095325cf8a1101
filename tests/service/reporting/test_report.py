"""The board report: figures from tables built here, the workbook and its charts, the e-mail,
and that nothing from a concern row but counts ever leaves the register."""

from __future__ import annotations

import io
import logging
import re
import zipfile
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from openpyxl import load_workbook

from connectors.base import TableSpec
from connectors.memory import MemorySender, MemoryWorkbook
from connectors.report_xlsx import write_report_workbook
from service.app import App
from service.cases.register import REGISTER_COLUMNS
from service.compliance.workbook import (
    ACTION_COLUMNS,
    ACTION_SHEET,
    ACTION_TABLE,
    POLICY_COLUMNS,
    POLICY_SHEET,
    POLICY_TABLE,
    TRAINING_COLUMNS,
    TRAINING_SHEET,
    TRAINING_TABLE,
)
from service.config import Config, parse_config
from service.errors import ConfigError, InputError
from service.ledger import Ledger
from service.render import render_email
from service.reporting.report import (
    BoardReport,
    Period,
    already_sent,
    default_period,
    email_context,
    gather,
    recipients,
    report_command,
    send,
    yearly_period,
)
from tests.service.compliance.reminder_support import LONDON, Clock, workbook_from_specs

END = date(2026, 11, 25)
PERIOD = Period(date(2026, 8, 1), END)

# Planted in the register and the Training table: none may reach the report.
SECRETS = (
    "Zebedee Quartermaine",
    "SECRET-ACCOUNT-TEXT",
    "Zebedee summary",
    "LRN-99887",
    "Ottoline Reporter",
    "ottoline@example.org",
    "Secret Lane Campus",
    "Staffname",
    "staffer@example.org",
    "Hidden decision text",
)


def config_data(tmp_path: Path, **report: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "organisation": {"name": "Example Training Ltd"},
        "people": {
            "dsp": {"name": "Dana Example", "email": "dsp@example.org"},
            "admin_email": "admin@example.org",
        },
        "roles": {
            "Executive Director": ["ed@example.org"],
            "Operations Director": ["ops@example.org"],
            "Training Managers": ["tm@example.org"],
        },
        "areas": {
            "Warwickshire": {"aliases": ["Nuneaton"]},
            "Coventry": {},
        },
        "intake": {"address": "safeguarding@example.org"},
        "register": {"workbook": {"backend": "memory"}},
        "sending": {"sender": {"backend": "memory"}},
        "compliance": {"workbook": {"backend": "memory"}},
        "state": {"path": str(tmp_path / "state")},
    }
    if report:
        data["report"] = report
    return data


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=LONDON)


def register_row(**cells: Any) -> list[Any]:
    base = {
        "Reported by": "Ottoline Reporter",
        "Reporter email": "ottoline@example.org",
        "Person of concern": "Zebedee Quartermaine",
        "Learner ref": "LRN-99887",
        "DOB or age": "17",
        "Account": "SECRET-ACCOUNT-TEXT about Zebedee Quartermaine",
        "Summary": "Zebedee summary",
        "Decision and rationale": "Hidden decision text",
        **cells,
    }
    return [base.get(c.header) for c in REGISTER_COLUMNS]


CRIT = "More critical risk factors — Accessing extremist websites"
VULN = "Vulnerability — Personal crisis"
ACCESS = "Access to extremist influences — Use of closed network groups"
EXPER = "Experiences, behaviours and influences — Experience of peer rejection"


def register() -> MemoryWorkbook:
    wb = MemoryWorkbook(tz=LONDON, name="register.xlsx")
    rows = [
        register_row(
            **{
                "Reference": "PRV-2026-0001",
                "Recorded at": local(date(2026, 9, 10), 10),
                "Source": "E-mail",
                "Centre/area": "Nuneaton centre",
                "Risk indicators": f"Suggested from e-mail text (the DSP decides): {CRIT}; {VULN}",
                "Critical risk factor": "Suggested – please check",
                "Status": "Acknowledged",
            }
        ),
        register_row(
            **{
                "Reference": "PRV-2026-0002",
                "Recorded at": local(date(2026, 9, 20), 15),
                "Source": "Form",
                "Centre/area": "Coventry",
                "Risk indicators": f"Reported: {VULN}\nOther (as answered): Zebedee Quartermaine",
                "Critical risk factor": "No",
                "Status": "New",
            }
        ),
        register_row(
            **{
                "Reference": "PRV-2026-0003",
                "Recorded at": local(date(2026, 11, 1), 9),
                "Source": "Form",
                "Centre/area": "Secret Lane Campus",
                # A form: ticked options, then what its free-text answers' wording suggested
                # (counted as suggested, not as reported), then which words suggested it.
                "Risk indicators": f"Reported: {ACCESS}; {EXPER}\n"
                f"Suggested from the answers' wording (the DSP decides): {CRIT}\n"
                "Suggested from: 'extremist websites' → Accessing extremist websites",
                "Critical risk factor": "Yes – immediate danger reported",
                "Status": "referred",  # typed in lower case: still the register's choice
            }
        ),
        register_row(
            **{
                "Reference": "PRV-2026-0004",
                "Recorded at": local(date(2026, 11, 20), 12),
                "Source": "E-mail",
                "Centre/area": "",
                "Risk indicators": "",
                "Critical risk factor": "No",
                "Status": "Closed",
            }
        ),
        register_row(  # the evening before the period began: the previous academic year
            **{
                "Reference": "PRV-2026-0099",
                "Recorded at": local(date(2026, 7, 31), 23, 30),
                "Source": "E-mail",
                "Status": "Closed",
            }
        ),
        register_row(**{"Reference": "PRV-2026-0098", "Recorded at": "soon", "Source": "Form"}),
    ]
    wb.add_table("Concerns", [c.header for c in REGISTER_COLUMNS], rows, sheet="Register")
    return wb


def compliance() -> MemoryWorkbook:
    actions = [
        ("Obj A", "Finished thing", "Executive Director", date(2026, 1, 1), None, "", "Complete"),
        (
            "Obj B",
            "Due in thirty",
            "Operations Director",
            date(2026, 12, 25),
            None,
            "",
            "Not started",
        ),
        ("Obj C", "Due in thirty-one", "Operations Director", date(2026, 12, 26)),
        ("Obj D", "Overdue by one", "Executive Director", date(2026, 11, 24)),
        ("Obj E", "Due on the end day", "Executive Director", END),
        ("Obj F", "Owner nobody knows", "Head of Nothing", date(2027, 5, 1)),
        ("Obj G", "Due not understood", "Executive Director", "sometime soon?"),
        ("Obj H", "Each term", "Training Managers", "termly"),
        ("<script>alert(1)</script>", "=SUM(A1:A2) check", "Training Managers", date(2027, 6, 30)),
        ("Only an objective: a heading row",),
    ]
    policies = [
        ("Prevent policy", "Executive Director", date(2025, 11, 24), 12),  # due yesterday
        ("Safeguarding policy", "Executive Director", date(2026, 1, 20), 12),  # in 56 days
        ("Online safety policy", "Executive Director", date(2026, 1, 25), 12),  # in 61 days
        ("Mystery policy", "Executive Director", None, 12),  # no last review: not understood
    ]
    mail = "staffer@example.org"
    training = [
        ("Percival Staffname", mail, "Trainer", None, date(2020, 1, 1), date(2026, 1, 10)),
        ("Griselda Staffname", mail + ".uk", "Trainer", None, None, date(2025, 12, 20)),
        ("Barnaby Staffname", "b" + mail, "Assessor", None, None, date(2025, 11, 1)),
        ("Hortense Staffname", "h" + mail, "Assessor", None, date(2026, 11, 10), None),
        ("Ignatius Staffname", "i" + mail, "DSP", None, None, date(2025, 1, 10)),
        ("Ulrich Staffname", "", "Trainer", None, None, date(2026, 3, 1)),
    ]
    return workbook_from_specs(
        [
            TableSpec(ACTION_SHEET, ACTION_TABLE, ACTION_COLUMNS, tuple(actions)),
            TableSpec(POLICY_SHEET, POLICY_TABLE, POLICY_COLUMNS, tuple(policies)),
            TableSpec(TRAINING_SHEET, TRAINING_TABLE, TRAINING_COLUMNS, tuple(training)),
        ]
    )


def make_app(config: Config, sender: MemorySender | None = None) -> App:
    clock = Clock(local(END, 10).astimezone(UTC))
    app = App(
        config,
        ledger=Ledger(":memory:"),
        now=clock,
        sender=sender or MemorySender(),
        workbooks={"register": register(), "compliance": compliance()},
    )
    # What the escalation check recorded: first seen no longer New 3 h and 10 h after.
    for reference, recorded, left in (
        ("PRV-2026-0001", local(date(2026, 9, 10), 10), local(date(2026, 9, 10), 13)),
        ("PRV-2026-0003", local(date(2026, 11, 1), 9), local(date(2026, 11, 1), 19)),
        ("PRV-2026-0099", local(date(2026, 7, 31), 23, 30), local(date(2026, 8, 5), 9)),
    ):
        app.ledger.db.execute(
            "INSERT INTO concern_watch (reference, recorded_at, first_checked, left_new_at) "
            "VALUES (?, ?, ?, ?)",
            (
                reference,
                recorded.astimezone(UTC).isoformat(),
                recorded.astimezone(UTC).isoformat(),
                left.astimezone(UTC).isoformat(),
            ),
        )
    return app


@pytest.fixture
def app(tmp_path: Path) -> App:
    return make_app(parse_config(config_data(tmp_path)))


@pytest.fixture
def report(app: App) -> BoardReport:
    return gather(app, PERIOD)


def test_default_period_is_the_academic_year_to_date() -> None:
    assert default_period(date(2026, 7, 31)) == Period(date(2025, 8, 1), date(2026, 7, 31))
    assert default_period(date(2026, 8, 1)) == Period(date(2026, 8, 1), date(2026, 8, 1))
    assert yearly_period(date(2027, 9, 1)) == Period(date(2026, 8, 1), date(2027, 7, 31))
    assert yearly_period(date(2027, 7, 1)) == Period(date(2025, 8, 1), date(2026, 7, 31))


def test_concern_counts(report: BoardReport) -> None:
    c = report.concerns
    assert c.total == 4
    assert (c.unreadable_rows, c.unreadable_at) == (1, [7])  # named by sheet row, to fix it
    assert any("(sheet row 7: type the date" in line for line in report.summary_lines())
    assert [(m.isoformat(), n) for m, n in c.by_month] == [
        ("2026-08-01", 0),
        ("2026-09-01", 2),
        ("2026-10-01", 0),
        ("2026-11-01", 2),
    ]
    groups = {g.group: (g.concerns, g.suggested, g.reported) for g in c.by_group}
    assert groups == {
        "Vulnerability": (2, 1, 1),
        "Access to extremist influences": (1, 0, 1),
        "Experiences, behaviours and influences": (1, 0, 1),
        "More critical risk factors": (2, 2, 0),
    }
    assert c.no_indicator == 1
    assert c.critical == 2
    assert c.by_source == [("E-mail", 2), ("Form", 2)]
    assert c.by_area == [("Warwickshire", 1), ("Coventry", 1), ("Other", 1), ("Not stated", 1)]
    statuses = dict(c.by_status)
    assert (statuses["New"], statuses["Acknowledged"], statuses["Referred"]) == (1, 1, 1)
    assert statuses["Closed"] == 1 and statuses["In progress"] == 0
    assert (c.acknowledged, c.acknowledged_untimed, c.still_new) == (2, 1, 1)
    assert (c.ack_median_hours, c.ack_worst_hours) == (6.5, 10.0)


def test_training_counts_per_role(report: BoardReport) -> None:
    t = report.training_total
    assert (t.staff, t.current, t.due_soon, t.overdue, t.never, t.not_understood) == (
        6,
        3,
        1,
        1,
        1,
        1,
    )
    assert t.percent == 50.0
    roles = {r.role: (r.staff, r.current, r.percent) for r in report.training}
    assert roles == {"Assessor": (2, 0, 0.0), "DSP": (1, 1, 100.0), "Trainer": (3, 2, 66.7)}


def test_action_plan_rag_at_the_boundaries(report: BoardReport) -> None:
    rag = {a.action: (a.rag, a.note) for a in report.actions}
    assert rag["Finished thing"] == ("Green", "complete")
    assert rag["Due in thirty"] == ("Amber", "due in 30 days")
    assert rag["Due in thirty-one"] == ("Green", "due in 31 days")
    assert rag["Overdue by one"] == ("Red", "overdue 1 day")
    assert rag["Due on the end day"] == ("Amber", "due today")
    assert rag["Owner nobody knows"][0] == "Red"
    assert "unknown role 'Head of Nothing'" in rag["Owner nobody knows"][1]
    assert rag["Due not understood"][0] == "Red"
    assert rag["Each term"] == ("Amber", "recurring")
    assert rag["=SUM(A1:A2) check"][0] == "Green"
    assert len(report.actions) == 9  # the heading row is not an item
    assert report.rag_counts == {"Red": 3, "Amber": 3, "Green": 3}
    termly = next(a for a in report.actions if a.action == "Each term")
    assert termly.due == date(2026, 12, 19)  # the autumn term end
    owners = {a.action: a.owner for a in report.actions}
    assert owners["Owner nobody knows"] == "Head of Nothing"  # as written


def test_policies_due(report: BoardReport) -> None:
    states = {p.policy: (p.next_review, p.state) for p in report.policies}
    assert states["Prevent policy"] == (date(2026, 11, 24), "Overdue")
    assert states["Safeguarding policy"] == (date(2027, 1, 20), "Due within 60 days")
    assert states["Online safety policy"] == (date(2027, 1, 25), "Up to date")
    assert states["Mystery policy"][1] == "Not understood"
    assert (report.policies_overdue, report.policies_soon) == (1, 1)


def test_workbook_sheets_charts_dates_and_text(report: BoardReport, tmp_path: Path) -> None:
    path = write_report_workbook(report, tmp_path / "out" / "report.xlsx")
    assert path.is_file() and not list(path.parent.glob(".*"))  # no temp file left
    book = load_workbook(path)
    assert book.sheetnames == [
        "Summary",
        "Concerns by month",
        "Indicator groups",
        "Concern breakdown",
        "Training",
        "Action plan",
        "RAG",
        "Policies",
    ]
    charts = {ws.title: ws._charts for ws in book.worksheets if ws._charts}
    assert set(charts) == {"Concerns by month", "Indicator groups", "Training", "RAG"}
    refs = {
        title: (
            type(found[0]).__name__,
            found[0].series[0].val.numRef.f,
            (found[0].series[0].cat.strRef or found[0].series[0].cat.numRef).f,
        )
        for title, found in charts.items()
    }
    assert refs["Concerns by month"] == (
        "BarChart",
        "'Concerns by month'!$C$2:$C$5",
        "'Concerns by month'!$A$2:$A$5",
    )
    assert refs["Indicator groups"][1] == "'Indicator groups'!$B$2:$B$5"
    assert refs["Training"][1] == "'Training'!$H$2:$H$5"  # three roles and the total
    assert refs["RAG"][1] == "'RAG'!$B$2:$B$4"
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(values_only=True)}
    assert summary["Period from"] == datetime(2026, 8, 1)
    assert summary["Concerns"] == 4
    assert summary["Staff with Prevent training current (%)"] == 50.0
    month = book["Concerns by month"]
    assert month["B2"].value == datetime(2026, 8, 1) and month["B2"].is_date
    assert [month.cell(r, 3).value for r in range(2, 6)] == [0, 2, 0, 2]
    plan = book["Action plan"]
    formula_like = next(row[1] for row in plan.iter_rows(min_row=2) if row[1].value.startswith("="))
    assert formula_like.data_type == "s" and formula_like.quotePrefix
    assert formula_like.value == "=SUM(A1:A2) check"
    assert isinstance(plan["D3"].value, datetime)  # "Due in thirty": a real date
    assert book["Policies"]["C2"].value == datetime(2026, 11, 24)


def test_email_is_escaped_and_has_table_charts(report: BoardReport) -> None:
    html, text = render_email(
        "report", organisation="Example Training Ltd", **email_context(report)
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" not in html  # green items stay in the workbook
    assert "<script>" not in html
    assert "<img" not in html and "<svg" not in html
    assert 'width="100%" height="14" bgcolor="#1e3a8a"' in html  # Sep and Nov: the longest bar
    assert "Prevent training: 50.0% of 6 staff current" in html
    assert "Action plan: 3 red, 3 amber, 3 green" in html
    assert html.index("Overdue by one") < html.index("Due in thirty")  # red before amber
    assert "CONCERNS: 4" in text
    assert "Head of Nothing" in text


def test_email_sentences_are_spaced_and_name_the_attached_workbook(report: BoardReport) -> None:
    """Each sentence of the concerns paragraph ends a template line: the line break was
    trimmed, so the HTML read "…in this period.Referrals made: …"."""
    html, text = render_email(
        "report", organisation="x", attachment="board.xlsx", **email_context(report)
    )
    assert not re.search(r"\.(Referrals|Time to first|Follow-ups)", html), html
    assert "The workbook with the charts, to print or file, is attached (board.xlsx)." in html
    assert "The workbook with the charts, to print or file, is attached (board.xlsx)." in text
    assert "\n\n\n" not in text and "\nBy source" in text
    assert not re.search(r"No indicator recorded: \d+\nBy source", text)


def test_table_values_are_escaped_in_the_html(app: App) -> None:
    wb = app.workbook("compliance")
    assert isinstance(wb, MemoryWorkbook)
    wb.tables[ACTION_TABLE].rows[3][1] = "<script>alert(1)</script> & review"  # "Overdue by one"
    html, text = render_email("report", organisation="x", **email_context(gather(app, PERIOD)))
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; review" in html
    assert "<script>" not in html
    assert "<script>alert(1)</script> & review" in text  # plain text is not HTML


def test_nothing_but_counts_leaves_the_register(
    app: App, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    report = gather(app, PERIOD)
    path = write_report_workbook(report, tmp_path / "report.xlsx")
    assert send(app, report) == 2
    message = app.sender().sent[0]  # type: ignore[attr-defined]
    book = load_workbook(path)
    cells = " ".join(
        str(value)
        for ws in book.worksheets
        for row in ws.iter_rows(values_only=True)
        for value in row
        if value is not None
    )
    logs = " ".join(r.getMessage() for r in caplog.records)
    assert "Coventry" in cells and "Head of Nothing" in message.text  # the search can find
    for secret in SECRETS:
        for where, content in (
            ("xlsx", cells),
            ("html", message.html),
            ("text", message.text),
            ("subject", message.subject),
            ("logs", logs),
        ):
            assert secret not in content, f"{secret!r} found in the {where}"
    for reference in ("PRV-2026-0001", "PRV-2026-0003"):
        assert reference not in cells + message.html + message.text


def test_send_goes_once_per_period_to_the_default_recipients(app: App) -> None:
    report = gather(app, PERIOD)
    assert send(app, report) == 2
    sender = app.sender()
    assert isinstance(sender, MemorySender)
    assert sender.sent[0].to == ("ed@example.org", "dsp@example.org")
    assert (
        "01 Aug 2026 to 25 Nov 2026: 4 concern(s), training 50% current" in sender.sent[0].subject
    )
    sender.sent.clear()  # a memory sender would also skip a repeated Message-ID
    assert send(app, report) == 0
    assert sender.sent == []
    assert send(app, gather(app, Period(date(2026, 9, 1), END))) == 2  # another period: sent


def test_report_recipients_from_config(tmp_path: Path) -> None:
    config = parse_config(
        config_data(tmp_path, recipients=["training managers", "board.chair@example.org"])
    )
    assert recipients(make_app(config)) == ["tm@example.org", "board.chair@example.org"]
    with pytest.raises(ConfigError) as failed:
        parse_config(config_data(tmp_path, recipients=["Executive Director", "Trustees"]))
    assert failed.value.key == "report.recipients[1]"
    assert "'Trustees'" in str(failed.value)
    with pytest.raises(ConfigError, match=r"^report\.colour: unknown key"):
        parse_config(config_data(tmp_path, colour="red"))
    with pytest.raises(ConfigError, match=r"^report\.send_on: '13-01' is not a month-day"):
        parse_config(config_data(tmp_path, send_on="13-01"))
    assert parse_config(config_data(tmp_path)).report_folder == tmp_path / "state" / "reports"


def test_without_compliance_the_report_still_counts_concerns(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    del data["compliance"]
    report = gather(make_app(parse_config(data)), PERIOD)
    assert report.concerns.total == 4
    assert report.compliance_note == "no [compliance] section in the config"
    assert report.actions == [] and report.training_total.staff == 0
    html, text = render_email("report", organisation="x", **email_context(report))
    assert "No compliance figures: no [compliance] section in the config." in html
    assert "No compliance figures: no [compliance] section in the config." in text
    book = load_workbook(write_report_workbook(report, tmp_path / "r.xlsx"))
    assert "Training" not in book.sheetnames and "Concerns by month" in book.sheetnames


def _register_of(*recorded: Any) -> MemoryWorkbook:
    wb = MemoryWorkbook(tz=LONDON, name="register.xlsx")
    rows = [
        register_row(**{"Reference": f"PRV-2026-{n:04d}", "Recorded at": at, "Source": "Form"})
        for n, at in enumerate(recorded, start=1)
    ]
    wb.add_table("Concerns", [c.header for c in REGISTER_COLUMNS], rows, sheet="Register")
    return wb


def test_recorded_at_in_every_form_counts_in_its_local_month(app: App) -> None:
    # 31 July 23:30 UTC is 00:30 on 1 August in London (BST): this academic year, August.
    # Naive values are local already. Graph gives Excel serials; people and flows type text.
    app._workbooks["register"] = _register_of(
        datetime(2026, 7, 31, 23, 30, tzinfo=UTC),  # aware: stored as local 1 Aug 00:30
        "2026-07-31 23:30:00+00:00",  # str() of an aware datetime
        "2026-07-31T23:30:00.000Z",  # JSON, with milliseconds
        "2026-08-01T00:30",  # naive local, no seconds
        46235.0208333,  # serial: 1 Aug 2026 00:30 local
        datetime(2026, 7, 31, 23, 30),  # naive local: still July, the year before
        "2026-07-31T22:59:59Z",  # 23:59:59 BST on 31 July
        46234.9791667,  # serial: 31 Jul 2026 23:30 local
        "2026-11-25 23:59",  # the end day, local
        datetime(2026, 11, 26, 0, 1, tzinfo=UTC),  # the day after the end (GMT)
    )
    c = gather(app, PERIOD).concerns
    assert c.unreadable_rows == 0
    assert (c.total, c.by_month[0], c.by_month[-1]) == (
        6,
        (date(2026, 8, 1), 5),
        (date(2026, 11, 1), 1),
    )


class CountingWorkbook(MemoryWorkbook):
    def __init__(self, inner: MemoryWorkbook) -> None:
        super().__init__(tz=LONDON, name=inner.name)
        self.tables = inner.tables
        self.reads: list[str] = []

    def read_table(self, table: str) -> Any:
        self.reads.append(table)
        return super().read_table(table)


def test_each_table_is_read_once(app: App) -> None:
    # On Graph every read is a request; two reads of a table a person is editing could also
    # pair one row's cells with another row's due date.
    register_wb, compliance_wb = (app.workbook(r) for r in ("register", "compliance"))
    assert isinstance(register_wb, MemoryWorkbook) and isinstance(compliance_wb, MemoryWorkbook)
    counted = {
        "register": CountingWorkbook(register_wb),
        "compliance": CountingWorkbook(compliance_wb),
    }
    app._workbooks.update(counted)
    report = gather(app, PERIOD)
    assert report.concerns.total == 4 and report.training_total.staff == 6
    assert counted["register"].reads == ["Concerns"]
    assert sorted(counted["compliance"].reads) == sorted(
        [ACTION_TABLE, POLICY_TABLE, TRAINING_TABLE]
    )


def test_a_report_without_its_compliance_figures_is_not_sent(app: App, tmp_path: Path) -> None:
    wb = app.workbook("compliance")
    assert isinstance(wb, MemoryWorkbook)
    training = wb.tables.pop(TRAINING_TABLE)  # a sheet deleted by mistake
    out = io.StringIO()
    kwargs: dict[str, Any] = {"start": PERIOD.start, "end": END, "path": tmp_path / "r.xlsx"}
    assert report_command(app, write_report_workbook, out, send_it=True, **kwargs) == 1
    assert "Not sent: the compliance figures are missing" in out.getvalue()
    assert "Sent to" not in out.getvalue()
    sender = app.sender()
    assert isinstance(sender, MemorySender) and sender.sent == []
    with pytest.raises(InputError, match="Training"):
        send(app, gather(app, PERIOD))
    assert not already_sent(app, PERIOD)
    wb.tables[TRAINING_TABLE] = training  # put back: the full report goes, once
    out = io.StringIO()
    assert report_command(app, write_report_workbook, out, send_it=True, **kwargs) == 0
    assert "Sent to 2 recipient(s)." in out.getvalue()
    assert "training 50% current" in sender.sent[0].subject


def test_charts_show_their_axes_and_text_labels(report: BoardReport, tmp_path: Path) -> None:
    # Without an explicit <c:delete val="0"/> Excel hides both axes (openpyxl 3.1 omits it);
    # the categories are text, so a string reference.
    path = write_report_workbook(report, tmp_path / "report.xlsx")
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n))
        roots = [ElementTree.fromstring(z.read(n)) for n in names]  # noqa: S314 (our own file)
    ns = {"c": "http://schemas.openxmlformats.org/drawingml/2006/chart"}
    labels: list[str] = []
    for root in roots:
        axes = root.findall(".//c:catAx", ns) + root.findall(".//c:valAx", ns)
        assert [ax.find("c:delete", ns).get("val") for ax in axes] == ["0", "0"]  # type: ignore[union-attr]
        labels += [f.text or "" for f in root.findall(".//c:ser/c:cat/c:strRef/c:f", ns)]
    assert sorted(labels) == [
        "'Concerns by month'!$A$2:$A$5",
        "'Indicator groups'!$A$2:$A$5",
        "'RAG'!$A$2:$A$4",
        "'Training'!$A$2:$A$5",
    ]
    assert load_workbook(path)["RAG"]._charts  # openpyxl reads it back


def test_a_starter_who_joins_after_the_end_date_is_not_counted(app: App) -> None:
    # HR adds new starters before their first day; the yearly report (to 31 July) runs in
    # September. Hortense starts on 10 November: not staff on 5 November, not "never trained".
    report = gather(app, Period(date(2026, 8, 1), date(2026, 11, 5)))
    t = report.training_total
    assert (t.staff, t.never) == (5, 0)
    assert {r.role: r.staff for r in report.training}["Assessor"] == 1


@pytest.mark.usefixtures("open_umask")
def test_the_report_workbook_is_private(report: BoardReport, tmp_path: Path) -> None:
    path = write_report_workbook(report, tmp_path / "out" / "report.xlsx")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
