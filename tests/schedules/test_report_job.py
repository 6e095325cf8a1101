"""The yearly board report job: on ``report.send_on`` (next working day) at the send time,
once per academic year, caught up after downtime, never twice — also across a restart."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest

from connectors.base import OutboundMessage, Table
from connectors.memory import MemorySender, MemoryWorkbook
from schedules.jobs import JOB_CATCH_UP, JOB_REPORT, build_scheduler
from service.app import App
from service.cases.register import REGISTER_COLUMNS
from service.compliance.workbook import compliance_table_specs
from service.config import Config, parse_config
from service.errors import LockedError, PreventServiceError, TransientError
from service.ledger import Ledger
from tests.service.compliance.reminder_support import (
    LONDON,
    Clock,
    make_config,
    workbook_from_specs,
)


def config(tmp_path: Path, **report: Any) -> Config:
    data = make_config().model_dump(exclude={"source"}, mode="json")
    data["state"] = {"path": str(tmp_path / "state")}
    if report:
        data["report"] = report
    return parse_config(data)


def app_on(cfg: Config, clock: Clock, ledger: Ledger) -> tuple[App, MemorySender]:
    register = MemoryWorkbook(tz=LONDON, name="register.xlsx")
    row = {"Reference": "PRV-2027-0001", "Recorded at": datetime(2027, 3, 2, 10), "Source": "Form"}
    register.add_table(
        "Concerns",
        [c.header for c in REGISTER_COLUMNS],
        [[row.get(c.header) for c in REGISTER_COLUMNS]],
    )
    compliance = workbook_from_specs(compliance_table_specs(False, date(2027, 1, 4)))
    sender = MemorySender()
    app = App(
        cfg,
        ledger=ledger,
        now=clock,
        sender=sender,
        workbooks={"register": register, "compliance": compliance},
    )
    return app, sender


def reports(sender: MemorySender) -> list[OutboundMessage]:
    """The report e-mails (the catch-up job also sends the DSP's weekly digest)."""
    return [m for m in sender.sent if m.subject.startswith("Prevent report")]


def run(app: App, job_id: str = JOB_REPORT) -> Any:
    job = build_scheduler(lambda: app, app.config).get_job(job_id)
    return job.func(*job.args)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=LONDON).astimezone(UTC)


def test_the_job_runs_daily_at_the_send_time_london(tmp_path: Path) -> None:
    trigger = build_scheduler(lambda: None, config(tmp_path)).get_job(JOB_REPORT).trigger  # type: ignore[arg-type,return-value]
    fire = trigger.get_next_fire_time(None, datetime(2027, 8, 31, 12, tzinfo=UTC))
    assert fire == at(date(2027, 9, 1), 8)  # BST: 07:00 UTC


def test_fires_once_on_send_on_for_the_year_just_ended(tmp_path: Path) -> None:
    clock = Clock(at(date(2027, 8, 31), 20))
    app, sender = app_on(config(tmp_path), clock, Ledger(":memory:"))
    assert run(app) is False
    clock.when = at(date(2027, 9, 1), 7, 59)  # a Wednesday, before the send time
    assert run(app) is False
    clock.when = at(date(2027, 9, 1), 8)
    assert run(app) is True
    assert len(sender.sent) == 1
    message = reports(sender)[0]
    assert message.subject.startswith("Prevent report 01 Aug 2026 to 31 Jul 2027: 1 concern(s)")
    assert message.to == ("ed@example.org", "dsp@example.org")
    written = tmp_path / "state" / "reports" / "prevent-report-2026-08-01-to-2027-07-31.xlsx"
    assert written.is_file()
    for later in (at(date(2027, 9, 1), 8, 15), at(date(2027, 9, 2), 8), at(date(2027, 9, 20), 8)):
        clock.when = later
        assert run(app) is False
        assert run(app, JOB_CATCH_UP) is None
    assert len(reports(sender)) == 1


def test_catches_up_after_downtime_and_not_again_after_a_restart(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    clock = Clock(at(date(2027, 9, 6), 11))  # the worker was down on 1 September
    first, sent_first = app_on(cfg, clock, ledger)
    run(first, JOB_CATCH_UP)  # the catch-up job, as at start
    assert [m.subject[:44] for m in reports(sent_first)] == [
        "Prevent report 01 Aug 2026 to 31 Jul 2027: 1"
    ]
    clock.when = at(date(2027, 9, 7), 8)  # restarted: a new App and sender, the same ledger
    second, sent_second = app_on(cfg, clock, ledger)
    assert run(second) is False
    run(second, JOB_CATCH_UP)
    assert reports(sent_second) == []
    ledger.close()


def test_moves_to_the_next_working_day_and_retries_a_failed_send(tmp_path: Path) -> None:
    # 28 August 2027 is a Saturday and 30 August the summer bank holiday: Tuesday 31 August.
    clock = Clock(at(date(2027, 8, 28), 9))
    app, sender = app_on(config(tmp_path, send_on="08-28"), clock, Ledger(":memory:"))
    assert run(app) is False
    clock.when = at(date(2027, 8, 30), 9)
    assert run(app) is False
    clock.when = at(date(2027, 8, 31), 8)
    sender.fail_next = TransientError("mail server down")
    try:
        run(app)
    except TransientError:
        pass
    else:
        raise AssertionError("the failure should reach the scheduler's listener")
    assert reports(sender) == []
    clock.when = at(date(2027, 8, 31), 8, 15)
    assert run(app, JOB_CATCH_UP) is None
    assert [m.subject[:41] for m in reports(sender)] == [
        "Prevent report 01 Aug 2026 to 31 Jul 2027"
    ]


def test_a_worker_first_started_long_after_send_on_sends_nothing(tmp_path: Path) -> None:
    clock = Clock(at(date(2027, 11, 1), 9))  # more than 30 days after 1 September
    app, sender = app_on(config(tmp_path), clock, Ledger(":memory:"))
    assert run(app) is False
    run(app, JOB_CATCH_UP)
    assert reports(sender) == []


def test_a_manual_send_for_the_same_year_counts_as_the_yearly_report(tmp_path: Path) -> None:
    from service.reporting.report import Period, gather, send

    clock = Clock(at(date(2027, 8, 2), 9))
    app, sender = app_on(config(tmp_path), clock, Ledger(":memory:"))
    assert send(app, gather(app, Period(date(2026, 8, 1), date(2027, 7, 31)))) == 2
    clock.when = at(date(2027, 9, 1), 8)
    assert run(app) is False
    assert len(reports(sender)) == 1
    assert not (tmp_path / "state" / "reports").exists()  # nothing rebuilt either


class UnreadableWorkbook(MemoryWorkbook):
    """Reads fail while ``failing`` is set (a workbook locked or Graph down at 08:00)."""

    def __init__(self, inner: MemoryWorkbook) -> None:
        super().__init__(tz=LONDON, name=inner.name)
        self.tables = inner.tables
        self.failing: PreventServiceError | None = LockedError("compliance.xlsx is locked")

    def read_table(self, table: str) -> Table:
        if self.failing is not None:
            raise self.failing
        return super().read_table(table)


def test_an_unreadable_compliance_workbook_holds_the_report_until_it_reads(
    tmp_path: Path,
) -> None:
    clock = Clock(at(date(2027, 9, 1), 8))
    app, sender = app_on(config(tmp_path), clock, Ledger(":memory:"))
    compliance = app.workbook("compliance")
    assert isinstance(compliance, MemoryWorkbook)
    flaky = UnreadableWorkbook(compliance)
    app._workbooks["compliance"] = flaky
    with pytest.raises(LockedError):
        run(app)
    assert reports(sender) == []  # not sent without the training and action plan figures
    clock.when = at(date(2027, 9, 1), 8, 15)
    flaky.failing = None
    run(app, JOB_CATCH_UP)
    (message,) = reports(sender)
    assert "training" in message.subject and "% current" in message.subject
    clock.when = at(date(2027, 9, 2), 8)
    assert run(app) is False


def test_a_crash_between_sending_and_recording_resends_with_the_same_message_id(
    tmp_path: Path,
) -> None:
    # Sent, then the worker died before the ledger said so: the next run sends again with the
    # same Message-ID, which the outbox and Graph (Sent Items) senders skip; SMTP cannot.
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    clock = Clock(at(date(2027, 9, 1), 8))
    app, sender = app_on(config(tmp_path), clock, ledger)
    attempts: list[str] = []
    original = sender.send

    def send(message: OutboundMessage) -> None:
        attempts.append(message.message_id)
        original(message)

    sender.send = send  # type: ignore[method-assign]
    sender.fail_after_next = TransientError("connection reset after the message was accepted")
    with pytest.raises(TransientError):
        run(app)
    clock.when = at(date(2027, 9, 1), 8, 15)
    run(app, JOB_CATCH_UP)
    report_ids = [i for i in attempts if i.startswith("<board-report.")]
    assert len(report_ids) == 2 and len(set(report_ids)) == 1
    assert len(reports(sender)) == 1
    clock.when = at(date(2027, 9, 2), 8)
    assert run(app) is False
    assert len([i for i in attempts if i.startswith("<board-report.")]) == 2
    ledger.close()
