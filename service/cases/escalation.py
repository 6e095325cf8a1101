"""Concerns nobody has picked up: escalation, time-to-acknowledge, and the DSP's weekly digest.

The register's ``Status`` column is the DSP's. A concern still ``New`` (or blank) escalates:

- level 1 once it has been ``New`` for ``register.escalate_after_hours`` (clock hours since it
  was recorded), level 2 at twice that. Each level goes once per concern to the deputy DSP and
  the escalation role (``compliance.escalate_to_role``, default the Executive Director), copied
  to the DSP; level 2 is sent high importance. If the service was down and a concern is already
  past level 2, only level 2 is sent and level 1 is marked superseded.
- The first time the check sees a concern's status other than ``New`` it records that time:
  time-to-acknowledge is that minus "Recorded at" (an upper bound: the check runs every
  ``schedule.escalation_check_minutes``). A concern the check never saw ``New`` (a new or lost
  ledger, a register older than the worker) is timed only if it was recorded within the last
  two check intervals; otherwise it stays untimed rather than counting weeks as the DSP's.

The weekly digest to the DSP lists open concerns (status not closed) by age, with references,
status and risk level only; the register's Summary is added when ``alert_detail = "full"``.
E-mails carry references and times, never the account itself.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from service.app import App
from service.cases import chronology, watch
from service.cases.escalation_time import (
    copied_text,
    counts_working,
    hours_text,
    is_critical,
    waited_hours,
)
from service.cases.register import CLOSED_STATUSES, STATUS, STATUS_NEW, dated_rows
from service.compliance.reminders import record_sent
from service.errors import ConnectorError, InputError
from service.values import as_text

log = logging.getLogger("prevent_service.escalation")

ESCALATION_LEVELS = (1, 2)  # multiples of register.escalate_after_hours
AGE_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("Under a day", timedelta(days=1)),
    ("1 to 7 days", timedelta(days=7)),
    ("1 to 4 weeks", timedelta(days=28)),
    ("Over 4 weeks", None),
)
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_KV_WEEKLY = "escalation.weekly_digest_week"
_CLOSED = {" ".join(s.lower().split()) for s in CLOSED_STATUSES}


@dataclass(frozen=True)
class ConcernRow:
    reference: str
    recorded_at: datetime  # aware UTC
    status: str
    risk: str = ""
    summary: str = ""
    critical_text: str = ""  # the register's "Critical risk factor"
    fields: tuple[tuple[str, str], ...] = ()  # the DSP's watched columns (service.cases.watch)
    decided: bool = False  # a first decision shows (rationale, referral choice, closed)

    @property
    def is_new(self) -> bool:
        return _is_new(self.status)

    @property
    def is_open(self) -> bool:
        return _norm(self.status) not in _CLOSED


@dataclass
class EscalationReport:
    checked: int = 0
    new: int = 0
    escalated: list[tuple[str, int]] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    unreadable: list[int] = field(default_factory=list)  # sheet rows with no usable time
    failed: int = 0
    chronology_problem: str | None = None  # events left pending (the register was locked)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _is_new(status: str) -> bool:
    return not status or _norm(status) == _norm(STATUS_NEW)


def read_concerns(app: App) -> tuple[list[ConcernRow], list[int]]:
    """The register's rows as the escalation check needs them; rows whose "Recorded at" is
    unreadable are returned by sheet row number (never guessed)."""
    section = app.config.register
    table = app.workbook("register").read_table(section.table)
    tz = app.config.organisation.tz
    dated, bad = dated_rows(table, tz)
    rows = [
        ConcernRow(
            reference=row.reference,
            recorded_at=row.recorded_at,
            status=as_text(row.cells.get(STATUS)),
            risk=as_text(row.cells.get("Risk level")),
            summary=as_text(row.cells.get("Summary")),
            critical_text=as_text(row.cells.get("Critical risk factor")),
            fields=(fields := watch.watched_fields(row.cells, tz)),
            decided=watch.decided(row.cells, fields),
        )
        for row in dated
    ]
    return rows, bad


def level_for(age: timedelta, threshold_hours: float) -> int:
    hours = age.total_seconds() / 3600
    return max((lvl for lvl in ESCALATION_LEVELS if hours >= lvl * threshold_hours), default=0)


def check(app: App) -> EscalationReport:
    """One escalation check: record status changes, send any escalation now due."""
    report = EscalationReport()
    now = app.now()
    now_iso = now.isoformat(timespec="seconds")
    db = app.ledger.db
    concerns, report.unreadable = read_concerns(app)
    threshold = app.config.register.escalate_after_hours
    # A concern first seen already past New is timed only if it was recorded after the last
    # check could have seen it (with slack for a late check); else no check saw it happen.
    fresh = timedelta(minutes=2 * app.config.schedule.escalation_check_minutes)
    for concern in concerns:
        report.checked += 1
        seen = db.execute(
            "SELECT status FROM concern_watch WHERE reference = ?", (concern.reference,)
        ).fetchone()
        db.execute(
            "INSERT INTO concern_watch (reference, recorded_at, first_checked, status) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(reference) DO UPDATE SET status = excluded.status",
            (concern.reference, concern.recorded_at.isoformat(), now_iso, concern.status),
        )
        if not concern.is_new:
            # Seen before: timed if that check saw it New (else it was already left untimed).
            timed = now - concern.recorded_at <= fresh if seen is None else _is_new(seen["status"])
            if not timed:
                continue
            cur = db.execute(
                "UPDATE concern_watch SET left_new_at = ? "
                "WHERE reference = ? AND left_new_at IS NULL",
                (now_iso, concern.reference),
            )
            if cur.rowcount:
                report.acknowledged.append(concern.reference)
            continue
        report.new += 1
        critical = is_critical(app, concern.reference, concern.critical_text)
        waited = waited_hours(app.config, concern.recorded_at, now, critical=critical)
        level = level_for(timedelta(hours=waited), threshold)
        if level == 0:
            continue
        done = db.execute(
            "SELECT 1 FROM escalations WHERE reference = ? AND level >= ?",
            (concern.reference, level),
        ).fetchone()
        if done:
            continue
        try:
            _escalate(app, concern, level, now, critical=critical)
        except ConnectorError as exc:
            report.failed += 1
            log.warning("escalation %s level %d not sent: %s", concern.reference, level,
                        type(exc).__name__)  # fmt: skip
            continue
        report.escalated.append((concern.reference, level))
    if report.unreadable:
        log.warning(
            "escalation: %d register row(s) without a readable time", len(report.unreadable)
        )
    watch.notice(app, concerns, now)
    report.chronology_problem = chronology.flush(app)
    log.info(
        "escalation check: %d concern(s), %d new, %d escalated, %d acknowledged",
        report.checked,
        report.new,
        len(report.escalated),
        len(report.acknowledged),
    )
    return report


def escalation_recipients(app: App) -> tuple[list[str], list[str]]:
    """(to, cc): the deputy DSP and the escalation role; the DSP in copy."""
    config = app.config
    role = config.compliance.escalate_to_role if config.compliance else "Executive Director"
    to = list(config.role_addresses(role))
    if config.people.deputy_dsp:
        to.insert(0, config.people.deputy_dsp.email)
    cc = [config.people.dsp.email]
    if not to:  # nobody else is configured: the DSP again, and the admin
        to, cc = [config.people.dsp.email, config.people.admin_email], []
    return list(dict.fromkeys(to)), cc


def _escalate(
    app: App, concern: ConcernRow, level: int, now: datetime, *, critical: bool = False
) -> None:
    to, cc = escalation_recipients(app)
    tz = app.config.organisation.tz
    working = counts_working(app.config, critical)
    hours = waited_hours(app.config, concern.recorded_at, now, critical=critical)
    waited = hours_text(hours, working=working)
    full = app.config.register.alert_detail == "full"
    urgent = level > 1 or critical  # a critical concern was urgent in its first alert too
    message = app.compose(
        kind="escalation",
        key=f"{concern.reference}|{level}",
        to=to,
        cc=cc,
        subject=(
            f"[Prevent] {'URGENT – ' if urgent else ''}Concern {concern.reference} not yet "
            "picked up "
            f"({waited})"
        ),
        template="escalation",
        context={
            "reference": concern.reference,
            "recorded_at": concern.recorded_at.astimezone(tz),
            "hours": waited,
            "urgent": urgent,
            "critical": critical,
            "copied": copied_text(app.config, cc),
            "level": level,
            "levels": len(ESCALATION_LEVELS),
            "threshold": hours_text(app.config.register.escalate_after_hours, working=working),
            "dsp_name": app.config.people.dsp.name,
            "register_link": app.config.register.link or "",
            "summary": concern.summary if full else "",
        },
        high_importance=urgent,
    )
    app.send(message)
    at = now.isoformat(timespec="seconds")
    with app.ledger.transaction() as db:
        db.execute(
            "INSERT INTO escalations (reference, level, state, message_id, at) "
            "VALUES (?, ?, 'sent', ?, ?) ON CONFLICT DO NOTHING",
            (concern.reference, level, message.message_id, at),
        )
        for lower in ESCALATION_LEVELS:
            if lower < level:
                db.execute(
                    "INSERT INTO escalations (reference, level, state, at) "
                    "VALUES (?, ?, 'superseded', ?) ON CONFLICT DO NOTHING",
                    (concern.reference, lower, at),
                )
    chronology.record(
        app,
        concern.reference,
        f"escalated|{level}",
        f"Escalated (level {level})",
        note=f"Still New after {waited}. To {chronology.people_text(app, to)}"
        + (f"; copied to {chronology.people_text(app, cc)}" if cc else ""),
        at=now,
    )
    record_sent(app, message.message_id, "escalation", (*to, *cc), now.astimezone(tz).date())
    log.info("escalated %s to level %d", concern.reference, level)


def _hours_text(hours: float) -> str:
    if hours < 48:
        whole = int(hours)
        return f"{whole} hour{'s' if whole != 1 else ''}"
    return f"{int(hours // 24)} days"


# ---------------------------------------------------------------------------- time to ack


def time_to_acknowledge(app: App, since: datetime | None = None) -> dict[str, timedelta]:
    """Reference → time from "Recorded at" to the first check that saw it no longer New."""
    rows = app.ledger.db.execute(
        "SELECT reference, recorded_at, left_new_at FROM concern_watch "
        "WHERE left_new_at IS NOT NULL"
    ).fetchall()
    out: dict[str, timedelta] = {}
    for row in rows:
        left = datetime.fromisoformat(row["left_new_at"])
        if since and left < since:
            continue
        out[row["reference"]] = max(timedelta(0), left - datetime.fromisoformat(row["recorded_at"]))
    return out


# ---------------------------------------------------------------------------- weekly digest


def week_key(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def weekly_digest(app: App, week: str | None = None) -> bool:
    """Send the digest of open concerns to the DSP, once per ISO week (``week``, default this
    one: a catch-up names the missed week). True if sent."""
    now = app.now()
    tz = app.config.organisation.tz
    today = now.astimezone(tz).date()
    week = week or week_key(today)
    if app.ledger.get(_KV_WEEKLY) == week:
        return False
    try:
        concerns, unreadable = read_concerns(app)
    except (ConnectorError, InputError) as exc:
        # Never a "0 open concerns" digest from a register nobody could read: not sent, not
        # marked sent, so the next catch-up (every escalation check) tries again.
        log.warning("weekly digest %s not sent: the register could not be read (%s)", week,
                    type(exc).__name__)  # fmt: skip
        return False
    open_ = sorted((c for c in concerns if c.is_open), key=lambda c: c.recorded_at)
    full = app.config.register.alert_detail == "full"
    levels = {
        r["reference"]: r["level"]
        for r in app.ledger.db.execute(
            "SELECT reference, MAX(level) AS level FROM escalations WHERE state = 'sent' "
            "GROUP BY reference"
        )
    }
    buckets: list[dict[str, Any]] = []
    lower = timedelta.min  # "Under a day" also holds a time in the future (typed or clock)
    for title, upper in AGE_BUCKETS:
        rows = []
        for c in open_:
            age = now - c.recorded_at
            if age >= lower and (upper is None or age < upper):
                rows.append(
                    {
                        "reference": c.reference,
                        "recorded_at": c.recorded_at.astimezone(tz),
                        "age_days": max(age, timedelta(0)).days,
                        "status": c.status or STATUS_NEW,
                        "risk": c.risk,
                        "escalated": levels.get(c.reference, 0),
                        "summary": c.summary if full else "",
                    }
                )
        if rows:
            buckets.append({"title": title, "rows": rows})
        lower = upper or lower
    buckets.reverse()  # oldest first: what has waited longest heads the e-mail
    acks = time_to_acknowledge(app, since=now - timedelta(days=28))
    hours = sorted(v.total_seconds() / 3600 for v in acks.values())
    stats = (
        {
            "count": len(hours),
            "median": _hours_text(statistics.median(hours)),
            "slowest": _hours_text(hours[-1]),
        }
        if hours
        else None
    )
    to = [app.config.people.dsp.email]
    year, number = week.split("-W")
    week_of = date.fromisocalendar(int(year), int(number), 1)
    message = app.compose(
        kind="weekly-digest",
        key=week,
        to=to,
        # "[Prevent]" like every other mail about concerns (one inbox rule catches them all);
        # the week by its Monday, as people say it, not its ISO key (2026-W49).
        subject=(
            f"[Prevent] {len(open_)} open concern{'' if len(open_) == 1 else 's'} – week of "
            f"{week_of:%a %d %b %Y}"
        ),
        template="weekly_digest",
        context={
            "week": f"{week_of:%a %d %b %Y}",
            "day": today,
            "open_count": len(open_),
            "new_count": sum(c.is_new for c in open_),
            "buckets": buckets,
            "ack": stats,
            "unreadable": unreadable,
            "full": full,
            "dsp_name": app.config.people.dsp.name,
            "register_link": app.config.register.link or "",
        },
    )
    app.send(message)
    app.ledger.set(_KV_WEEKLY, week)
    record_sent(app, message.message_id, "weekly-digest", to, today, len(open_))
    log.info("weekly digest %s sent: %d open concern(s)", week, len(open_))
    return True


def scheduled_weekly(app: App) -> bool:
    """Catch-up for the weekly digest: send the latest one whose ``digest_day``/``digest_time``
    has passed if it has not gone yet (the worker was down at that moment). A digest missed
    last week goes now, unless this week's is less than a day away (it carries the same)."""
    schedule = app.config.schedule
    local = app.local_now()
    monday = local.date() - timedelta(days=local.weekday())
    due = datetime.combine(
        monday + timedelta(days=_WEEKDAYS.index(schedule.digest_day)),
        schedule.digest_time,
        tzinfo=local.tzinfo,
    )
    if local < due:
        if due - local <= timedelta(days=1):
            return False
        due -= timedelta(days=7)
    return weekly_digest(app, week_key(due.date()))
