"""The worker's schedule: jobs built from config, triggers in London time, listeners, job bodies."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime, time

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.debug import DebugExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from connectors.memory import MemoryWorkbook
from schedules.jobs import (
    JOB_CATCH_UP,
    JOB_ESCALATION,
    JOB_POLL,
    JOB_REMINDERS,
    JOB_REPORT,
    JOB_WEEKLY,
    add_jobs,
    build_scheduler,
    on_job_event,
)
from service.app import App
from service.cases.register import REGISTER_COLUMNS
from service.config import Config, parse_config
from service.errors import LockedError
from tests.service.compliance.reminder_support import LONDON, make_app, make_config


def config_with(**top: object) -> Config:
    data = make_config().model_dump(exclude={"source"}, mode="json")
    data.update(top)
    return parse_config(data)


def never() -> App:
    raise AssertionError("jobs are not run while building the schedule")


def test_jobs_come_from_config_with_stable_ids_and_safe_defaults() -> None:
    config = config_with(
        intake={"address": "safeguarding@example.org", "mailbox": {"backend": "memory"}},
        schedule={"poll_seconds": 20, "escalation_check_minutes": 10, "misfire_grace_seconds": 120},
    )
    scheduler = build_scheduler(never, config)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {
        JOB_POLL,
        JOB_REMINDERS,
        JOB_ESCALATION,
        JOB_WEEKLY,
        JOB_REPORT,
        JOB_CATCH_UP,
    }
    for job in jobs.values():
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time == 120
    assert isinstance(jobs[JOB_POLL].trigger, IntervalTrigger)
    assert jobs[JOB_POLL].trigger.interval.total_seconds() == 20
    assert jobs[JOB_ESCALATION].trigger.interval.total_seconds() == 600
    assert isinstance(jobs[JOB_REMINDERS].trigger, CronTrigger)
    assert isinstance(scheduler._executors["default"], DebugExecutor)
    assert isinstance(scheduler._jobstores["default"], MemoryJobStore)


def test_optional_jobs_follow_the_config() -> None:
    data = make_config().model_dump(exclude={"source"}, mode="json")
    del data["compliance"]
    scheduler = build_scheduler(never, parse_config(data))
    assert {job.id for job in scheduler.get_jobs()} == {
        JOB_ESCALATION,
        JOB_WEEKLY,
        JOB_REPORT,
        JOB_CATCH_UP,
    }


def test_adding_the_jobs_again_replaces_them() -> None:
    config = make_config()
    scheduler = BackgroundScheduler(jobstores={"default": MemoryJobStore()}, timezone=LONDON)
    scheduler.start(paused=True)  # jobs go straight into the store, as after a restart
    try:
        first = add_jobs(scheduler, never, config)
        second = add_jobs(scheduler, never, config)
        assert first == second
        assert sorted(job.id for job in scheduler.get_jobs()) == sorted(first)
    finally:
        scheduler.shutdown(wait=False)


@pytest.mark.parametrize(
    ("after", "fires_utc"),
    [
        (datetime(2026, 3, 27, 9, 0, tzinfo=UTC), datetime(2026, 3, 28, 8, 0, tzinfo=UTC)),  # GMT
        (datetime(2026, 3, 28, 9, 0, tzinfo=UTC), datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),  # BST
        (datetime(2026, 10, 24, 9, 0, tzinfo=UTC), datetime(2026, 10, 25, 8, 0, tzinfo=UTC)),
    ],
)
def test_daily_reminders_fire_at_send_time_london_across_the_clock_change(
    after: datetime, fires_utc: datetime
) -> None:
    scheduler = build_scheduler(never, make_config(send_time="08:00"))
    trigger = scheduler.get_job(JOB_REMINDERS).trigger
    assert trigger.get_next_fire_time(None, after) == fires_utc


def test_weekly_digest_fires_on_the_digest_day() -> None:
    config = config_with(schedule={"digest_day": "fri", "digest_time": "16:30"})
    trigger = build_scheduler(never, config).get_job(JOB_WEEKLY).trigger
    fire = trigger.get_next_fire_time(None, datetime(2026, 11, 23, 12, tzinfo=UTC))
    assert fire.astimezone(LONDON).replace(tzinfo=None) == datetime(2026, 11, 27, 16, 30)


def test_job_bodies_run_the_service_functions() -> None:
    register = MemoryWorkbook(tz=LONDON, name="register.xlsx")
    register.add_table("Concerns", [c.header for c in REGISTER_COLUMNS])
    app, clock, sender, _ = make_app(today=date(2026, 11, 25), register=register)
    clock.set_local(date(2026, 11, 25), time(8, 0))
    scheduler = build_scheduler(lambda: app, app.config)
    scheduler.get_job(JOB_REMINDERS).func(*scheduler.get_job(JOB_REMINDERS).args)
    assert len(sender.sent) == 8
    catch_up = scheduler.get_job(JOB_CATCH_UP)
    catch_up.func(*catch_up.args)  # reminders already done today; the weekly digest is due
    assert [m.to for m in sender.sent[8:]] == [("dsp@example.org",)]
    catch_up.func(*catch_up.args)
    assert len(sender.sent) == 9


def test_listener_logs_job_id_and_error_class_without_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="prevent_service.schedules")
    when = datetime(2026, 11, 25, 8, tzinfo=UTC)
    on_job_event(
        JobExecutionEvent(
            EVENT_JOB_ERROR, JOB_POLL, "default", when, exception=KeyError("Learner Zed Example")
        )
    )
    on_job_event(
        JobExecutionEvent(
            EVENT_JOB_ERROR, JOB_POLL, "default", when, exception=LockedError("register locked")
        )
    )
    on_job_event(JobExecutionEvent(EVENT_JOB_MISSED, JOB_REMINDERS, "default", when))
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "job intake-poll failed with KeyError"
    assert messages[1] == "job intake-poll failed with LockedError: register locked"
    assert messages[2].startswith("job reminders-daily missed its run")
    assert all("Zed" not in m for m in messages)


def test_a_failing_job_does_not_stop_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="prevent_service.schedules")
    calls = threading.Event()

    def failing_factory() -> App:
        calls.set()
        raise RuntimeError("Learner Zed Example")

    scheduler = build_scheduler(failing_factory, make_config())
    worker = threading.Thread(target=scheduler.start, daemon=True)
    worker.start()
    assert calls.wait(10), "the start-up jobs never ran"
    scheduler.shutdown(wait=False)
    worker.join(10)
    assert not worker.is_alive()
    failures = [r.getMessage() for r in caplog.records if "failed with" in r.getMessage()]
    assert failures and all(m.endswith("failed with RuntimeError") for m in failures)


def test_a_job_that_keeps_failing_tells_the_admin_once_a_day_and_shows_in_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.admin.status import status_report
    from service.errors import TransientError

    register = MemoryWorkbook(tz=LONDON, name="register.xlsx")
    register.add_table("Concerns", [c.header for c in REGISTER_COLUMNS])
    app, clock, sender, _ = make_app(today=date(2026, 11, 25), register=register)
    clock.set_local(date(2026, 11, 25), time(10, 0))
    real_read = register.read_table

    def unreachable(table: str) -> object:
        raise TransientError("the register could not be reached (HTTP 503); will retry")

    monkeypatch.setattr(register, "read_table", unreachable)
    escalation = build_scheduler(lambda: app, app.config).get_job(JOB_ESCALATION)

    def run_once() -> None:
        with pytest.raises(TransientError):
            escalation.func(*escalation.args)

    def notices() -> list[str]:
        return [m.subject for m in sender.sent if "keeps failing" in m.subject]

    run_once()
    run_once()
    assert notices() == []  # a blip is not worth an e-mail
    run_once()
    assert notices() == ["[Prevent service] The scheduled job 'escalation' keeps failing"]
    assert sender.sent[-1].to == (app.config.people.admin_email,)
    assert "HTTP 503" in sender.sent[-1].text
    run_once()
    assert len(notices()) == 1  # at most one a day
    healthy, lines = status_report(app)
    assert not healthy
    assert any("job escalation has failed 4 time(s) in a row" in line for line in lines)

    monkeypatch.setattr(register, "read_table", real_read)
    escalation.func(*escalation.args)
    healthy_lines = status_report(app)[1]
    assert not any("job escalation" in line for line in healthy_lines)
    clock.set_local(date(2026, 11, 26), time(10, 0))
    monkeypatch.setattr(register, "read_table", unreachable)
    for _ in range(2):
        run_once()
    assert len(notices()) == 1  # the count started again after the good run


def test_start_up_runs_the_first_intake_poll_before_the_catch_up() -> None:
    config = config_with(
        intake={"address": "safeguarding@example.org", "mailbox": {"backend": "memory"}}
    )
    scheduler = build_scheduler(never, config)
    order: list[str] = []
    three = threading.Event()

    def recorder(job_id: str):  # type: ignore[no-untyped-def]
        def body(_app: object) -> None:
            order.append(job_id)
            if len(order) == 3:
                three.set()

        return body

    for job_id in (JOB_POLL, JOB_ESCALATION, JOB_CATCH_UP):
        scheduler.modify_job(job_id, args=(job_id, lambda: None, recorder(job_id)))
    worker = threading.Thread(target=scheduler.start, daemon=True)
    worker.start()
    assert three.wait(10), f"the start-up jobs did not all run: {order}"
    scheduler.shutdown(wait=False)
    worker.join(10)
    # The catch-up's weekly digest must see what the first poll recorded.
    assert order == [JOB_POLL, JOB_ESCALATION, JOB_CATCH_UP]


def test_apscheduler_chatter_is_quiet_unless_debugging(caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger("apscheduler.scheduler").setLevel(logging.NOTSET)
    caplog.set_level(logging.INFO)
    build_scheduler(never, make_config())
    assert not [r for r in caplog.records if r.name.startswith("apscheduler")]
    assert logging.getLogger("apscheduler.scheduler").getEffectiveLevel() == logging.WARNING

    logging.getLogger("apscheduler.scheduler").setLevel(logging.NOTSET)
    caplog.set_level(logging.DEBUG)  # --debug: everything shows
    caplog.clear()
    build_scheduler(never, make_config())
    assert any("Adding job tentatively" in r.getMessage() for r in caplog.records)
    logging.getLogger("apscheduler.scheduler").setLevel(logging.WARNING)
