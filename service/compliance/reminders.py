"""The reminder cycle: who gets which compliance reminder today, bundled one digest each.

Once a day at ``compliance.send_time`` (Europe/London), on working days only, the cycle reads
the compliance workbook and works out, for every item, its *steps*:

- before the due date: one step per ``offsets_days`` (default 30, 7, 1 and 0 days before);
  before training expires, the first step is ``training_warn_days`` before, then the
  ``offsets_days`` closer than that;
- after it (one-off items): ``overdue:k`` every ``overdue_every_days``; from
  ``escalate_after_days_overdue`` days overdue the step also goes to the escalation contact
  (the person's manager for training, else the ``escalate_to_role``). An overdue step waits
  while the recipient's last reminder for the item is less than ``overdue_every_days`` old,
  so a catch-up never makes two nudges on consecutive days.

A step falls on its day, or on the next working day when that is a weekend or an England and
Wales bank holiday. Each step is sent once per recipient, keyed in the ledger by (item, due
date, step, recipient). If several steps fell due since the last cycle (downtime, a weekend)
only the latest is sent and the others are marked superseded: a catch-up is one digest, not a
flood. Recurring items get the steps before each occurrence, and no overdue nudges (the next
occurrence takes over).

Each recipient gets one digest listing all their entries (overdue, due today, due soon,
escalated, their team's training, cells not understood). Entries are recorded only after the
digest went out; the digest's Message-ID is stable for its content, so a retry after an unclear
failure is recognisable by the sender.

Training managers also get, once a week (the first cycle on or after ``schedule.digest_day``),
a summary of who in their team is overdue.

After the digests went out, the ActionPlan's "Last reminded" cells of the rows reminded get the
day of their latest reminder (from the ledger, so a file that was locked is caught up by the
next cycle). Only that cell is written, guarded like the ID; a failed write never stops sending.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TextIO

from connectors.base import CellUpdate, OutboundMessage
from service.app import App
from service.compliance.duedates import (
    DueCalendar,
    excel_serial_to_date,
    is_working_day,
    next_working_day,
)
from service.compliance.workbook import (
    ACTION_TABLE,
    LAST_REMINDED,
    ComplianceData,
    Item,
    Problem,
    calendar_for,
    read_compliance,
)
from service.config import Compliance, Config
from service.errors import ConnectorError, InputError

log = logging.getLogger("prevent_service.reminders")

SECTIONS: tuple[tuple[str, str], ...] = (
    ("overdue", "Overdue"),
    ("today", "Due today"),
    ("soon", "Due soon"),
    ("escalated", "Overdue items you oversee"),
    ("team", "Your team's Prevent training"),
    ("not_understood", "Cells the service could not understand"),
)
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_KV_LAST_CYCLE = "reminders.last_cycle_day"
_KV_COMPLETED = "reminders.completed_day"
NO_COMPLIANCE = "no [compliance] section in the config; reminders are off"
_OVERDUE_LOOKBACK = 20  # at most this many skipped overdue steps are marked superseded
_cycle_lock = threading.Lock()


@dataclass(frozen=True)
class Step:
    name: str  # 'before:30' | 'due' | 'overdue:2'
    on: date  # the working day it is sent
    overdue_days: int
    escalated: bool = False


@dataclass(frozen=True)
class Entry:
    """One line of one recipient's digest."""

    recipient: str
    item_id: str
    due: date | None
    step: str
    section: str
    title: str
    where: str
    why: str
    owner: str = ""
    due_text: str = ""
    superseded: tuple[str, ...] = ()
    members: tuple[dict[str, Any], ...] = ()
    kind: str = ""  # the item's kind: action, policy, training, induction
    link: str = ""  # where to act on it (the course, or the compliance workbook)
    link_label: str = ""

    @property
    def due_key(self) -> str:
        return self.due.isoformat() if self.due else ""


@dataclass
class Digest:
    recipient: str
    entries: list[Entry]
    message_id: str = ""
    sent: bool = False


@dataclass
class CycleReport:
    day: date
    working_day: bool = True
    dry_run: bool = False
    skipped: str = ""
    digests: list[Digest] = field(default_factory=list)
    failed: int = 0
    items: int = 0
    problems: int = 0
    ids_written: int = 0
    last_reminded_written: int = 0

    @property
    def sent(self) -> int:
        return sum(d.sent for d in self.digests)

    @property
    def entries(self) -> int:
        return sum(len(d.entries) for d in self.digests)

    def summary(self) -> str:
        if self.skipped:
            return f"{self.day}: {self.skipped}"
        verb = "would send" if self.dry_run else "sent"
        count = len(self.digests) if self.dry_run else self.sent
        text = (
            f"{self.day}: {verb} {count} digest(s) with {self.entries} entr"
            f"{'y' if self.entries == 1 else 'ies'}; {self.items} item(s) read, "
            f"{self.problems} cell(s) not understood"
        )
        if self.failed:
            text += f"; {self.failed} digest(s) failed to send (retried next run)"
        return text


# ---------------------------------------------------------------------------- steps


def steps_until(
    due: date,
    today: date,
    cfg: Compliance,
    *,
    recurring: bool,
    offsets: Sequence[int] | None = None,
) -> list[Step]:
    """The steps of one due date whose day has come (``on <= today``), oldest first.
    ``offsets`` (largest first) replaces ``cfg.offsets_days`` (for training expiry).

    Overdue steps are computed directly (not enumerated from the due date), so an item
    overdue for years costs the same as one overdue for a week."""
    steps: list[Step] = []
    for offset in cfg.offsets_days if offsets is None else offsets:
        on = next_working_day(due - timedelta(days=offset))
        if on <= today:
            steps.append(Step("due" if offset == 0 else f"before:{offset}", on, -offset))
    if recurring or today <= due:
        return steps
    every = cfg.overdue_every_days
    last_k = (today - due).days // every
    for k in range(max(1, last_k - _OVERDUE_LOOKBACK), last_k + 1):
        days = k * every
        on = next_working_day(due + timedelta(days=days))
        if on <= today:
            steps.append(
                Step(f"overdue:{k}", on, days, escalated=days >= cfg.escalate_after_days_overdue)
            )
    return steps


def digest_anchor(today: date, digest_day: str) -> date:
    """The latest ``digest_day`` on or before ``today``: one team summary per such week."""
    back = (today.weekday() - _WEEKDAYS.index(digest_day)) % 7
    return today - timedelta(days=back)


# ---------------------------------------------------------------------------- planning


class Planner:
    """Works out today's entries from the workbook's items and the ledger."""

    def __init__(self, app: App, data: ComplianceData, today: date) -> None:
        assert app.config.compliance is not None
        self.app = app
        self.cfg = app.config.compliance
        self.data = data
        self.today = today
        self.calendar: DueCalendar = calendar_for(self.cfg)
        self.db = app.ledger.db
        # Training expiry: the first reminder ``training_warn_days`` before, then the
        # usual offsets that are closer.
        self.training_offsets = [
            self.cfg.training_warn_days,
            *(o for o in self.cfg.offsets_days if o < self.cfg.training_warn_days),
        ]
        last = app.ledger.get(_KV_LAST_CYCLE)
        self.last_cycle = date.fromisoformat(last) if last else None
        self.last_sent = {
            (item_id, recipient): date.fromisoformat(day)
            for item_id, recipient, day in self.db.execute(
                "SELECT r.item_id, r.recipient, MAX(s.day) FROM reminders r "
                "JOIN sent_messages s ON s.message_id = r.message_id "
                "WHERE r.state = 'sent' GROUP BY r.item_id, r.recipient"
            )
        }

    def entries(self) -> list[Entry]:
        out: list[Entry] = []
        for item in self.data.items:
            out.extend(self._item_entries(item))
        out.extend(self._team_entries())
        out.extend(self._problem_entries())
        return out

    def _recorded(self, item_id: str, due: str, step: str, recipient: str) -> bool:
        return (
            self.db.execute(
                "SELECT 1 FROM reminders WHERE item_id = ? AND due = ? AND step = ? "
                "AND recipient = ?",
                (item_id, due, step, recipient),
            ).fetchone()
            is not None
        )

    def _due_dates(self, item: Item) -> list[date]:
        """The due date(s) to look at today: the one-off date, or for a recurring item the
        next occurrence and the latest one missed since the last cycle."""
        if not item.spec.recurring:
            first = item.first_due(self.calendar)
            return [first] if first else []
        upcoming = self.calendar.occurrence_on_or_after(item.spec, self.today, item.first_seen)
        # Occurrences since the day after the last cycle (or the last working day) were due
        # while nobody was told: a weekend, a bank holiday, or downtime.
        previous = self.today - timedelta(days=1)
        while not is_working_day(previous):
            previous -= timedelta(days=1)
        start = previous + timedelta(days=1)
        if self.last_cycle and self.last_cycle < previous:
            start = max(self.last_cycle + timedelta(days=1), self.today - timedelta(days=366))
        missed: date | None = None
        day = start
        while True:
            occurrence = self.calendar.occurrence_on_or_after(item.spec, day, item.first_seen)
            if occurrence is None or occurrence >= self.today:
                break
            missed = occurrence
            day = occurrence + timedelta(days=1)
        return [d for d in (upcoming, missed) if d is not None]

    def _item_entries(self, item: Item) -> list[Entry]:
        for due in self._due_dates(item):
            steps = steps_until(
                due,
                self.today,
                self.cfg,
                recurring=item.spec.recurring,
                offsets=self.training_offsets if item.kind == "training" else None,
            )
            if not steps:
                continue
            latest = steps[-1]
            recipients = list(item.owners)
            escalated_to = [a for a in item.escalate_to if a not in recipients]
            if latest.escalated:
                recipients += escalated_to
            found = []
            for recipient in recipients:
                # The owner acts (their course); one overseeing it looks at the workbook.
                link, link_label = _where_to_act(self.cfg, item, recipient in item.owners)
                if self._recorded(item.item_id, due.isoformat(), latest.name, recipient):
                    continue
                if latest.overdue_days > 0 and self._nudged_lately(item.item_id, recipient):
                    continue  # stays pending: goes once the last one is old enough
                section, why = self._label(item, due, latest, recipient in item.owners)
                found.append(
                    Entry(
                        recipient=recipient,
                        item_id=item.item_id,
                        due=due,
                        step=latest.name,
                        section=section,
                        title=item.title,
                        where=f"{item.sheet} row {item.row}",
                        why=why,
                        owner=item.owner_text,
                        due_text=item.spec.text,
                        superseded=tuple(s.name for s in steps[:-1]),
                        kind=item.kind,
                        link=link,
                        link_label=link_label,
                    )
                )
            if found:
                return found  # one due date per item per day
        return []

    def _nudged_lately(self, item_id: str, recipient: str) -> bool:
        """Whether ``recipient`` had a reminder for the item under ``overdue_every_days`` ago
        (a catch-up sends the latest step; the next one must not follow the next day)."""
        last = self.last_sent.get((item_id, recipient))
        return last is not None and (self.today - last).days < self.cfg.overdue_every_days

    def _label(self, item: Item, due: date, step: Step, is_owner: bool) -> tuple[str, str]:
        days = (due - self.today).days
        recurring = " (recurring)" if item.spec.recurring else ""
        if not is_owner:
            return "escalated", f"overdue {-days} days; owner: {item.owner_text}"
        if days < 0:
            text = f"overdue {-days} day{'s' if days != -1 else ''}{recurring}"
            if step.escalated:
                text += "; escalated"
            return "overdue", text
        if days == 0:
            return "today", f"due today{recurring}"
        return "soon", f"due in {days} day{'s' if days != 1 else ''}{recurring}"

    def _team_entries(self) -> list[Entry]:
        """Managers: who in their team is overdue, once a week."""
        anchor = digest_anchor(self.today, self.app.config.schedule.digest_day)
        teams: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for item in self.data.items:
            if item.kind not in ("training", "induction") or not item.manager:
                continue
            due = item.first_due(self.calendar)
            if due is None or due >= self.today:
                continue
            teams[item.manager].append(
                {
                    "name": item.person,
                    "what": "induction training"
                    if item.kind == "induction"
                    else "Prevent training",
                    "due": due,
                    "days": (self.today - due).days,
                }
            )
        out = []
        for manager, members in sorted(teams.items()):
            item_id = f"team:{manager.lower()}"
            if self._recorded(item_id, anchor.isoformat(), "team", manager):
                continue
            members.sort(key=lambda m: (-m["days"], m["name"]))
            out.append(
                Entry(
                    recipient=manager,
                    item_id=item_id,
                    due=anchor,
                    step="team",
                    section="team",
                    title=f"{len(members)} in your team overdue",
                    where="Training",
                    why="weekly team summary",
                    members=tuple(members),
                )
            )
        return out

    def _problem_entries(self) -> list[Entry]:
        out = []
        for problem in self.data.problems:
            for recipient in self.data.plan_owner:
                if self._recorded(problem.ledger_item, "", problem.key, recipient):
                    continue
                out.append(_problem_entry(problem, recipient))
        return out


def _where_to_act(cfg: Compliance, item: Item, is_owner: bool = True) -> tuple[str, str]:
    """(link, label) for an item: its course for training, else the compliance workbook."""
    if item.kind in ("training", "induction") and is_owner:
        kind = "induction" if item.kind == "induction" else "prevent"
        if item.title.startswith("DSP "):
            kind = "dsp"
        link = cfg.course_links.get(kind) or cfg.course_links.get("prevent", "")
        if link:
            return link, "Open the course"
    if cfg.workbook_link:
        return cfg.workbook_link, "Open the compliance workbook"
    return "", ""


def _problem_entry(problem: Problem, recipient: str) -> Entry:
    where = (
        f"config key {problem.column}"
        if problem.sheet == "config"
        else f"{problem.sheet} row {problem.row}, column {problem.column}"
    )
    return Entry(
        recipient=recipient,
        item_id=problem.ledger_item,
        due=None,
        step=problem.key,
        section="not_understood",
        title=problem.text or "(empty)",
        where=where,
        why=problem.reason,
    )


# ---------------------------------------------------------------------------- the cycle


def run_cycle(app: App, today: date | None = None, *, dry_run: bool = False) -> CycleReport:
    """Run the reminder cycle for ``today`` (default: the local date now)."""
    today = today or app.local_now().date()
    report = CycleReport(day=today, dry_run=dry_run)
    if app.config.compliance is None:
        report.skipped = "no [compliance] section in the config"
        return report
    if not is_working_day(today):
        report.working_day = False
        report.skipped = (
            "not a working day (weekend or bank holiday): nothing is sent; "
            "what falls due goes out on the next working day"
        )
        return report
    if not _cycle_lock.acquire(blocking=False):
        report.skipped = "another reminder cycle is running"
        return report
    run_id = 0 if dry_run else app.ledger.start_run("reminders")
    try:
        _cycle(app, today, report)
    except Exception as exc:
        if run_id:
            app.ledger.finish_run(run_id, False, f"{type(exc).__name__}")
        raise
    finally:
        _cycle_lock.release()
    if run_id:
        app.ledger.finish_run(run_id, report.failed == 0, report.summary())
    log.info(
        "reminders %s: %d digest(s), %d entries, %d problem(s), %d failed%s",
        today,
        len(report.digests),
        report.entries,
        report.problems,
        report.failed,
        " (dry run)" if dry_run else "",
    )
    return report


def _cycle(app: App, today: date, report: CycleReport) -> None:
    data = read_compliance(
        app.config, app.workbook("compliance"), app.ledger, today, write_ids=not report.dry_run
    )
    report.items, report.problems, report.ids_written = (
        len(data.items),
        len(data.problems),
        data.ids_written,
    )
    by_recipient: dict[str, list[Entry]] = defaultdict(list)
    for entry in Planner(app, data, today).entries():
        by_recipient[entry.recipient].append(entry)
    order = {name: i for i, (name, _) in enumerate(SECTIONS)}
    for recipient in sorted(by_recipient):
        entries = sorted(
            by_recipient[recipient],
            key=lambda e: (order[e.section], e.due or date.min, e.where, e.item_id),
        )
        report.digests.append(Digest(recipient, entries))
    if report.dry_run:
        return
    for digest in report.digests:
        message = _compose(app, today, digest)
        digest.message_id = message.message_id
        try:
            app.send(message)
        except ConnectorError as exc:
            report.failed += 1
            log.warning("reminder digest %s not sent: %s", message.message_id, type(exc).__name__)
            continue
        _record(app, today, digest)
        digest.sent = True
    report.last_reminded_written = _write_last_reminded(app, data)
    if report.failed == 0:
        previous = app.ledger.get(_KV_LAST_CYCLE)
        if not previous or previous < today.isoformat():
            app.ledger.set(_KV_LAST_CYCLE, today.isoformat())
        app.ledger.set(_KV_COMPLETED, today.isoformat())


def _write_last_reminded(app: App, data: ComplianceData) -> int:
    """Write into "Last reminded" the day each ActionPlan row was last reminded about (from
    the ledger), where the cell shows an older day or none. Returns how many were written.

    Runs after sending: a locked or unreachable file is skipped (the next cycle catches up,
    since the ledger still has the day), never a reason to hold back a digest."""
    if not data.has_last_reminded or not data.action_rows:
        return 0
    latest = {
        item_id: date.fromisoformat(day)
        for item_id, day in app.ledger.db.execute(
            "SELECT r.item_id, MAX(s.day) FROM reminders r "
            "JOIN sent_messages s ON s.message_id = r.message_id "
            "WHERE r.state = 'sent' AND r.item_id LIKE ? GROUP BY r.item_id",
            (f"{ACTION_TABLE}:%",),
        )
    }
    updates = []
    for item_id, ref in data.action_rows.items():
        day = latest.get(item_id)
        shown = _cell_day(ref.last_reminded)
        if day is None or (shown is not None and shown >= day):
            continue
        updates.append(CellUpdate(LAST_REMINDED, day, ref.row_index, ref.expect, overwrite=True))
    if not updates:
        return 0
    try:
        return app.workbook("compliance").update_cells(ACTION_TABLE, updates)
    except (ConnectorError, InputError) as exc:  # locked, offline, column renamed: next time
        log.info(
            "compliance %s: %d Last reminded cell(s) not written yet (%s)",
            ACTION_TABLE,
            len(updates),
            type(exc).__name__,
        )
        return 0


def _cell_day(value: Any) -> date | None:
    """A "Last reminded" cell as a day: a date (xlsx) or an Excel serial (Graph)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return excel_serial_to_date(float(value))
    return None


def _compose(app: App, today: date, digest: Digest) -> OutboundMessage:
    counts: defaultdict[str, int] = defaultdict(int)
    for entry in digest.entries:
        counts[entry.section] += 1
    parts = [
        f"{counts[name]} {label.lower()}"
        for name, label in (
            ("overdue", "Overdue"),
            ("today", "Due today"),
            ("soon", "Due soon"),
            ("escalated", "Escalated"),
            ("team", "Team summary"),
            ("not_understood", "Not understood"),
        )
        if counts[name]
    ]
    sections = [
        {
            "name": name,
            "title": title,
            "entries": [_entry_context(e) for e in digest.entries if e.section == name],
        }
        for name, title in SECTIONS
    ]
    # The recipient's own training (not a team member's they oversee): do the course.
    own_training = [
        e
        for e in digest.entries
        if e.kind in ("training", "induction") and e.section in ("overdue", "today", "soon")
    ]
    content = "\n".join(f"{e.item_id}|{e.due_key}|{e.step}" for e in digest.entries)
    key = f"{digest.recipient.lower()}|{today}|{hashlib.sha256(content.encode()).hexdigest()[:16]}"
    return app.compose(
        kind="reminder-digest",
        key=key,
        to=[digest.recipient],
        subject=f"Prevent compliance reminders: {', '.join(parts)}",
        template="reminder_digest",
        context={
            "day": today,
            "sections": [s for s in sections if s["entries"]],
            "count": len(digest.entries),
            "workbook_link": (app.config.compliance and app.config.compliance.workbook_link) or "",
            "has_plan_items": any(e.kind in ("action", "policy") for e in digest.entries),
            "has_training": bool(own_training),
            "course_links": any(e.link for e in own_training),
            "reply_contact": plan_contact(app.config),
        },
        high_importance=bool(counts["escalated"]),
        reply_to=plan_contact(app.config),
    )


def plan_contact(config: Config) -> str:
    """Where a person's reply to a reminder goes ("done it!"): the plan owner, else the admin;
    never the safeguarding mailbox the reminders come from, where it would become a concern."""
    cfg = config.compliance
    if cfg is not None and cfg.plan_owner:
        addresses = config.role_addresses(cfg.plan_owner)
        if addresses:
            return addresses[0]
    return config.people.admin_email


def _entry_context(entry: Entry) -> dict[str, Any]:
    return {
        "title": entry.title,
        "where": entry.where,
        "due": entry.due if entry.section not in ("team", "not_understood") else None,
        "due_text": entry.due_text,
        "why": entry.why,
        "owner": entry.owner,
        "members": list(entry.members),
        "link": entry.link,
        "link_label": entry.link_label,
    }


def _record(app: App, today: date, digest: Digest) -> None:
    now = app.now().isoformat(timespec="seconds")
    with app.ledger.transaction() as db:
        for entry in digest.entries:
            db.execute(
                "INSERT INTO reminders (item_id, due, step, recipient, state, message_id, at) "
                "VALUES (?, ?, ?, ?, 'sent', ?, ?) "
                "ON CONFLICT DO UPDATE SET state = 'sent', message_id = excluded.message_id",
                (entry.item_id, entry.due_key, entry.step, entry.recipient, digest.message_id, now),
            )
            for step in entry.superseded:
                db.execute(
                    "INSERT INTO reminders (item_id, due, step, recipient, state, at) "
                    "VALUES (?, ?, ?, ?, 'superseded', ?) ON CONFLICT DO NOTHING",
                    (entry.item_id, entry.due_key, step, entry.recipient, now),
                )
        db.execute(
            "INSERT INTO sent_messages (message_id, kind, recipients, day, entries, sent_at) "
            "VALUES (?, 'reminder-digest', ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (digest.message_id, digest.recipient, today.isoformat(), len(digest.entries), now),
        )


def scheduled_cycle(app: App) -> CycleReport | None:
    """The worker's daily job (and its catch-up): run today's cycle once it is ``send_time``
    on a working day, unless today's cycle already completed. Safe to call often."""
    cfg = app.config.compliance
    if cfg is None:
        return None
    now = app.local_now()
    today = now.date()
    if not is_working_day(today) or now.time() < cfg.send_time:
        return None
    if app.ledger.get(_KV_COMPLETED) == today.isoformat():
        return None
    return run_cycle(app, today)


# ---------------------------------------------------------------------------- bounces


def record_sent(
    app: App, message_id: str, kind: str, recipients: Iterable[str], day: date, entries: int = 0
) -> None:
    """Remember an e-mail we sent, so that a bounce for it can be traced to its recipient."""
    app.ledger.db.execute(
        "INSERT INTO sent_messages (message_id, kind, recipients, day, entries, sent_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            message_id,
            kind,
            ",".join(recipients),
            day.isoformat(),
            entries,
            app.now().isoformat(timespec="seconds"),
        ),
    )


def report_bounce(app: App, original_message_id: str) -> bool:
    """A non-delivery report named ``original_message_id``: if we sent it (a reminder digest,
    an escalation or a weekly digest), tell the admin which address bounced, once.

    Returns True if the message was ours (reported now or before), False otherwise."""
    wanted = original_message_id.strip()
    if not wanted.startswith("<"):
        wanted = f"<{wanted}>"
    row = app.ledger.db.execute(
        "SELECT kind, recipients, day, bounced_at FROM sent_messages WHERE message_id = ?",
        (wanted,),
    ).fetchone()
    if row is None:
        return False
    if row["bounced_at"]:
        return True
    message = app.compose(
        kind="bounce-report",
        key=wanted,
        to=[app.config.people.admin_email],
        subject="[Prevent service] A reminder could not be delivered",  # as tell_admin's
        template="reminder_bounce",
        context={
            "recipients": row["recipients"].split(","),
            "what": _KIND_NAMES.get(row["kind"], row["kind"]),
            "day": date.fromisoformat(row["day"]),
            "message_id": wanted,
        },
    )
    app.send(message)
    app.ledger.db.execute(
        "UPDATE sent_messages SET bounced_at = ? WHERE message_id = ?",
        (app.now().isoformat(timespec="seconds"), wanted),
    )
    log.info("bounce of %s reported to the admin", wanted)
    return True


_KIND_NAMES = {
    "reminder-digest": "compliance reminder digest",
    "escalation": "concern escalation",
    "weekly-digest": "weekly digest of open concerns",
}


# ---------------------------------------------------------------------------- CLI


def remind_command(app: App, as_of: date | None, dry_run: bool, out: TextIO) -> int:
    """``prevent-service remind``: run the cycle (as of a day); ``--dry-run`` prints a table.
    Without a [compliance] section it is an ``InputError`` (exit 1), as for ``plan``."""
    if app.config.compliance is None:
        raise InputError(NO_COMPLIANCE)
    report = run_cycle(app, as_of, dry_run=dry_run)
    if report.skipped:
        print(report.summary(), file=out)
        return 0
    if dry_run:
        rows = [
            (d.recipient, _short(e.title, 48), e.due.isoformat() if e.due else "-", e.why)
            for d in report.digests
            for e in d.entries
        ]
        _table(out, ("recipient", "item", "due", "why"), rows)
    print(report.summary(), file=out)
    return 1 if report.failed else 0


def plan_command(app: App, days: int, out: TextIO) -> int:
    """``prevent-service plan``: deadlines in the next ``days`` days (and overdue), and every
    cell not understood. Reads only: writes no IDs, sends nothing."""
    cfg = app.config.compliance
    if cfg is None:
        raise InputError(NO_COMPLIANCE)
    today = app.local_now().date()
    data = read_compliance(
        app.config, app.workbook("compliance"), app.ledger, today, write_ids=False
    )
    calendar = calendar_for(cfg)
    horizon = today + timedelta(days=days)
    rows: list[tuple[date, str, str, str, str]] = []
    for item in data.items:
        for due in _occurrences(item, calendar, today, horizon):
            delta = (due - today).days
            when = f"overdue {-delta}d" if delta < 0 else "today" if delta == 0 else f"in {delta}d"
            rows.append(
                (
                    due,
                    when,
                    _short(item.title, 48),
                    _short(item.owner_text, 30),
                    f"{item.sheet} row {item.row}",
                )
            )
    rows.sort(key=lambda r: (r[0], r[4]))
    print(f"Deadlines to {horizon.isoformat()} (and overdue), as of {today.isoformat()}:", file=out)
    _table(
        out,
        ("due", "when", "item", "owner", "where"),
        [(r[0].isoformat(), *r[1:]) for r in rows],
    )
    if data.problems:
        print(
            f"\nNot understood ({len(data.problems)}): these get no reminders until fixed", file=out
        )
        _table(
            out,
            ("sheet", "row", "column", "text", "why"),
            [
                (p.sheet, str(p.row) if p.row else "-", p.column, _short(p.text, 40), p.reason)
                for p in data.problems
            ],
        )
    else:
        print("\nEvery cell was understood.", file=out)
    return 1 if data.problems else 0


def _occurrences(item: Item, calendar: DueCalendar, today: date, horizon: date) -> list[date]:
    if not item.spec.recurring:
        due = item.first_due(calendar)
        return [due] if due and due <= horizon else []
    found: list[date] = []
    day = today
    while len(found) < 50:
        due = calendar.occurrence_on_or_after(item.spec, day, item.first_seen)
        if due is None or due > horizon:
            break
        found.append(due)
        day = due + timedelta(days=1)
    return found


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        print("  (none)", file=out)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)
