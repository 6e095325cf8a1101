"""Alerts after an outage (issue 9 point 5): an item still owing its alert or acknowledgement
waits a few poll intervals at most, and the first request that works again releases what was
parked behind the outage. The clock is the tests' own; nothing here measures time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.base import OutboundMessage
from service.app import App
from service.errors import TransientError
from service.intake import pipeline
from service.ledger import ItemRow
from tests.conftest import Clock
from tests.service.intake.test_pipeline import alerts, deliver, mail, register_rows

A_FEW_POLLS = 4  # "capped (a few poll intervals)"


class SwitchableSender:
    """A sender that is down (every send a transient error) until ``up`` is set; records
    every attempt, so that a notice that could not go is still seen to have been tried."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.up = False
        self.attempted: list[OutboundMessage] = []

    def send(self, message: OutboundMessage) -> None:
        self.attempted.append(message)
        if not self.up:
            raise TransientError("the mail service is not answering")
        self.inner.send(message)

    @property
    def sent(self) -> list[OutboundMessage]:
        return list(self.inner.sent)

    def close(self) -> None:
        pass


def outage(app: App) -> SwitchableSender:
    sender = SwitchableSender(app.sender())
    app._sender = sender  # type: ignore[assignment]
    return sender


def item(app: App, reference: str) -> ItemRow:
    row = app.ledger.item_by_reference(reference)
    assert row is not None
    return row


def retry_in(app: App, clock: Clock, row: ItemRow) -> float:
    assert row.retry_at is not None
    return (datetime.fromisoformat(row.retry_at) - clock.now).total_seconds()


def test_an_unsent_alert_waits_a_few_poll_intervals_at_most_and_the_admin_is_still_told(
    memory_app: App, clock: Clock
) -> None:
    sender = outage(memory_app)
    poll_seconds = memory_app.config.schedule.poll_seconds
    deliver(memory_app, mail())
    waits = []
    for _ in range(8):  # a long outage: each retry fails again
        pipeline.poll(memory_app)
        row = item(memory_app, "PRV-2026-0001")
        waits.append(retry_in(memory_app, clock, row))
        clock.now = datetime.fromisoformat(row.retry_at or "")

    assert row.attempts == 8 and row.alerted_at is None
    # Back-off grows, then stops at a few poll intervals (it used to reach an hour).
    assert waits == sorted(waits) and waits[0] < waits[-1]
    assert max(waits) <= poll_seconds * A_FEW_POLLS
    # The admin's "keeps failing" notice is still tried at the 5th attempt, once.
    notices = [m for m in sender.attempted if "PRV-2026-0001 keeps failing" in m.subject]
    assert len(notices) == 1

    sender.up = True
    clock.now = datetime.fromisoformat(row.retry_at or "")
    assert pipeline.poll(memory_app).alerts == 1


def test_the_first_send_that_works_releases_alerts_parked_behind_the_outage(
    memory_app: App, clock: Clock
) -> None:
    sender = outage(memory_app)
    deliver(memory_app, mail("First worry.", message_id="<a@example.org>"))
    deliver(memory_app, mail("Second worry.", message_id="<b@example.org>"))
    for _ in range(3):  # a few failed rounds: the next retry is a while off
        pipeline.poll(memory_app)
        clock.now = datetime.fromisoformat(item(memory_app, "PRV-2026-0001").retry_at or "")
    pipeline.poll(memory_app)
    parked = [item(memory_app, r) for r in ("PRV-2026-0001", "PRV-2026-0002")]
    assert all(retry_in(memory_app, clock, row) > 0 for row in parked)
    assert alerts(memory_app) == []

    sender.up = True  # the service recovers; a new concern's alert is the first to go
    deliver(memory_app, mail("Third worry.", message_id="<c@example.org>"))
    pipeline.poll(memory_app)
    assert [m.subject[-13:] for m in alerts(memory_app)] == ["PRV-2026-0003"]
    later = pipeline.poll(memory_app)  # the next cycle: the clock has not moved

    assert later.alerts == 2
    assert sorted(m.subject[-13:] for m in alerts(memory_app)) == [
        "PRV-2026-0001",
        "PRV-2026-0002",
        "PRV-2026-0003",
    ]


def test_a_row_parked_behind_a_register_outage_goes_when_the_register_answers(
    memory_app: App, clock: Clock
) -> None:
    register = memory_app.workbook("register")
    deliver(memory_app, mail("First worry.", message_id="<a@example.org>"))
    for _ in range(4):  # the register fails on every try; the alert went on the first
        register.fail_next = TransientError("the register is not answering")  # type: ignore[attr-defined]
        pipeline.poll(memory_app)
        row = item(memory_app, "PRV-2026-0001")
        clock.now = datetime.fromisoformat(row.retry_at or "")
    register.fail_next = TransientError("the register is not answering")  # type: ignore[attr-defined]
    pipeline.poll(memory_app)
    row = item(memory_app, "PRV-2026-0001")
    assert row.alerted_at and not row.logged_at and retry_in(memory_app, clock, row) > 60

    deliver(memory_app, mail("Second worry.", message_id="<b@example.org>"))
    pipeline.poll(memory_app)  # the register answers: the new row is written…
    assert [r["Reference"] for r in register_rows(memory_app)] == ["PRV-2026-0002"]
    pipeline.poll(memory_app)  # …and the next cycle writes the one parked behind the outage

    assert sorted(r["Reference"] for r in register_rows(memory_app)) == [
        "PRV-2026-0001",
        "PRV-2026-0002",
    ]
