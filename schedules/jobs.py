"""The worker's schedule, rebuilt from config at every start.

Jobs (stable ids, so a restart never doubles one):

===================  ===============================================  =========================
id                   when                                             does
===================  ===============================================  =========================
``intake-poll``      every ``schedule.poll_seconds`` (first at start)  the intake cycle
``reminders-daily``  ``compliance.send_time``, organisation time zone  the reminder cycle
``escalation``       every ``schedule.escalation_check_minutes``       escalate concerns still New
``weekly-digest``    ``schedule.digest_day`` at ``digest_time``        the DSP's weekly digest
``yearly-report``    daily at the compliance ``send_time`` (08:00)     the board report, on
                                                                      ``report.send_on`` (once)
``catch-up``         at start, then with the escalation check          today's reminders, this
                                                                      week's digest and the
                                                                      yearly report, if missed
===================  ===============================================  =========================

At start the three start-up runs go in this order: the intake poll, then the escalation check,
then the catch-up, so that the catch-up's weekly digest counts the concerns the first poll has
just recorded. (APScheduler runs jobs due together by time, then by id, which would put
``catch-up`` first: their first run times are staggered by a few milliseconds instead.)

APScheduler's own INFO lines ("Adding job tentatively", "Added job …", "Scheduler started") are
quietened unless ``--debug``; the service logs what each job did.

Cron times are in ``organisation.timezone`` (Europe/London), so 08:00 stays 08:00 across the
BST/GMT change. Every job has ``coalesce=True``, ``max_instances=1`` and a misfire grace; the
job store is in memory: the ledger, not the job store, is the durable truth, and every job is
idempotent (the catch-up job and the daily job may both look at the same day safely).

Jobs run one at a time in the scheduler's own thread (APScheduler's ``DebugExecutor``, which
calls the job directly): they share one ``App`` and its SQLite connection, which must not be
used from two threads, and intake, reminders and escalation never interleave their writes.
A long cycle only delays the next poll; missed runs coalesce into one.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.executors.debug import DebugExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from service.app import App
from service.config import Config
from service.errors import PreventServiceError

log = logging.getLogger("prevent_service.schedules")

AppFactory = Callable[[], App]

JOB_POLL = "intake-poll"
JOB_REMINDERS = "reminders-daily"
JOB_ESCALATION = "escalation"
JOB_WEEKLY = "weekly-digest"
JOB_CATCH_UP = "catch-up"
JOB_REPORT = "yearly-report"
# First runs at start, in this order (see the module docstring).
STARTUP_ORDER = (JOB_POLL, JOB_ESCALATION, JOB_CATCH_UP)
_STARTUP_STEP = timedelta(milliseconds=10)


def build_scheduler(app_factory: AppFactory, config: Config) -> BlockingScheduler:
    """A scheduler with the service's jobs; ``start()`` blocks until ``shutdown()``.

    ``app_factory`` is called at every run; it may return the same ``App`` each time."""
    quiet_apscheduler()  # before add_jobs: it logs as each job is added
    tz = config.organisation.tz
    scheduler = BlockingScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": DebugExecutor()},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": config.schedule.misfire_grace_seconds,
        },
        timezone=tz,
    )
    add_jobs(scheduler, app_factory, config)
    scheduler.add_listener(
        on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
    )
    # APScheduler logs a failing job with its traceback and exception message, which could
    # quote what a job was reading; our listener logs the job id and error class instead.
    executor_log = logging.getLogger("apscheduler.executors.default")
    if not executor_log.isEnabledFor(logging.DEBUG):
        executor_log.setLevel(logging.CRITICAL)
    return scheduler


def quiet_apscheduler() -> None:
    """APScheduler's scheduler logs each job added at INFO ("Adding job tentatively …" five
    times at every start): keep its warnings, drop that chatter unless debugging."""
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    if not scheduler_log.isEnabledFor(logging.DEBUG):
        scheduler_log.setLevel(logging.WARNING)


def add_jobs(scheduler: BaseScheduler, app_factory: AppFactory, config: Config) -> list[str]:
    """Add (or replace) the jobs the config asks for; returns their ids."""
    tz = config.organisation.tz
    schedule = config.schedule
    now = datetime.now(tz)
    added: list[str] = []

    def first_run(job_id: str) -> datetime:
        return now + STARTUP_ORDER.index(job_id) * _STARTUP_STEP

    def add(job_id: str, func: Callable[[App], Any], trigger: Any, **kw: Any) -> None:
        scheduler.add_job(
            _run,
            trigger,
            args=(job_id, app_factory, func),
            id=job_id,
            name=job_id,
            replace_existing=True,
            # Also the scheduler's defaults; given here so the jobs carry them before start().
            coalesce=True,
            max_instances=1,
            misfire_grace_time=schedule.misfire_grace_seconds,
            **kw,
        )
        added.append(job_id)

    if config.intake.mailbox is not None or config.intake.forms is not None:
        add(
            JOB_POLL,
            _poll,
            IntervalTrigger(seconds=schedule.poll_seconds, timezone=tz),
            next_run_time=first_run(JOB_POLL),
        )
    add(
        JOB_ESCALATION,
        _escalation,
        IntervalTrigger(minutes=schedule.escalation_check_minutes, timezone=tz),
        next_run_time=first_run(JOB_ESCALATION),
    )
    add(
        JOB_WEEKLY,
        _weekly,
        CronTrigger(
            day_of_week=schedule.digest_day,
            hour=schedule.digest_time.hour,
            minute=schedule.digest_time.minute,
            timezone=tz,
        ),
    )
    if config.compliance is not None:
        send = config.compliance.send_time
        add(JOB_REMINDERS, _reminders, CronTrigger(hour=send.hour, minute=send.minute, timezone=tz))
    # Daily at the send time: the body only acts on report.send_on (next working day), once.
    at = config.compliance.send_time if config.compliance is not None else dtime(8, 0)
    add(JOB_REPORT, _yearly_report, CronTrigger(hour=at.hour, minute=at.minute, timezone=tz))
    add(
        JOB_CATCH_UP,
        _catch_up,
        IntervalTrigger(minutes=schedule.escalation_check_minutes, timezone=tz),
        next_run_time=first_run(JOB_CATCH_UP),
    )
    return added


# ---------------------------------------------------------------------------- job bodies


def _run(job_id: str, app_factory: AppFactory, func: Callable[[App], Any]) -> Any:
    from service.admin.status import job_failed, job_succeeded

    started = time.monotonic()
    app = app_factory()
    try:
        result = func(app)
    except Exception as exc:
        if job_id != JOB_POLL:  # intake records its cycles and tells the admin itself
            try:
                job_failed(app, job_id, exc)
            except Exception as recording:  # never hide the job's own error behind this one
                log.error(
                    "could not record that job %s failed (%s)", job_id, type(recording).__name__
                )
        raise  # on to the listener, which logs it
    if job_id != JOB_POLL:
        job_succeeded(app, job_id)
    log.debug("job %s done in %.2fs", job_id, time.monotonic() - started)
    return result


def _poll(app: App) -> Any:
    from service.intake.pipeline import poll  # the intake pipeline loads its parsers only when used

    return poll(app)


def _reminders(app: App) -> Any:
    from service.compliance.reminders import scheduled_cycle

    return scheduled_cycle(app)


def _escalation(app: App) -> Any:
    from service.cases.escalation import check

    return check(app)


def _weekly(app: App) -> Any:
    from service.cases.escalation import scheduled_weekly

    return scheduled_weekly(app)


def _yearly_report(app: App) -> Any:
    from connectors.report_xlsx import write_report_workbook
    from service.reporting.report import scheduled_yearly

    return scheduled_yearly(app, write_report_workbook)


def _catch_up(app: App) -> None:
    """After downtime (or a misfire past its grace): today's reminders, this week's digest and
    the yearly report go out once their time has passed. All are no-ops when already done."""
    from service.cases.escalation import scheduled_weekly
    from service.compliance.reminders import scheduled_cycle

    if app.config.compliance is not None:
        scheduled_cycle(app)
    scheduled_weekly(app)
    _yearly_report(app)


# ---------------------------------------------------------------------------- listeners


def on_job_event(event: JobEvent) -> None:
    """Log failures and misses by job id and error class: never the job's data."""
    if event.code == EVENT_JOB_ERROR and isinstance(event, JobExecutionEvent):
        exc = event.exception
        # Our own errors are content-free by design; others might quote data: class only.
        # SQLite's messages ("database or disk is full") carry no data either.
        detail = f": {exc}" if isinstance(exc, PreventServiceError | sqlite3.Error) else ""
        log.error("job %s failed with %s%s", event.job_id, type(exc).__name__, detail)
    elif event.code == EVENT_JOB_MISSED and isinstance(event, JobExecutionEvent):
        log.warning(
            "job %s missed its run at %s (worker busy or down); the next run catches up",
            event.job_id,
            event.scheduled_run_time,
        )
    elif event.code == EVENT_JOB_MAX_INSTANCES:
        log.warning("job %s still running: this run was skipped", event.job_id)
