"""Escalation: who is copied said once, critical concerns urgent like their first alert, and
escalation counted in working hours when configured."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from connectors.memory import MemoryWorkbook
from service.cases.escalation import check
from service.cases.register import REGISTER_COLUMNS
from service.config import Config, Person
from tests.service.cases.test_escalation import app_at, at
from tests.service.compliance.reminder_support import LONDON, make_config

HEADERS = [c.header for c in REGISTER_COLUMNS]
FRIDAY = datetime(2026, 11, 27, 16, 0)  # 16:00 London on a Friday


def register(reference: str, recorded: datetime, critical: str = "No") -> MemoryWorkbook:
    wb = MemoryWorkbook(tz=LONDON, name="register.xlsx")
    row: dict[str, Any] = dict.fromkeys(HEADERS)
    row.update(
        {
            "Reference": reference,
            "Recorded at": recorded,
            "Status": "New",
            "Critical risk factor": critical,
            "Source key": f"mail:{reference}",
        }
    )
    wb.add_table("Concerns", HEADERS, [list(row.values())], sheet="Register")
    return wb


def with_register(config: Config, **register: Any) -> Config:
    return config.model_copy(update={"register": config.register.model_copy(update=register)})


def test_a_dsp_name_that_says_dsp_is_not_given_it_twice() -> None:
    config = make_config()
    dsp = Person(name="Alex Morgan (DSP)", email="dsp@example.org")
    config = config.model_copy(update={"people": config.people.model_copy(update={"dsp": dsp})})
    app, _clock, sender = app_at(
        register("PRV-2026-0001", FRIDAY), FRIDAY + timedelta(hours=5), config=config
    )
    check(app)
    [message] = sender.sent
    for part in (message.text, message.html):
        assert "Alex Morgan (DSP) is copied." in part
        assert "(DSP) (DSP)" not in part


@pytest.mark.parametrize("source", ["register", "ledger"])
def test_an_escalated_critical_concern_is_urgent_from_the_first_level(source: str) -> None:
    wb = register("PRV-2026-0001", FRIDAY, critical="Yes" if source == "register" else "No")
    app, _clock, sender = app_at(wb, FRIDAY + timedelta(hours=4, minutes=1))
    if source == "ledger":  # the first alert recorded it as critical
        app.ledger.claim_item("mail:x", "mail", None)
        assert app.ledger.assign_reference("mail:x", "PRV", 2026) == "PRV-2026-0001"
        app.ledger.set_critical("mail:x", True)
    assert check(app).escalated == [("PRV-2026-0001", 1)]
    [message] = sender.sent
    assert message.high_importance
    assert message.subject.startswith("[Prevent] URGENT – ")
    assert "flagged critical" in message.text


def test_a_concern_not_critical_is_not_urgent_at_level_one() -> None:
    app, _clock, sender = app_at(register("PRV-2026-0001", FRIDAY), FRIDAY + timedelta(hours=5))
    check(app)
    [message] = sender.sent
    assert not message.high_importance and "URGENT" not in message.subject


def test_working_hours_escalation_waits_over_the_weekend_but_a_critical_one_does_not() -> None:
    config = with_register(make_config(), escalate_in="working", working_hours="09:00-17:00")
    app, clock, sender = app_at(register("PRV-2026-0001", FRIDAY), FRIDAY, config=config)
    # Friday 16:00-17:00 is one working hour; Monday 09:00-12:00 three more.
    for when in (FRIDAY + timedelta(hours=4), datetime(2026, 11, 30, 11, 59)):
        at(clock, when)
        assert check(app).escalated == [], when
    at(clock, datetime(2026, 11, 30, 12, 0))
    assert check(app).escalated == [("PRV-2026-0001", 1)]
    assert "4 working hours" in sender.sent[-1].subject

    critical, _clock2, sender2 = app_at(
        register("PRV-2026-0002", FRIDAY, critical="Suggested – please check"),
        FRIDAY + timedelta(hours=4),
        config=config,
    )
    assert check(critical).escalated == [("PRV-2026-0002", 1)]  # clock hours by default
    assert sender2.sent[-1].high_importance
