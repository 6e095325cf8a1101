"""The board / inspectors report (design.md, flow 5): figures for a period, as counts only.

``gather`` reads the concern register and the compliance workbook through the App and works
out, for a period (default: the academic year to date, from 1 August):

- concerns per month (every month of the period, zeros included), per indicator group (a
  concern counts once in each group it touches; the register says whether its indicators were
  suggested from e-mail text or ticked by the reporter on the form, not whether the DSP
  confirmed them), per source, per configured area, per status; how many were critical; and
  time-to-acknowledge from what the escalation check recorded in the ledger;
- Prevent training: staff current at the end date, due within 30 days, overdue, never
  trained, per role (counts, never names);
- every action plan item with a RAG status, and the policies with their next review.

Least data: no names, learner refs, concern text or reporter details leave the register.
Areas are counted by the config's ``[areas]`` names (free text that matches none is "Other"),
statuses by the register's own choices ("Other" for anything else), so nothing a person typed
in a concern row reaches the report. Due dates and owners are read by
``service.compliance.workbook`` (the same rules as the reminders), never by a second parser.

The e-mail is ``templates/report.*.j2``; the workbook is written by
``connectors.report_xlsx`` (openpyxl, native charts). ``--send`` and the yearly job send once
per period: the Message-ID is keyed on the period and recorded in ``sent_messages``.
"""

from __future__ import annotations

import logging
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, TextIO

from connectors.base import Attachment, CellUpdate, Table, TableSpec, Workbook, read_columns
from service.app import App
from service.cases.escalation import time_to_acknowledge
from service.cases.register import (
    RECORDED_AT,
    REFERENCE,
    STATUS,
    STATUS_CHOICES,
    STATUS_NEW,
    dated_rows,
)
from service.cases.watch import REFERRALS
from service.compliance.duedates import next_working_day, parse_due
from service.compliance.owners import norm
from service.compliance.reminders import record_sent
from service.compliance.workbook import (
    ACTION_TABLE,
    POLICY_TABLE,
    TRAINING_TABLE,
    Problem,
    calendar_for,
    read_compliance,
    status_key,
)
from service.errors import ConnectorError, InputError, PreventServiceError, TransientError
from service.indicators import GROUPS
from service.values import as_text, sheet_row

log = logging.getLogger("prevent_service.report")

KIND = "board-report"
SOON_DAYS = 30  # actions and training: "due within 30 days"
POLICY_SOON_DAYS = 60
SOURCES = ("E-mail", "Form")
NOT_STATED, OTHER = "Not stated", "Other"
RED, AMBER, GREEN = "Red", "Amber", "Green"
RAGS = (RED, AMBER, GREEN)
_KV_YEARLY = "report.yearly_sent"
YEARLY_CATCH_UP_DAYS = 30  # after send_on, a worker that was down still sends it this long

Writer = Callable[["BoardReport", Path], Path]


# ---------------------------------------------------------------------------- period


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    @property
    def key(self) -> str:
        return f"{self.start.isoformat()}|{self.end.isoformat()}"

    @property
    def label(self) -> str:
        return f"{self.start:%d %b %Y} to {self.end:%d %b %Y}"

    def months(self) -> list[date]:
        """The first day of every month the period touches."""
        out, day = [], self.start.replace(day=1)
        while day <= self.end:
            out.append(day)
            day = (day + timedelta(days=32)).replace(day=1)
        return out


def academic_year_start(day: date) -> date:
    """1 August on or before ``day``."""
    return date(day.year if day.month >= 8 else day.year - 1, 8, 1)


def default_period(today: date) -> Period:
    return Period(academic_year_start(today), today)


def check_period(start: date, end: date) -> Period:
    if end < start:
        raise ValueError(f"--to {end.isoformat()} is before --from {start.isoformat()}")
    return Period(start, end)


# ---------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class GroupCount:
    group: str
    concerns: int
    suggested: int  # indicators suggested from e-mail text (the DSP decides)
    reported: int  # ticked by the reporter on the form


@dataclass
class ConcernFigures:
    total: int = 0
    by_month: list[tuple[date, int]] = field(default_factory=list)
    by_group: list[GroupCount] = field(default_factory=list)
    no_indicator: int = 0
    by_source: list[tuple[str, int]] = field(default_factory=list)
    by_area: list[tuple[str, int]] = field(default_factory=list)
    by_status: list[tuple[str, int]] = field(default_factory=list)
    critical: int = 0
    acknowledged: int = 0  # with a time recorded by the escalation check
    acknowledged_untimed: int = 0  # status moved on, but no check saw it happen
    still_new: int = 0
    ack_median_hours: float | None = None
    ack_worst_hours: float | None = None
    # The case record (service.cases): follow-ups are not concerns; first decisions and
    # referrals as the escalation check saw them in the DSP's columns.
    follow_ups: int = 0  # new information added to a case in the period
    decided: int = 0  # concerns with a first decision timed
    decision_median_hours: float | None = None
    referrals: list[tuple[str, int]] = field(default_factory=list)  # referral → concerns
    unreadable_rows: int = 0  # register rows with no readable "Recorded at": not counted
    unreadable_at: list[int] = field(default_factory=list)  # their sheet rows, to fix them


@dataclass
class TrainingCount:
    role: str
    staff: int = 0
    current: int = 0
    due_soon: int = 0  # current, but due within 30 days of the end date
    overdue: int = 0
    never: int = 0
    not_understood: int = 0

    @property
    def percent(self) -> float:
        return round(100 * self.current / self.staff, 1) if self.staff else 0.0


@dataclass(frozen=True)
class ActionRow:
    objective: str
    action: str
    owner: str
    due: date | None
    due_text: str
    status: str
    rag: str
    note: str


@dataclass(frozen=True)
class PolicyRow:
    policy: str
    owner: str
    next_review: date | None
    state: str  # Overdue | Due within 60 days | Up to date | Not understood
    note: str = ""


@dataclass
class BoardReport:
    organisation: str
    period: Period
    generated_at: datetime  # local
    concerns: ConcernFigures
    training: list[TrainingCount] = field(default_factory=list)
    training_total: TrainingCount = field(default_factory=lambda: TrainingCount("All staff"))
    actions: list[ActionRow] = field(default_factory=list)
    policies: list[PolicyRow] = field(default_factory=list)
    compliance_note: str = ""  # why there are no compliance figures, when there are none
    # The error behind the note when the compliance workbook could not be read: a report
    # without those figures is not sent (the send is once per period; it would block the full one).
    compliance_error: PreventServiceError | None = field(default=None, repr=False, compare=False)

    @property
    def rag_counts(self) -> dict[str, int]:
        counts = Counter(a.rag for a in self.actions)
        return {rag: counts[rag] for rag in RAGS}

    @property
    def policies_overdue(self) -> int:
        return sum(p.state == "Overdue" for p in self.policies)

    @property
    def policies_soon(self) -> int:
        return sum(p.state.startswith("Due within") for p in self.policies)

    def summary_lines(self) -> list[str]:
        c, t, rag = self.concerns, self.training_total, self.rag_counts
        ack = (
            f"median {c.ack_median_hours:.1f} h, worst {c.ack_worst_hours:.1f} h "
            f"over {c.acknowledged} concern(s)"
            if c.ack_median_hours is not None and c.ack_worst_hours is not None
            else "none recorded yet (the escalation check records it when a concern leaves New)"
        )
        decision = (
            f"median {c.decision_median_hours:.1f} h over {c.decided} concern(s)"
            if c.decision_median_hours is not None
            else "none recorded yet (seen when a decision, referral or closure is entered)"
        )
        referred = ", ".join(f"{name} {n}" for name, n in c.referrals) or "none"
        lines = [
            f"Prevent report {self.period.start} to {self.period.end} ({self.organisation})",
            f"  concerns: {c.total} ({c.critical} critical; {c.still_new} still New); "
            f"follow-ups added to cases: {c.follow_ups}",
            f"  time to acknowledge: {ack}",
            f"  time to first decision: {decision}",
            f"  referrals made: {referred}",
        ]
        if self.compliance_note:
            lines.append(f"  compliance: {self.compliance_note}")
        else:
            lines += [
                f"  training: {t.current} of {t.staff} staff current ({t.percent:g}%); "
                f"{t.due_soon} due within {SOON_DAYS} days, {t.overdue} overdue, "
                f"{t.never} never trained, {t.not_understood} not understood",
                f"  action plan: {rag[RED]} red, {rag[AMBER]} amber, {rag[GREEN]} green",
                f"  policies: {len(self.policies)} listed; {self.policies_overdue} overdue, "
                f"{self.policies_soon} due within {POLICY_SOON_DAYS} days",
            ]
        if c.unreadable_rows:
            rows = ", ".join(str(n) for n in c.unreadable_at[:10])
            more = ", …" if len(c.unreadable_at) > 10 else ""
            lines.append(
                f"  note: {c.unreadable_rows} register row(s) without a readable "
                f'"{RECORDED_AT}" were not counted (sheet row {rows}{more}: '
                "type the date and time there, e.g. 2026-09-10 14:30)"
            )
        return lines


# ---------------------------------------------------------------------------- gathering


def gather(app: App, period: Period) -> BoardReport:
    """Read the register and the compliance workbook; figures for ``period``."""
    report = BoardReport(
        organisation=app.config.organisation.name,
        period=period,
        generated_at=app.local_now().replace(microsecond=0),
        concerns=_concerns(app, period),
    )
    if app.config.compliance is None:
        report.compliance_note = "no [compliance] section in the config"
    else:
        try:
            _compliance(app, period.end, report)
        except (InputError, ConnectorError) as exc:
            # Messages name tables and columns, never cell content.
            report.compliance_note = f"the compliance workbook could not be read: {exc}"
            report.compliance_error = exc
    log.info(
        "report %s: %d concern(s), %d staff, %d action(s), %d policy row(s)",
        period.key,
        report.concerns.total,
        report.training_total.staff,
        len(report.actions),
        len(report.policies),
    )
    return report


def _concerns(app: App, period: Period) -> ConcernFigures:
    config = app.config
    tz = config.organisation.tz
    referral_columns = [choice for choice, _ in REFERRALS]
    # Only the columns counted here (not the accounts' text): a local register streams them.
    wanted = [REFERENCE, RECORDED_AT, "Summary", "Risk indicators", "Source", "Centre/area"]
    wanted += [STATUS, "Critical risk factor", *referral_columns]
    table = read_columns(app.workbook("register"), config.register.table, wanted)
    figures = ConcernFigures()
    months: Counter[date] = Counter()
    groups: Counter[str] = Counter()
    suggested: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    acks = time_to_acknowledge(app)
    decisions = time_to_first_decision(app)
    hours: list[float] = []
    decision_hours: list[float] = []
    referrals: Counter[str] = Counter()
    status_names = {norm(s): s for s in STATUS_CHOICES}
    dated, figures.unreadable_at = dated_rows(table, tz)
    figures.unreadable_rows = len(figures.unreadable_at)
    for concern in dated:
        reference, row = concern.reference, concern.cells
        day = concern.recorded_at.astimezone(tz).date()
        if not period.start <= day <= period.end:
            continue
        if LEGACY_FOLLOW_UP.match(as_text(row.get("Summary"))):
            figures.follow_ups += 1  # a row the previous version made for a follow-up
            continue
        figures.total += 1
        for column in referral_columns:
            if norm(as_text(row.get(column))) == norm("Referred"):
                referrals[column] += 1
        if reference in decisions:
            decision_hours.append(decisions[reference].total_seconds() / 3600)
        months[day.replace(day=1)] += 1
        reported_here, suggested_here = _indicator_groups(as_text(row.get("Risk indicators")))
        touched = [g.name for g in GROUPS if g.name in reported_here | suggested_here]
        for name in touched:
            groups[name] += 1
            if name not in reported_here:  # only suggested, by e-mail text or answers' wording
                suggested[name] += 1
        if not touched:
            figures.no_indicator += 1
        source = as_text(row.get("Source"))
        sources[source if source in SOURCES else OTHER] += 1
        areas[_area(app, as_text(row.get("Centre/area")))] += 1
        status = as_text(row.get(STATUS))
        status = status_names.get(norm(status), OTHER) if status else STATUS_NEW
        statuses[status] += 1
        critical = as_text(row.get("Critical risk factor")).lower()
        if critical and not critical.startswith("no"):
            figures.critical += 1
        if reference in acks:
            figures.acknowledged += 1
            hours.append(acks[reference].total_seconds() / 3600)
        elif status == STATUS_NEW:
            figures.still_new += 1
        else:
            figures.acknowledged_untimed += 1
    figures.by_month = [(m, months[m]) for m in period.months()]
    figures.by_group = [
        GroupCount(g.name, groups[g.name], suggested[g.name], groups[g.name] - suggested[g.name])
        for g in GROUPS
    ]
    figures.by_source = [(s, sources[s]) for s in SOURCES] + (
        [(OTHER, sources[OTHER])] if sources[OTHER] else []
    )
    names = [*config.areas, OTHER, NOT_STATED]
    figures.by_area = [(a, areas[a]) for a in names if areas[a] or a in config.areas]
    figures.by_status = [(s, statuses[s]) for s in STATUS_CHOICES] + (
        [(OTHER, statuses[OTHER])] if statuses[OTHER] else []
    )
    if hours:
        figures.ack_median_hours = round(statistics.median(hours), 1)
        figures.ack_worst_hours = round(max(hours), 1)
    if decision_hours:
        figures.decided = len(decision_hours)
        figures.decision_median_hours = round(statistics.median(decision_hours), 1)
    figures.referrals = [(c, referrals[c]) for c in referral_columns]
    figures.follow_ups += follow_ups_in(app, period, tz)
    return figures


# A register row the version before the case record made for a follow-up ("Follow-up to
# PRV-…: …" in its Summary): counted as a follow-up, not a concern.
LEGACY_FOLLOW_UP = re.compile(r"^Follow-up to [A-Z][A-Z0-9]{0,9}-\d{4}-\d{4,}\b")


def follow_ups_in(app: App, period: Period, tz: tzinfo) -> int:
    """Follow-ups this ledger added to cases, first seen in the period."""
    rows = app.ledger.db.execute(
        "SELECT first_seen FROM items WHERE case_ref IS NOT NULL AND state = 'done'"
    ).fetchall()
    days = (datetime.fromisoformat(r[0]).astimezone(tz).date() for r in rows)
    return sum(period.start <= d <= period.end for d in days)


def time_to_first_decision(app: App) -> dict[str, timedelta]:
    """Reference → time from "Recorded at" to the first check that saw a decision."""
    rows = app.ledger.db.execute(
        "SELECT reference, recorded_at, decided_at FROM concern_watch WHERE decided_at IS NOT NULL"
    ).fetchall()
    return {
        r[0]: max(timedelta(0), datetime.fromisoformat(r[2]) - datetime.fromisoformat(r[1]))
        for r in rows
    }


def _indicator_groups(cell: str) -> tuple[set[str], set[str]]:
    """The groups a register's "Risk indicators" cell names as reported (ticked on the form)
    and as suggested (from an e-mail's text or a form's free-text answers), line by line: a
    form's cell holds both ("Reported: …" then "Suggested from the answers' wording …")."""
    reported: set[str] = set()
    suggested: set[str] = set()
    for line in cell.splitlines():
        if line.startswith(("Other (as answered)", "Suggested from:")):
            continue  # free text, and the words that suggested an indicator
        named = {g.name for g in GROUPS if f"{g.name} — " in line}
        (suggested if line.startswith("Suggested") else reported).update(named)
    return reported, suggested


def _area(app: App, text: str) -> str:
    """The configured area a concern's "Centre/area" names (as alerts match it)."""
    wanted = norm(text)
    if not wanted:
        return NOT_STATED
    for name, area in app.config.areas.items():
        if name.lower() in wanted or any(a.lower() in wanted for a in area.aliases if a):
            return name
    return OTHER


class _ReadOnce:
    """A workbook whose tables are read once: ``read_compliance`` and the rows listed here
    must come from the same read (a person's edit in between would pair a row with another
    row's item), and on Graph each read is a request (a whole-file download in file mode)."""

    def __init__(self, inner: Workbook) -> None:
        self.inner = inner
        self.tables: dict[str, Table] = {}

    def read_table(self, table: str) -> Table:
        if table not in self.tables:
            self.tables[table] = self.inner.read_table(table)
        return self.tables[table]

    # The report only reads (``write_ids=False``); the rest is the Workbook protocol, passed on.
    def append_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], *, key_column: str | None = None
    ) -> None:
        self.tables.pop(table, None)
        self.inner.append_rows(table, rows, key_column=key_column)

    def find_rows(self, table: str, column: str, values: Sequence[str]) -> dict[str, int]:
        return self.inner.find_rows(table, column, values)

    def update_cells(self, table: str, updates: Sequence[CellUpdate]) -> int:
        self.tables.pop(table, None)
        return self.inner.update_cells(table, updates)

    def writable(self) -> str | None:
        return self.inner.writable()

    def ensure_table(self, spec: TableSpec) -> bool:
        return self.inner.ensure_table(spec)

    def close(self) -> None:
        self.inner.close()


def _numbered_rows(workbook: Workbook, name: str) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(sheet, Excel row number, row by normalised header) for each row of table ``name``: the
    keys ``read_compliance`` reports its items and problems by."""
    table = workbook.read_table(name)
    sheet = table.sheet or table.name
    for i, raw in enumerate(table.rows):
        yield sheet, sheet_row(table, i), {norm(k): v for k, v in raw.items()}


def _compliance(app: App, end: date, report: BoardReport) -> None:
    cfg = app.config.compliance
    assert cfg is not None
    workbook = _ReadOnce(app.workbook("compliance"))
    data = read_compliance(app.config, workbook, app.ledger, end, write_ids=False)
    calendar = calendar_for(cfg)
    items = {(item.sheet, item.row): item for item in data.items}
    problems: dict[tuple[str, int], Problem] = {}
    for each in data.problems:
        problems.setdefault((each.sheet, each.row), each)
    done = {status_key(s) for s in cfg.done_statuses}

    # Action plan: every item, RAG at the end date.
    for sheet, number, row in _numbered_rows(workbook, ACTION_TABLE):
        action, owner = as_text(row.get("action")), as_text(row.get("owner"))
        due_cell = row.get("due")
        if not (action or owner or as_text(due_cell)):
            continue  # blank, or a heading row (only an objective), as the reminders see it
        status = as_text(row.get("status"))
        item = items.get((sheet, number))
        problem = problems.get((sheet, number))
        due: date | None = None
        due_text = as_text(due_cell)
        if status_key(status) in done:
            spec = parse_due(due_cell)
            due = calendar.first_due(spec, None) if spec.understood else None
            rag, note = GREEN, "complete"
        elif item is None:
            rag = RED
            note = f"not understood: {problem.reason}" if problem else "not understood"
        else:
            due_text = item.spec.text
            if item.spec.recurring:
                due = calendar.occurrence_on_or_after(item.spec, end, item.first_seen)
                rag, note = AMBER, "recurring"
            else:
                due = item.first_due(calendar)
                rag, note = _rag(due, end)
        report.actions.append(
            ActionRow(
                objective=as_text(row.get("objective")),
                action=action,
                owner=owner,
                due=due,
                due_text=due_text,
                status=status,
                rag=rag,
                note=note,
            )
        )

    # Policies.
    for sheet, number, row in _numbered_rows(workbook, POLICY_TABLE):
        name, owner = as_text(row.get("policy")), as_text(row.get("owner"))
        if not (name or owner or as_text(row.get("last reviewed"))):
            continue
        item = items.get((sheet, number))
        problem = problems.get((sheet, number))
        if item is None or item.spec.due is None:
            reason = problem.reason if problem else "not understood"
            report.policies.append(PolicyRow(name, owner, None, "Not understood", reason))
            continue
        days = (item.spec.due - end).days
        state = (
            "Overdue"
            if days < 0
            else f"Due within {POLICY_SOON_DAYS} days"
            if days <= POLICY_SOON_DAYS
            else "Up to date"
        )
        report.policies.append(PolicyRow(name, owner, item.spec.due, state))

    # Training: counts per role; a person is a row the reader made an item or a problem of.
    roles: dict[str, TrainingCount] = {}
    total = TrainingCount("All staff")
    for sheet, number, row in _numbered_rows(workbook, TRAINING_TABLE):
        item = items.get((sheet, number))
        if item is None and (sheet, number) not in problems:
            continue  # a blank row
        start = _one_day(row.get("start date"))
        if start is not None and start > end:
            continue  # a new starter added before their first day: not staff at the end date
        role = as_text(row.get("role")) or NOT_STATED
        counts = roles.setdefault(norm(role), TrainingCount(role))
        for target in (counts, total):
            target.staff += 1
            if item is None or item.spec.due is None:
                target.not_understood += 1
            elif item.kind == "induction":
                target.never += 1
            elif item.spec.due < end:
                target.overdue += 1
            else:
                target.current += 1
                if (item.spec.due - end).days <= SOON_DAYS:
                    target.due_soon += 1
    report.training = sorted(roles.values(), key=lambda r: norm(r.role))
    report.training_total = total


def _one_day(value: Any) -> date | None:
    """A date cell as the compliance reader takes it (a month counts from its first day)."""
    spec = parse_due(value)
    if not spec.understood or spec.recurring or spec.immediate:
        return None
    return date(spec.month[0], spec.month[1], 1) if spec.month else spec.due


def _rag(due: date | None, end: date) -> tuple[str, str]:
    """Red overdue, Amber due within 30 days (inclusive), Green more than 30 days ahead."""
    if due is None:
        return RED, "no due date understood"
    days = (due - end).days
    if days < 0:
        return RED, f"overdue {-days} day{'s' if days != -1 else ''}"
    if days <= SOON_DAYS:
        return AMBER, "due today" if days == 0 else f"due in {days} day{'s' if days != 1 else ''}"
    return GREEN, f"due in {days} days"


# ---------------------------------------------------------------------------- e-mail


def _bars(rows: Iterable[tuple[str, float]], percent: bool = False) -> list[dict[str, Any]]:
    """Rows for the e-mail's table "charts": a coloured cell whose width is the share."""
    rows = list(rows)
    top = 100.0 if percent else max((v for _, v in rows), default=0) or 1
    return [
        {"label": label, "value": value, "width": round(100 * value / top) if value else 0}
        for label, value in rows
    ]


def email_context(report: BoardReport) -> dict[str, Any]:
    c = report.concerns
    return {
        "period": report.period,
        "generated_at": report.generated_at,
        "concerns": c,
        "months": _bars((f"{m:%b %Y}", n) for m, n in c.by_month),
        "groups": _bars((g.group, g.concerns) for g in c.by_group),
        "group_rows": c.by_group,
        "sources": _bars(c.by_source),
        "areas": _bars(c.by_area),
        "statuses": _bars(c.by_status),
        "compliance_note": report.compliance_note,
        "training": report.training,
        "training_total": report.training_total,
        "training_bars": _bars(
            [(t.role, t.percent) for t in report.training]
            + [(report.training_total.role, report.training_total.percent)],
            percent=True,
        ),
        "rag": report.rag_counts,
        "rag_bars": _bars(report.rag_counts.items()),
        "actions": sorted(
            (a for a in report.actions if a.rag != GREEN), key=lambda a: RAGS.index(a.rag)
        ),
        "green_count": report.rag_counts[GREEN],
        "policies": report.policies,
        "soon_days": SOON_DAYS,
        "policy_soon_days": POLICY_SOON_DAYS,
    }


def recipients(app: App) -> list[str]:
    """``[report] recipients`` as addresses; by default the Executive Director role and the
    DSP (the config check made sure every role named exists)."""
    config = app.config
    entries = config.report.recipients
    out: list[str] = []
    if entries is None:
        out += config.role_addresses("Executive Director")
        out.append(config.people.dsp.email)
    else:
        for entry in entries:
            out += [entry.strip()] if "@" in entry else config.role_addresses(entry)
    return list(dict.fromkeys(a for a in out if a))


def message_id(app: App, period: Period) -> str:
    return app.message_id(KIND, period.key)


def already_sent(app: App, period: Period) -> bool:
    found = app.ledger.db.execute(
        "SELECT 1 FROM sent_messages WHERE message_id = ?", (message_id(app, period),)
    ).fetchone()
    return found is not None


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def send(app: App, report: BoardReport, workbook: Path | None = None) -> int:
    """Send the report e-mail once per period, with ``workbook`` (the charts) attached; returns
    how many recipients it went to (0 if it had gone already)."""
    period = report.period
    if report.compliance_error is not None:
        # Once per period: a report without its training and action plan figures would stand
        # in for the full one. The caller retries (the yearly job) or says so (the command).
        log.warning("report %s not sent: the compliance workbook could not be read", period.key)
        raise report.compliance_error
    if already_sent(app, period):
        log.info("report %s already sent: not sent again", period.key)
        return 0
    to = recipients(app)
    t = report.training_total
    subject = f"Prevent report {period.label}: {report.concerns.total} concern(s)"
    if not report.compliance_note:
        subject += f", training {t.percent:g}% current"
    attached = [Attachment(workbook.name, workbook.read_bytes(), XLSX_TYPE)] if workbook else []
    message = app.compose(
        kind=KIND,
        key=period.key,
        to=to,
        subject=subject,
        template="report",
        context={**email_context(report), "attachment": workbook.name if workbook else ""},
        attachments=attached,
    )
    app.send(message)
    record_sent(app, message.message_id, KIND, to, period.end, report.concerns.total)
    log.info("report %s sent to %d recipient(s)", period.key, len(to))
    return len(to)


def default_path(app: App, period: Period) -> Path:
    return app.config.report_folder / (
        f"prevent-report-{period.start.isoformat()}-to-{period.end.isoformat()}.xlsx"
    )


# ---------------------------------------------------------------------------- command, job


def report_command(
    app: App,
    writer: Writer,
    out: TextIO,
    *,
    start: date | None,
    end: date | None,
    path: Path | None,
    send_it: bool,
) -> int:
    """``prevent-service report``: write the workbook, print the figures, maybe send."""
    today = app.local_now().date()
    end = end or today
    start = start or academic_year_start(end)
    period = check_period(start, end)  # the CLI checked the order already; a guard
    report = gather(app, period)
    written = writer(report, path or default_path(app, period))
    for line in report.summary_lines():
        print(line, file=out)
    print(f"Workbook: {written}", file=out)
    if send_it and report.compliance_error is not None:
        print(
            "Not sent: the compliance figures are missing (see above); "
            "fix the workbook and run this again to send the full report.",
            file=out,
        )
    elif send_it:
        try:
            sent = send(app, report, written)
        except TransientError as exc:
            # The worker retries its own sends; this command does not, so "will retry" (the
            # sender's words for the worker) would leave the board waiting for nothing.
            why = str(exc).removesuffix("; will retry")
            print(
                f"Not sent: {why}. The workbook above is written; fix [sending] (try "
                "'prevent-service check --send-test'), then run this again with --send.",
                file=out,
            )
            return 1
        print(
            f"Sent to {sent} recipient(s)."
            if sent
            else "Already sent for this period: not sent again.",
            file=out,
        )
    return 1 if report.compliance_note and app.config.compliance is not None else 0


def yearly_period(send_day: date) -> Period:
    """The academic year (1 August – 31 July) that ended last before ``send_day``."""
    end_year = send_day.year if send_day >= date(send_day.year, 8, 1) else send_day.year - 1
    return Period(date(end_year - 1, 8, 1), date(end_year, 7, 31))


def yearly_due(app: App) -> tuple[Period, datetime] | None:
    """The latest yearly report whose moment (``send_on`` at the compliance send time, moved to
    the next working day) has passed, if it is at most ``YEARLY_CATCH_UP_DAYS`` old."""
    month, day = (int(p) for p in app.config.report.send_on.split("-"))
    cfg = app.config.compliance
    at = cfg.send_time if cfg is not None else time(8, 0)
    local = app.local_now()
    for year in (local.year, local.year - 1):
        when = datetime.combine(next_working_day(date(year, month, day)), at, local.tzinfo)
        if when <= local:
            if local - when > timedelta(days=YEARLY_CATCH_UP_DAYS):
                return None
            return yearly_period(date(year, month, day)), when
    return None


def scheduled_yearly(app: App, writer: Writer) -> bool:
    """The worker's yearly report: once per academic year, on (or catching up after) its day.
    True if it was sent now. A failure leaves it unmarked: the next run tries again."""
    due = yearly_due(app)
    if due is None:
        return False
    period, _ = due
    if app.ledger.get(_KV_YEARLY) == period.key:
        return False
    sent = 0
    if not already_sent(app, period):  # a manual ``report --send`` for the same year counts
        report = gather(app, period)
        if report.compliance_error is not None:
            raise report.compliance_error  # not marked: the next run (or catch-up) tries again
        written = writer(report, default_path(app, period))
        sent = send(app, report, written)
    app.ledger.set(_KV_YEARLY, period.key)
    return sent > 0
