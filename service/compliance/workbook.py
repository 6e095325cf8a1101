"""The compliance workbook: its layout, its demo content, and reading it into typed items.

Three Excel tables that managers edit freely (design.md, flow 4):

- ``ActionPlan`` (sheet "Action plan"): objective, action, owner, due, recurrence, progress,
  status, last reminded.
- ``Policies``: policy, owner, last reviewed, review every N months, next review.
- ``Training``: name, email, role, manager email, start date, last Prevent training, last WRAP
  or specialist training, next due.

Each table has a hidden ``ID`` column that gives a row its identity, so that sorting, inserting
and editing rows never makes the service think an item is new (and remind twice). The service
fills it for rows that have none, through ``Workbook.update_cells`` (only that cell, only if it
is empty, and only if the row still holds what was read). Until the write lands (the file may be
open in Excel) the row uses the same ID, derived from its content, so a locked file changes
nothing. A copied row carries its ID along; both rows are then reported, never guessed between.

Everything that cannot be understood becomes a :class:`Problem` with sheet, row and text: it is
reported to the plan owner and the row gets no reminders until it is fixed.

"Next review" and "Next due" are for people: ``init`` fills them with Excel formulas that work
the date out from the row. The service works the date out itself from the same cells and the
config, so a formula nobody has calculated yet (the file was never saved in Excel) changes
nothing; a date typed there is used only when the row has nothing to work it out from.

"Last reminded" is the service's: after a digest goes out, the cycle writes the day into the
rows it reminded about (``update_cells`` with ``overwrite``, guarded like the ID).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib import resources
from typing import Any, Literal

from connectors.base import (
    CellUpdate,
    ColumnSpec,
    Formula,
    Table,
    TableSpec,
    UnsavedFormula,
    Workbook,
)
from service.compliance.duedates import (
    DueCalendar,
    DueSpec,
    Recurrence,
    add_months,
    parse_due,
    parse_recurrence,
)
from service.compliance.owners import RoleBook, norm
from service.config import EMAIL_RE, Compliance, Config
from service.errors import InputError, TransientError
from service.ledger import Ledger
from service.values import sheet_row

log = logging.getLogger("prevent_service.compliance")

ID = "ID"
ACTION_TABLE, POLICY_TABLE, TRAINING_TABLE = "ActionPlan", "Policies", "Training"
ACTION_SHEET, POLICY_SHEET, TRAINING_SHEET = "Action plan", "Policies", "Training"

STATUS_CHOICES = ("Not started", "In progress", "Complete", "Cancelled")
RECURRENCE_CHOICES = tuple(r.value for r in Recurrence)

ACTION_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("Objective", "long_text", width=40, owner="person"),
    ColumnSpec("Action", "long_text", width=40, owner="person"),
    ColumnSpec("Owner", "text", width=24, owner="person"),
    ColumnSpec("Due", "text", width=20, owner="person"),  # a date or text ("October 2021")
    ColumnSpec("Recurrence", "choice", RECURRENCE_CHOICES, width=14, owner="person"),
    ColumnSpec("Progress to date", "long_text", width=36, owner="person"),
    ColumnSpec("Status", "choice", STATUS_CHOICES, width=14, owner="person"),
    ColumnSpec("Last reminded", "date", width=14, owner="service"),
    ColumnSpec(ID, "hidden", width=14),
)
POLICY_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("Policy", "text", width=36, owner="person"),
    ColumnSpec("Owner", "text", width=24, owner="person"),
    ColumnSpec("Last reviewed", "date", width=14, owner="person"),
    ColumnSpec("Review every (months)", "number", width=12, owner="person"),
    ColumnSpec("Next review", "date", width=14, owner="service"),  # a formula (init)
    ColumnSpec(ID, "hidden", width=14),
)
TRAINING_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("Name", "text", width=24, owner="person"),
    ColumnSpec("Email", "text", width=30, owner="person"),
    ColumnSpec("Role", "text", width=20, owner="person"),
    ColumnSpec("Manager email", "text", width=30, owner="person"),
    ColumnSpec("Start date", "date", width=14, owner="person"),
    ColumnSpec("Last Prevent training", "date", width=14, owner="person"),
    ColumnSpec("Last WRAP or specialist training", "date", width=14, owner="person"),
    ColumnSpec("Next due", "date", width=14, owner="service"),  # a formula (init)
    ColumnSpec(ID, "hidden", width=14),
)

LAST_REMINDED = "Last reminded"
# Columns the reader does not need: the service's own, and those Excel computes for people.
_OPTIONAL = {"last reminded", "next review", "next due"}

_ID_PREFIX = {ACTION_TABLE: "AP", POLICY_TABLE: "POL", TRAINING_TABLE: "TR"}
# Columns whose content gives a row its derived ID, and that guard the ID write.
_KEY_COLUMNS = {
    ACTION_TABLE: ("Objective", "Action"),
    POLICY_TABLE: ("Policy",),
    TRAINING_TABLE: ("Email", "Name"),
}

ItemKind = Literal["action", "policy", "training", "induction"]


@dataclass(frozen=True)
class Problem:
    """A cell the service could not understand: reported to the plan owner, once per change."""

    sheet: str
    row: int
    column: str
    text: str
    reason: str
    item_id: str = ""

    @property
    def key(self) -> str:
        digest = hashlib.sha256(f"{self.column}\0{self.text}\0{self.reason}".encode()).hexdigest()
        return f"problem:{self.column}:{digest[:12]}"

    @property
    def ledger_item(self) -> str:
        return self.item_id or f"{self.sheet}:row{self.row}"


@dataclass(frozen=True)
class Item:
    """One thing that falls due: an action, a policy review, a person's training."""

    item_id: str  # "<table>:<ID>[:induction]"
    kind: ItemKind
    sheet: str
    row: int
    title: str
    owner_text: str
    owners: tuple[str, ...]
    escalate_to: tuple[str, ...]
    spec: DueSpec
    first_seen: date
    manager: str = ""  # Training: the manager's address (team summary)
    person: str = ""  # Training: the person's name

    def first_due(self, calendar: DueCalendar) -> date | None:
        return calendar.first_due(self.spec, self.first_seen)


@dataclass(frozen=True)
class RowRef:
    """Where an ActionPlan item was read: for writing its "Last reminded" cell (row index as
    read, the values that must still be there, and the cell's current value)."""

    row_index: int
    expect: Mapping[str, Any]
    last_reminded: Any = None


@dataclass
class ComplianceData:
    items: list[Item] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    plan_owner: tuple[str, ...] = ()
    rows_read: int = 0
    ids_written: int = 0
    action_rows: dict[str, RowRef] = field(default_factory=dict)  # item_id → row
    has_last_reminded: bool = False


# ---------------------------------------------------------------------------- layout


def compliance_table_specs(
    demo: bool, today: date, cfg: Compliance | None = None
) -> list[TableSpec]:
    """The three tables ``init`` lays out; with ``demo``, filled with the seed plan moved to
    the current academic year, the Prevent policy and a few invented staff. Rows get Excel
    formulas for "Next review" and "Next due" (with ``cfg``'s periods, else the defaults)."""
    if not demo:
        return [
            TableSpec(ACTION_SHEET, ACTION_TABLE, ACTION_COLUMNS),
            TableSpec(POLICY_SHEET, POLICY_TABLE, POLICY_COLUMNS),
            TableSpec(TRAINING_SHEET, TRAINING_TABLE, TRAINING_COLUMNS),
        ]
    return [
        TableSpec(ACTION_SHEET, ACTION_TABLE, ACTION_COLUMNS, tuple(demo_action_rows(today))),
        TableSpec(
            POLICY_SHEET,
            POLICY_TABLE,
            POLICY_COLUMNS,
            with_formulas(POLICY_TABLE, demo_policy_rows(), cfg),
        ),
        TableSpec(
            TRAINING_SHEET,
            TRAINING_TABLE,
            TRAINING_COLUMNS,
            with_formulas(TRAINING_TABLE, demo_training_rows(today), cfg),
        ),
    ]


def _setting(cfg: Compliance | None, name: str) -> Any:
    return getattr(cfg, name) if cfg is not None else Compliance.model_fields[name].default


def _excel_text(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def next_review_formula(row: int) -> Formula:
    """Policies: "Last reviewed" plus "Review every (months)" (12 when blank), as the
    service reads it. Columns: C Last reviewed, D Review every (months)."""
    return Formula(f'=IF(C{row}="","",EDATE(C{row},IF(D{row}="",12,D{row})))')


def next_due_formula(row: int, cfg: Compliance | None = None) -> Formula:
    """Training, as the service reads it: the last Prevent training plus the period (longer
    for the DSP roles), or for a new starter (no training since starting) the start date
    plus the induction days. Columns: C Role, E Start date, F Last Prevent training."""
    roles = ",".join(f"C{row}={_excel_text(r)}" for r in _setting(cfg, "dsp_roles"))
    months = (
        f"IF(OR({roles}),{_setting(cfg, 'dsp_training_every_months')},"
        f"{_setting(cfg, 'training_every_months')})"
        if roles
        else str(_setting(cfg, "training_every_months"))
    )
    return Formula(
        f'=IF(AND(F{row}<>"",OR(E{row}="",F{row}>=E{row})),EDATE(F{row},{months}),'
        f'IF(E{row}<>"",E{row}+{_setting(cfg, "induction_within_days")},""))'
    )


def with_formulas(
    table: str, rows: Sequence[tuple[Any, ...]], cfg: Compliance | None = None
) -> tuple[tuple[Any, ...], ...]:
    """``rows`` (sheet rows 2, 3, …) with the computed column filled by its formula."""
    columns = POLICY_COLUMNS if table == POLICY_TABLE else TRAINING_COLUMNS
    header = "Next review" if table == POLICY_TABLE else "Next due"
    index = [c.header for c in columns].index(header)
    out = []
    for number, row in enumerate(rows, start=2):
        cells = list(row) + [None] * (index + 1 - len(row))
        if cells[index] is None:
            cells[index] = (
                next_review_formula(number)
                if table == POLICY_TABLE
                else next_due_formula(number, cfg)
            )
        out.append(tuple(cells))
    return tuple(out)


def academic_year_start(today: date) -> int:
    """The calendar year in which the current academic year (September–August) began."""
    return today.year if today.month >= 9 else today.year - 1


def seed_plan() -> list[dict[str, str]]:
    """The organisation's 2021 action plan as shipped in ``config/demo/action-plan-2021.csv``."""
    text = resources.files("config").joinpath("demo/action-plan-2021.csv").read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


# Seed rows that the demo pins to real dates, so that whatever the day, the demo has an item
# due today, one due in a week and one due in a month (by action text → days from today).
_DEMO_PINNED = {
    "Deploy an emergency incident response process": 0,
    "Review classroom feedback and learner surveys": 7,
    "Review section 1 Keeping children safe in education Statutory guidance for schools "
    "and colleges": 30,
}


def demo_action_rows(today: date) -> list[tuple[Any, ...]]:
    """The seed plan moved to the current academic year.

    The plan was written for 2021: its text dates move by whole years so that September
    2021 becomes this academic year's September (the months before September become overdue
    items). Three rows get real dates (today, in 7 and in 30 days); rows whose progress says
    they are completed are marked Complete.
    """
    shift = academic_year_start(today) - 2021
    rows: list[tuple[Any, ...]] = []
    for seed in seed_plan():
        when: Any = seed["when"].replace("2021", str(2021 + shift))
        if seed["action"] in _DEMO_PINNED:
            when = today + timedelta(days=_DEMO_PINNED[seed["action"]])
        progress = seed["progress"]
        status = (
            "Complete"
            if progress.lower().rstrip(". ").endswith("completed")
            else ("In progress" if progress else "Not started")
        )
        action = seed["action"].replace("2021", str(2021 + shift))
        rows.append((seed["objective"], action, seed["who"], when, None, progress, status))
    return rows


def demo_policy_rows() -> list[tuple[Any, ...]]:
    # The policy in the seed was signed on 4 January 2021 and is reviewed annually.
    return [("Prevent (counter-terrorism) policy", "Executive Director", date(2021, 1, 4), 12)]


def demo_training_rows(today: date) -> list[tuple[Any, ...]]:
    """Invented staff whose training falls due around ``today``. The addresses match the
    people and roles of ``config/example-local.toml`` (DSP, deputy, a training manager)."""

    def ago(days: int) -> date:
        return today - timedelta(days=days)

    tm = "training.manager1@example.org"
    od = "operations.director@example.org"
    return [
        ("Alex Morgan", "dsp@example.org", "DSP", od, date(2018, 9, 3), ago(300)),
        ("Sam Patel", "deputy.dsp@example.org", "Deputy DSP", od, date(2019, 1, 7), ago(700)),
        ("Jordan Lee", "jordan.lee@example.org", "Trainer", tm, date(2020, 9, 1), ago(358)),
        ("Casey Brown", "casey.brown@example.org", "Trainer", tm, date(2021, 2, 1), ago(385)),
        ("Riley Evans", "riley.evans@example.org", "Assessor", tm, ago(10), None),
        ("Taylor Green", tm, "Training Manager", od, date(2017, 4, 3), ago(120)),
    ]


# ---------------------------------------------------------------------------- reading


class ComplianceReader:
    """Reads the three tables into items and problems for one cycle."""

    def __init__(
        self,
        config: Config,
        workbook: Workbook,
        ledger: Ledger,
        today: date,
        *,
        write_ids: bool = True,
    ) -> None:
        if config.compliance is None:
            raise InputError("no [compliance] section in the config: nothing to remind about")
        self.config = config
        self.cfg: Compliance = config.compliance
        self.workbook = workbook
        self.ledger = ledger
        self.today = today
        self.write_ids = write_ids
        self.roles = RoleBook(config.roles)
        self.calendar = calendar_for(self.cfg)
        self.data = ComplianceData()
        self._default_ongoing = Recurrence(self.cfg.ongoing_recurrence.capitalize())
        self._done = {status_key(s) for s in self.cfg.done_statuses}
        self._dsp_roles = {norm(r) for r in self.cfg.dsp_roles}
        self._same_email: dict[str, list[int]] = {}  # Training: e-mail → its rows, if several
        # Distribution lists: never sent manager-only items (see compliance.everyone_roles).
        self._everyone = {
            a.lower() for role in self.cfg.everyone_roles for a in self.roles.addresses(role)
        }
        self._escalate_to = self._config_role(
            self.cfg.escalate_to_role, "compliance.escalate_to_role"
        )

    def read(self) -> ComplianceData:
        if self.cfg.plan_owner:
            self.data.plan_owner = self._config_role(self.cfg.plan_owner, "compliance.plan_owner")
        else:
            self.data.plan_owner = (self.config.people.admin_email.lower(),)
        for table, handler in (
            (ACTION_TABLE, self._action),
            (POLICY_TABLE, self._policy),
            (TRAINING_TABLE, self._training),
        ):
            self._read_table(table, handler)
        return self.data

    def _config_role(self, role: str, key: str) -> tuple[str, ...]:
        """A manager's role: never a mailbox everyone reads (escalations, cells not understood
        and team summaries are for managers)."""
        addresses = [a for a in self.roles.addresses(role) if a.lower() not in self._everyone]
        if addresses:
            return _addresses(addresses)
        if self.roles.addresses(role):
            self.data.problems.append(
                Problem(
                    "config",
                    0,
                    key,
                    role,
                    f"role {role!r} reaches everyone (compliance.everyone_roles); what is meant "
                    "for managers goes to the admin instead",
                )
            )
            return (self.config.people.admin_email.lower(),)
        self.data.problems.append(
            Problem(
                "config",
                0,
                key,
                role,
                f"role {role!r} has no addresses in [roles]; the admin gets these instead",
            )
        )
        return (self.config.people.admin_email.lower(),)

    # -- tables -----------------------------------------------------------------------

    def _read_table(self, name: str, handler: Callable[[_Row], None]) -> None:
        table = self.workbook.read_table(name)
        headers = {norm(h): h for h in table.headers}
        missing = [
            spec.header
            for spec in _COLUMNS[name]
            if norm(spec.header) not in _OPTIONAL | {norm(ID)} and norm(spec.header) not in headers
        ]
        if missing:
            raise InputError(
                f"compliance workbook, table {name!r}: missing column(s) "
                f"{', '.join(repr(m) for m in missing)}; restore the heading(s)"
            )
        rows = [
            _Row(table, i, {norm(k): v for k, v in row.items()}) for i, row in enumerate(table.rows)
        ]
        rows = [r for r in rows if not r.blank]
        self.data.rows_read += len(rows)
        if name == ACTION_TABLE:
            self.data.has_last_reminded = norm(LAST_REMINDED) in headers
        has_id = norm(ID) in headers
        if not has_id:  # deleted by someone tidying up: derived IDs, as when the file is locked
            self.data.problems.append(
                Problem(
                    table.sheet or name,
                    1,
                    ID,
                    "",
                    f"the hidden {ID!r} column of table {name!r} is missing: restore it "
                    "(insert a column headed ID at the end of the table) so that rows keep "
                    "their identity when edited",
                )
            )
        ids = self._identities(name, table, rows, write=self.write_ids and has_id)
        if name == TRAINING_TABLE:
            by_email: dict[str, list[int]] = {}
            for row in rows:
                by_email.setdefault(_text(row.get("Email")).lower(), []).append(row.number)
            self._same_email = {e: n for e, n in by_email.items() if e and len(n) > 1}
        for row in rows:
            row.item_id = ids.get(row.index, "")
            if row.item_id:
                handler(row)

    def _identities(
        self, name: str, table: Table, rows: list[_Row], *, write: bool
    ) -> dict[int, str]:
        """Row index → ID: the hidden cell's value, or one derived from content (and written)."""
        by_id: dict[str, list[_Row]] = {}
        for row in rows:
            written = _text(row.get(ID))
            if written:
                by_id.setdefault(written, []).append(row)
        ids: dict[int, str] = {}
        for written, same in by_id.items():
            if len(same) > 1:
                numbers = ", ".join(str(r.number) for r in same)
                for row in same:
                    self.data.problems.append(
                        Problem(
                            table.sheet or name,
                            row.number,
                            ID,
                            written,
                            f"the same ID is on rows {numbers} (a copied row?): clear the ID "
                            "cell of the copy and the service gives it a new one",
                        )
                    )
            else:
                ids[same[0].index] = written
        updates: list[CellUpdate] = []
        taken = set(by_id)
        for row in rows:
            if _text(row.get(ID)):
                continue
            base = _derived_id(name, [_text(row.get(c)) for c in _KEY_COLUMNS[name]])
            candidate, n = base, 1
            while candidate in taken:
                n += 1
                candidate = f"{base}-{n}"
            taken.add(candidate)
            ids[row.index] = candidate
            expect = {c: row.get(c) for c in _KEY_COLUMNS[name] if row.get(c) is not None}
            updates.append(CellUpdate(ID, candidate, row.index, expect))
        if updates and write:
            try:
                self.data.ids_written += self.workbook.update_cells(name, updates)
            except TransientError as exc:  # open in Excel: the derived IDs hold until next time
                log.info("compliance %s: IDs not written yet (%s)", name, type(exc).__name__)
        return {i: f"{name}:{v}" for i, v in ids.items()}

    # -- rows -------------------------------------------------------------------------

    def _problem(self, row: _Row, column: str, text: str, reason: str) -> None:
        self.data.problems.append(
            Problem(row.sheet, row.number, column, text, reason, item_id=row.item_id)
        )

    def _first_seen(self, item_id: str) -> date:
        """When the service first saw the row (the day "Immediate" means). A run "as of" an
        earlier day moves it earlier, never later."""
        if self.write_ids:
            self.ledger.db.execute(
                "INSERT INTO compliance_rows (item_id, first_seen) VALUES (?, ?) "
                "ON CONFLICT(item_id) DO UPDATE SET first_seen = "
                "MIN(first_seen, excluded.first_seen)",
                (item_id, self.today.isoformat()),
            )
        found = self.ledger.db.execute(
            "SELECT first_seen FROM compliance_rows WHERE item_id = ?", (item_id,)
        ).fetchone()
        return min(date.fromisoformat(found[0]), self.today) if found else self.today

    def _owners(self, row: _Row, column: str = "Owner") -> tuple[str, ...] | None:
        owners = self.roles.resolve(row.get(column))
        if owners.problem:
            self._problem(row, column, owners.text, owners.problem)
        return _addresses(owners.addresses) or None

    def _action(self, row: _Row) -> None:
        if status_key(row.get("Status")) in self._done:
            return  # complete: no reminders and nothing to report
        action, objective = _text(row.get("Action")), _text(row.get("Objective"))
        if not (action or _text(row.get("Owner")) or not _blank(row.get("Due"))):
            return  # a heading or note row: only an objective
        ok = True
        column_rec = parse_recurrence(row.get("Recurrence"))
        if isinstance(column_rec, Recurrence) or column_rec is None:
            recurrence = column_rec
        else:
            self._problem(row, "Recurrence", _text(row.get("Recurrence")), column_rec)
            recurrence, ok = None, False
        spec = parse_due(
            row.get("Due"), recurrence=recurrence, default_ongoing=self._default_ongoing
        )
        if spec.problem:
            self._problem(row, "Due", spec.text, spec.problem)
            ok = False
        owners = self._owners(row)
        if not ok or owners is None:
            return
        expect = {c: row.get(c) for c in _KEY_COLUMNS[ACTION_TABLE] if row.get(c) is not None}
        if _text(row.get(ID)):
            expect[ID] = row.get(ID)
        self.data.action_rows[row.item_id] = RowRef(row.index, expect, row.get(LAST_REMINDED))
        self.data.items.append(
            Item(
                item_id=row.item_id,
                kind="action",
                sheet=row.sheet,
                row=row.number,
                title=action or objective,
                owner_text=_text(row.get("Owner")),
                owners=owners,
                escalate_to=self._escalate_to,
                spec=spec,
                first_seen=self._first_seen(row.item_id),
            )
        )

    def _policy(self, row: _Row) -> None:
        name = _text(row.get("Policy")) or f"policy on row {row.number}"
        owners = self._owners(row)
        every = row.get("Review every (months)")
        months = 12 if _blank(every) else _months(every)
        if months is None:
            self._problem(
                row, "Review every (months)", _text(every), "not a whole number of months"
            )
            return
        due: date | None = None
        if _blank(row.get("Last reviewed")) and _typed(row.get("Next review")):
            due = self._day(row, "Next review")  # nothing to work it out from: use the date
            if due is None:
                return
        else:
            last = self._day(row, "Last reviewed", required=True)
            if last is None:
                return
            due = add_months(last, months)
        if owners is None:
            return
        self.data.items.append(
            Item(
                item_id=row.item_id,
                kind="policy",
                sheet=row.sheet,
                row=row.number,
                title=f"Review: {name}",
                owner_text=_text(row.get("Owner")),
                owners=owners,
                escalate_to=self._escalate_to,
                spec=DueSpec(text=due.isoformat(), due=due),
                first_seen=self._first_seen(row.item_id),
            )
        )

    def _training(self, row: _Row) -> None:
        name = _text(row.get("Name")) or f"the person on row {row.number}"
        email = _text(row.get("Email")).lower()
        if not EMAIL_RE.match(email):
            self._problem(row, "Email", email, "no e-mail address: add one for reminders")
            return
        if email in self._same_email:
            numbers = ", ".join(str(n) for n in self._same_email[email])
            self._problem(
                row,
                "Email",
                email,
                f"the same person is on rows {numbers}: keep one row per person and "
                "update its dates",
            )
            return
        manager = _text(row.get("Manager email")).lower()
        if manager and not EMAIL_RE.match(manager):
            self._problem(row, "Manager email", manager, "not an e-mail address")
            manager = ""
        if manager in self._everyone:
            self._problem(
                row, "Manager email", manager, "a mailbox everyone reads: put the manager's own"
            )
            manager = ""
        start = self._day(row, "Start date") if not _blank(row.get("Start date")) else None
        last = (
            self._day(row, "Last Prevent training")
            if not _blank(row.get("Last Prevent training"))
            else None
        )
        # "Next due" is Excel's working-out for people; a date typed there counts only
        # when the row has neither a last training date nor a start date.
        fallback = (
            self._day(row, "Next due")
            if last is None and start is None and _typed(row.get("Next due"))
            else None
        )
        dsp = norm(_text(row.get("Role"))) in self._dsp_roles
        months = self.cfg.dsp_training_every_months if dsp else self.cfg.training_every_months
        kind: ItemKind
        if last is not None and (start is None or last >= start):
            kind, due = "training", add_months(last, months)
            title = f"{'DSP' if dsp else 'Prevent'} training for {name}"
        elif start is not None:
            kind = "induction"
            due = start + timedelta(days=self.cfg.induction_within_days)
            title = f"Induction Prevent training for {name}"
        elif fallback is not None:
            kind, due = "training", fallback
            title = f"{'DSP' if dsp else 'Prevent'} training for {name}"
        else:
            if _blank(row.get("Start date")) and _blank(row.get("Last Prevent training")):
                self._problem(
                    row,
                    "Last Prevent training",
                    "",
                    "no last Prevent training date and no start date: add one",
                )
            return
        escalate = (manager,) if manager else self._escalate_to
        suffix = ":induction" if kind == "induction" else ""
        self.data.items.append(
            Item(
                item_id=row.item_id + suffix,
                kind=kind,
                sheet=row.sheet,
                row=row.number,
                title=title,
                owner_text=name,
                owners=(email,),
                escalate_to=escalate,
                spec=DueSpec(text=due.isoformat(), due=due),
                first_seen=self._first_seen(row.item_id + suffix),
                manager=manager,
                person=name,
            )
        )

    def _day(self, row: _Row, column: str, *, required: bool = False) -> date | None:
        """A cell that must hold one day (a date, or text naming a day or a month: a month
        counts from its first day, the earlier reading for "last done" dates)."""
        value = row.get(column)
        if _blank(value):
            if required:
                self._problem(row, column, "", "empty: add a date")
            return None
        spec = parse_due(value)
        if spec.problem or spec.recurring or spec.immediate:
            self._problem(row, column, spec.text, spec.problem or "not a single date")
            return None
        if spec.month is not None:
            return date(spec.month[0], spec.month[1], 1)
        return spec.due


_COLUMNS = {
    ACTION_TABLE: ACTION_COLUMNS,
    POLICY_TABLE: POLICY_COLUMNS,
    TRAINING_TABLE: TRAINING_COLUMNS,
}


class _Row:
    """One data row, read by header (case- and space-insensitive)."""

    def __init__(self, table: Table, index: int, values: Mapping[str, Any]) -> None:
        self.index = index
        self.number = sheet_row(table, index)
        self.sheet = table.sheet or table.name
        self.values = values
        self.item_id = ""
        self._headers = {norm(h): h for h in table.headers}

    def get(self, column: str) -> Any:
        return self.values.get(norm(column))

    @property
    def blank(self) -> bool:
        """Nothing typed: the ID and formulas nobody has calculated do not count."""
        return all(
            _blank(v) or isinstance(v, UnsavedFormula)
            for k, v in self.values.items()
            if k != norm(ID)
        )


def calendar_for(cfg: Compliance) -> DueCalendar:
    return DueCalendar(cfg.month_due, cfg.term_ends)


def read_compliance(
    config: Config, workbook: Workbook, ledger: Ledger, today: date, *, write_ids: bool = True
) -> ComplianceData:
    return ComplianceReader(config, workbook, ledger, today, write_ids=write_ids).read()


def status_key(value: Any) -> str:
    """A Status cell for matching ``done_statuses``: typed over the drop-down it may carry a
    tick, full stop or emoji ("Completed ✔", "complete."), which do not change its meaning."""
    return norm(_NOT_WORD.sub(" ", _text(value)))


_NOT_WORD = re.compile(r"[^\w\s]")


def _derived_id(table: str, parts: Sequence[str]) -> str:
    basis = "\0".join(norm(p) for p in parts)
    return f"{_ID_PREFIX[table]}-{hashlib.sha256(basis.encode()).hexdigest()[:8]}"


def _addresses(addresses: Sequence[str]) -> tuple[str, ...]:
    """Addresses in lower case, once each: "Ed@Example.org" in a sheet and "ed@example.org"
    in [roles] are one person, who gets one digest and one ledger key per reminder."""
    return tuple(dict.fromkeys(a.lower() for a in addresses))


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _typed(value: Any) -> bool:
    """A value a person put there (not blank, not a formula without a saved value)."""
    return not _blank(value) and not isinstance(value, UnsavedFormula)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return " ".join(str(value).split())


def _months(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, float) and value.is_integer() and value > 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    return None
