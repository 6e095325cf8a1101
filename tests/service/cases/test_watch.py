"""The DSP's columns: each change the escalation check sees goes in the chronology once."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from connectors.memory import MemoryWorkbook
from service.app import App
from service.cases import chronology, escalation
from service.intake import pipeline
from tests.conftest import Clock
from tests.service.intake.test_pipeline import deliver, mail


def logged(app: App, clock: Clock, n: int = 1) -> None:
    for i in range(n):
        deliver(app, mail(message_id=f"<m{i}@example.org>"))
    pipeline.poll(app)
    clock.advance(minutes=5)


def edit(app: App, reference: str, **values: Any) -> None:
    """As the DSP types in the register (header names with spaces as _)."""
    register = app.workbook("register")
    assert isinstance(register, MemoryWorkbook)
    table = register.tables["Concerns"]
    headers = {
        h.replace(" ", "_").replace("(", "").replace(")", "").lower(): i
        for i, h in enumerate(table.headers)
    }
    for row in table.rows:
        if row[table.headers.index("Reference")] == reference:
            for name, value in values.items():
                row[headers[name.lower()]] = value


def dsp_events(app: App, reference: str = "PRV-2026-0001") -> list[tuple[str, str]]:
    chronology.ensure(app.workbook("register"))
    rows = app.workbook("register").read_table(chronology.TABLE).rows
    return [
        (r["Event"], r["Note"])
        for r in rows
        if r["Reference"] == reference and r["By"] == "DSP (seen in the register)"
    ]


def test_a_status_change_is_recorded_once_at_the_check_that_saw_it(
    memory_app: App, clock: Clock
) -> None:
    logged(memory_app, clock)
    escalation.check(memory_app)
    edit(memory_app, "PRV-2026-0001", Status="Acknowledged")
    clock.advance(minutes=15)
    seen_at = clock.now

    escalation.check(memory_app)
    escalation.check(memory_app)

    assert dsp_events(memory_app) == [("Status changed", "New → Acknowledged")]
    [row] = [
        r
        for r in memory_app.workbook("register").read_table(chronology.TABLE).rows
        if r["Event"] == "Status changed"
    ]
    assert row["When"] == seen_at.replace(tzinfo=None)  # London is UTC in November
    acks = escalation.time_to_acknowledge(memory_app)
    assert acks["PRV-2026-0001"] == seen_at - datetime.fromisoformat(
        memory_app.ledger.item_by_reference("PRV-2026-0001").first_seen  # type: ignore[union-attr]
    )


def test_a_change_and_back_between_two_checks_is_not_seen(memory_app: App, clock: Clock) -> None:
    logged(memory_app, clock)
    escalation.check(memory_app)
    edit(memory_app, "PRV-2026-0001", Status="In progress")
    edit(memory_app, "PRV-2026-0001", Status="New")  # undone before the next check

    escalation.check(memory_app)
    assert dsp_events(memory_app) == []

    edit(memory_app, "PRV-2026-0001", Status="Acknowledged")
    edit(memory_app, "PRV-2026-0001", Status="In progress")  # two changes: seen as one
    escalation.check(memory_app)
    assert dsp_events(memory_app) == [("Status changed", "New → In progress")]


def test_risk_referrals_dates_and_closure_are_each_recorded(memory_app: App, clock: Clock) -> None:
    logged(memory_app, clock)
    escalation.check(memory_app)
    edit(
        memory_app,
        "PRV-2026-0001",
        Status="Referred",
        Risk_level="High",
        Channel="Referred",
        Channel_date=date(2026, 11, 25),
    )
    escalation.check(memory_app)
    edit(memory_app, "PRV-2026-0001", Status="Closed", Closed_date=date(2026, 12, 1))
    escalation.check(memory_app)

    assert dsp_events(memory_app) == [
        ("Status changed", "New → Referred"),
        ("Risk level changed", "(blank) → High"),
        ("Referral decision", "Channel: (blank) → Referred"),
        ("Referral date filled", "Channel date: 25/11/2026"),
        ("Status changed", "Referred → Closed"),
        ("Closed", "Closed date 01/12/2026"),
    ]
    keys = [r["Service key"] for r in memory_app.workbook("register").read_table("Chronology").rows]
    assert len(keys) == len(set(keys))
    decided = memory_app.ledger.db.execute(
        "SELECT decided_at FROM concern_watch WHERE reference = 'PRV-2026-0001'"
    ).fetchone()[0]
    assert decided is not None


def test_a_change_before_the_first_check_is_recorded_for_a_concern_it_logged(
    memory_app: App, clock: Clock
) -> None:
    logged(memory_app, clock)
    edit(memory_app, "PRV-2026-0001", Status="Acknowledged")

    escalation.check(memory_app)

    assert dsp_events(memory_app) == [("Status changed", "New → Acknowledged")]


def test_rows_from_before_the_watch_start_silently(memory_app: App, clock: Clock) -> None:
    register = memory_app.workbook("register")
    assert isinstance(register, MemoryWorkbook)
    table = register.tables["Concerns"]
    old = [None] * len(table.headers)
    old[table.headers.index("Reference")] = "PRV-2025-0042"
    old[table.headers.index("Recorded at")] = datetime(2025, 10, 1, 9, 0)
    old[table.headers.index("Status")] = "Closed"
    old[table.headers.index("Closed date")] = datetime(2025, 11, 1)
    table.rows.append(old)

    escalation.check(memory_app)
    escalation.check(memory_app)

    assert dsp_events(memory_app, "PRV-2025-0042") == []
    edit(memory_app, "PRV-2025-0042", Status="Monitoring")
    escalation.check(memory_app)
    assert dsp_events(memory_app, "PRV-2025-0042") == [("Status changed", "Closed → Monitoring")]


def test_the_dsps_own_rows_are_left_alone(memory_app: App, clock: Clock) -> None:
    logged(memory_app, clock)
    own = {"Reference": "PRV-2026-0001", "Event": "Channel panel", "By": "DSP", "Note": "Agreed"}
    memory_app.workbook("register").append_rows(chronology.TABLE, [own])
    edit(memory_app, "PRV-2026-0001", Status="Acknowledged")

    escalation.check(memory_app)

    rows = memory_app.workbook("register").read_table(chronology.TABLE).rows
    mine = [r for r in rows if r["Event"] == "Channel panel"]
    assert mine == [{**own, "When": None, "Service key": None}]
