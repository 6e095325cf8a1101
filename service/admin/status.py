"""``prevent-service status``: is the service alive, and is anything waiting on a person?"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from connectors import SENDERS, backend_class
from service.admin.problems import Problem, advice, intake_problems
from service.app import App
from service.cases import chronology
from service.errors import InputError, PreventServiceError
from service.ledger import ItemRow, ItemState

log = logging.getLogger("prevent_service.status")

STALE_POLLS = 5  # a last good poll older than this many intervals is unhealthy
FAILING_RUNS_BEFORE_NOTICE = 3  # a scheduled job failing this many times in a row: tell the admin
_FAILING = "job.failing:"  # kv key prefix: {"since", "count", "error"} while a job keeps failing
_NOTICE = "job.notice:"  # kv key prefix: the day the admin was last told about that job


def job_failed(app: App, job_id: str, exc: BaseException) -> None:
    """Record a failed run of a scheduled job; on the 3rd in a row (then at most daily) e-mail
    the admin. Intake has its own notices; this covers reminders, escalation, the digests and
    the report, which would otherwise stop with only a log line. Content-free: our errors'
    messages are written to be, anything else is named by its class only."""
    error = str(exc) if isinstance(exc, PreventServiceError) else type(exc).__name__
    state = json.loads(app.ledger.get(_FAILING + job_id) or "{}")
    state = {
        "since": state.get("since") or app.now().isoformat(),
        "count": int(state.get("count", 0)) + 1,
        "error": error[:500],
    }
    app.ledger.set(_FAILING + job_id, json.dumps(state))
    today = app.local_now().date().isoformat()
    if state["count"] < FAILING_RUNS_BEFORE_NOTICE or app.ledger.get(_NOTICE + job_id) == today:
        return
    if not app.tell_admin(
        kind="failing",
        key=f"{job_id}:{today}",
        subject=f"The scheduled job '{job_id}' keeps failing",
        what=f"The scheduled job '{job_id}'",
        problem=str(state["error"]),
        attempts=int(state["count"]),
    ):
        return
    app.ledger.set(_NOTICE + job_id, today)


def job_succeeded(app: App, job_id: str) -> None:
    if app.ledger.get(_FAILING + job_id) is not None:
        app.ledger.delete(_FAILING + job_id)
        log.info("job %s works again", job_id)


def failing_jobs(app: App) -> dict[str, dict[str, object]]:
    rows = app.ledger.db.execute(
        "SELECT key, value FROM kv WHERE key LIKE ? ORDER BY key", (_FAILING + "%",)
    ).fetchall()
    return {str(key)[len(_FAILING) :]: json.loads(value) for key, value in rows}


def _age(when: str | None, now: datetime) -> str:
    if not when:
        return "never"
    seconds = int((now - datetime.fromisoformat(when)).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _error_text(error: str, problems: list[Problem]) -> str:
    """An item's last error, or a pointer to the same problem listed above (one outage
    would otherwise repeat the same long line for every item it holds back)."""
    message = error.split(": ", 1)[-1]
    return "as in the problems above" if any(message in p.what for p in problems) else error


def _when(iso: str, app: App) -> str:
    """A local time a person reads, and how long ago."""
    at = datetime.fromisoformat(iso).astimezone(app.config.organisation.tz)
    return f"{at:%d/%m/%Y %H:%M} ({_age(iso, app.now())})"


def _next_try(iso: str | None, app: App) -> str:
    """When a parked item is tried again, in local time like every other time here (the
    ledger's UTC ISO stamp read an hour off in summer and unlike the lines around it)."""
    if not iso:
        return "at the next cycle"
    at = datetime.fromisoformat(iso)
    seconds = int((at - app.now()).total_seconds())
    if seconds <= 0:
        return "at the next cycle"
    wait = f"{seconds}s" if seconds < 120 else f"{seconds // 60} min"
    local = at.astimezone(app.config.organisation.tz)
    return f"{local:%d/%m/%Y %H:%M} (in {wait})"


QUARANTINE_LISTED = 20  # the newest; `status` says how many more there are
_READ = "quarantine.read:"  # kv key prefix: when a person said they had dealt with the item


def quarantine_waiting(app: App) -> list[ItemRow]:
    """Quarantined items nobody has yet said they read."""
    return [
        row
        for row in app.ledger.items_in_state(ItemState.QUARANTINED)
        if app.ledger.get(_READ + row.source_key) is None
    ]


def mark_quarantine_read(app: App, key: str) -> int:
    """Record that a person dealt with quarantined ``key`` (or ``all``); how many were marked.
    ``InputError`` if no quarantined item has that key."""
    waiting = quarantine_waiting(app)
    if key != "all" and not key.startswith("mail:") and app.ledger.item(key) is None:
        key = f"mail:{key}"  # the item as the DSP's quarantine notice names it
    chosen = waiting if key == "all" else [r for r in waiting if r.source_key == key]
    if not chosen and key != "all":
        known = app.ledger.item(key)
        if known is None or known.state != ItemState.QUARANTINED:
            raise InputError(f"no quarantined item {key!r}: 'prevent-service status' lists them")
    for row in chosen:
        app.ledger.set(_READ + row.source_key, app.now().isoformat())
        log.info("quarantined item %s marked as read by a person", row.source_key)
    return len(chosen)


def status_report(app: App) -> tuple[bool, list[str]]:
    """Lines for a person, and whether the service looks healthy (for monitoring)."""
    ledger, now = app.ledger, app.now()
    lines: list[str] = []
    healthy = True

    last = ledger.last_runs("intake", 1)
    good = ledger.last_good_run("intake")
    problems = intake_problems(app)
    if last:
        run = last[0]
        outcome = "ok" if run["ok"] else ("running" if run["ok"] is None else "with problems")
        lines.append(
            f"last intake cycle: {_age(run['started_at'], now)} ({outcome}): {run['summary'] or ''}"
        )
        lines.append(f"last good cycle:   {_age(good['started_at'] if good else None, now)}")
        limit = timedelta(seconds=app.config.schedule.poll_seconds * STALE_POLLS + 60)
        if good is None or now - datetime.fromisoformat(good["started_at"]) > limit:
            healthy = False
            lines.append(
                "  ! no good intake cycle recently: is the worker running (prevent-service run)?"
                + (" If it is, see the problems below." if problems else "")
            )
    else:  # monitoring must not stay green for a worker that was never started
        healthy = False
        lines.append("last intake cycle: never (run prevent-service poll or run)")
    if problems:
        lines.append(f"problems in the last intake cycle ({len(problems)}):")
        for problem in problems:
            lines += [
                f"  ! {problem.describe()}",
                f"    since {_when(problem.since, app)}, {problem.count} cycle(s) in a row",
                f"    what to do: {advice(problem.what)}",
            ]

    counts = ledger.counts_by_state()
    order = [
        ItemState.OPEN,
        ItemState.DONE,
        ItemState.IGNORED,
        ItemState.DUPLICATE,
        ItemState.QUARANTINED,
    ]
    lines.append("items: " + ", ".join(f"{state} {counts.get(state, 0)}" for state in order))

    pending = ledger.items_in_state(ItemState.OPEN)
    if pending:
        lines.append(f"pending ({len(pending)}):")
        for row in pending:
            steps = [
                name
                for name, at in (
                    ("alerted", row.alerted_at),
                    ("logged", row.logged_at),
                    ("acknowledged", row.acked_at),
                )
                if at
            ]
            lines.append(
                f"  {row.reference or row.source_key}: done so far: "
                f"{', '.join(steps) or 'nothing'}; attempts {row.attempts}; next try "
                f"{_next_try(row.retry_at, app)}"
                + (
                    f"; last error: {_error_text(row.last_error, problems)}"
                    if row.last_error
                    else ""
                )
            )
            if row.attempts >= 5 or (row.last_error or "").startswith("PermanentError"):
                healthy = False  # a person has to fix something
    waiting_events = chronology.pending_count(app)
    if waiting_events:  # the register was locked or down: written on a later run
        lines.append(f"chronology: {waiting_events} event(s) waiting to be written")
    waiting = quarantine_waiting(app)
    if waiting:
        healthy = False  # nothing is lost, but nobody has read it yet
        lines.append(f"quarantined ({len(waiting)}) — a person must read these:")
        shown = waiting[-QUARANTINE_LISTED:]
        if len(waiting) > len(shown):  # e.g. all an older version quarantined, after an upgrade
            lines.append(f"  … and {len(waiting) - len(shown)} earlier one(s), not listed")
        for row in shown:
            lines.append(f"  ! {row.source_key} ({_age(row.done_at, now)}): {row.last_error or ''}")
        lines.append(
            "    what to do: open each in the mailbox's Quarantine folder (the DSP was sent a "
            "notice for each), deal with it, then run 'prevent-service status --quarantine-read "
            "KEY'; once every one is dealt with, 'prevent-service status --quarantine-read all'"
        )
    for kind in ("reminders", "escalation"):
        runs = ledger.last_runs(kind, 1)
        if runs:
            lines.append(
                f"last {kind} run: {_age(runs[0]['started_at'], now)}: {runs[0]['summary'] or ''}"
            )
    for job_id, state in failing_jobs(app).items():
        healthy = False
        lines.append(
            f"  ! job {job_id} has failed {state['count']} time(s) in a row since "
            f"{_when(str(state['since']), app)}: {state['error']}"
        )
        lines.append(f"    what to do: {advice(str(state['error']))}")
    drafts = stale_draft_lines(app)
    healthy = healthy and not drafts
    lines.extend(drafts)
    lines.append("healthy" if healthy else "NOT HEALTHY")
    return healthy, lines


STALE_DRAFT_AFTER = timedelta(minutes=10)


def stale_draft_lines(app: App) -> list[str]:
    """Mail drafted in the shared mailbox but not known to be sent after a few minutes (a
    backend that drafts before sending says which; others have none). Anyone with access to
    the mailbox could send such a draft, so a person should look."""
    section = app.config.sending.sender
    finder = getattr(backend_class(SENDERS, section.backend), "stale_drafts", None)
    address = getattr(section, "address", None)
    if finder is None or not address:
        return []
    stale = finder(app.ledger, address, app.now(), STALE_DRAFT_AFTER)
    if not stale:
        return []
    lines = [
        f"  ! {len(stale)} message(s) drafted in {address} but not known to be sent after "
        f"{int(STALE_DRAFT_AFTER.total_seconds() // 60)} min (the worker sends or removes the "
        "draft on its next try; if this stays, look in the mailbox's Drafts):"
    ]
    lines += [f"    {message_id} since {since}" for message_id, since in stale[:20]]
    return lines
