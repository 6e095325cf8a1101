"""The board report's case-record figures: follow-ups are not concerns; time to first
decision and referrals made come from what the escalation check saw."""

from __future__ import annotations

from datetime import date, datetime

from connectors.memory import MemoryWorkbook
from service.app import App
from service.cases import escalation
from service.intake import pipeline
from service.reporting.report import Period, gather
from tests.conftest import Clock
from tests.service.cases.test_watch import edit
from tests.service.intake.test_pipeline import deliver, mail


def test_follow_ups_decisions_and_referrals_in_the_report(memory_app: App, clock: Clock) -> None:
    deliver(memory_app, mail(message_id="<a@example.org>"))
    deliver(memory_app, mail(message_id="<b@example.org>", sender="Kim <kim@example.org>"))
    pipeline.poll(memory_app)
    # The reporter adds to PRV-2026-0001 (quoting it): a follow-up, not a concern.
    deliver(memory_app, mail("More.", subject="RE: PRV-2026-0001", message_id="<c@example.org>"))
    pipeline.poll(memory_app)
    # A row the previous version made for a follow-up.
    register = memory_app.workbook("register")
    assert isinstance(register, MemoryWorkbook)
    register.append_rows(
        "Concerns",
        [
            {
                "Reference": "PRV-2026-0003",
                "Recorded at": datetime(2026, 11, 20, 10, 0),
                "Summary": "Follow-up to PRV-2026-0001: RE: Your safeguarding concern",
            }
        ],
    )
    escalation.check(memory_app)
    clock.advance(hours=3)
    edit(memory_app, "PRV-2026-0001", Status="Referred", Channel="Referred")
    escalation.check(memory_app)

    figures = gather(memory_app, Period(date(2026, 11, 1), date(2026, 11, 30))).concerns

    assert figures.total == 2
    assert dict(figures.by_month)[date(2026, 11, 1)] == 2
    assert figures.follow_ups == 2  # the new kind and the old kind
    assert figures.decided == 1
    assert figures.decision_median_hours == 3.0  # recorded 09:30, decision seen at 12:30
    assert dict(figures.referrals) == {
        "Prevent referral (NRF)": 0,
        "Channel": 1,
        "Police": 0,
        "Children's social care": 0,
    }
    lines = "\n".join(
        gather(memory_app, Period(date(2026, 11, 1), date(2026, 11, 30))).summary_lines()
    )
    assert "follow-ups added to cases: 2" in lines
    assert "referrals made: Prevent referral (NRF) 0, Channel 1" in lines
