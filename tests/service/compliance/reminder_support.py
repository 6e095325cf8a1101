"""Shared set-up for the reminder and escalation tests: a config, a frozen clock, an App with
in-memory workbooks and sender, and the demo compliance workbook laid out for a given day."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from connectors.base import TableSpec
from connectors.memory import MemorySender, MemoryWorkbook
from service.app import App
from service.compliance.workbook import compliance_table_specs
from service.config import Config, parse_config
from service.ledger import Ledger

LONDON = ZoneInfo("Europe/London")

ROLES: dict[str, list[str]] = {
    "Executive Director": ["ed@example.org"],
    "Operations Director": ["operations.director@example.org"],
    "Training Managers": ["training.manager1@example.org"],
    "WRAP specialists": ["wrap.lead@example.org"],
    "All staff": ["all.staff@example.org"],
    "Plan owner": ["plan.owner@example.org"],
}


def make_config(**compliance: Any) -> Config:
    data: dict[str, Any] = {
        "organisation": {"name": "Example Training Ltd"},
        "people": {
            "dsp": {"name": "Dana Example", "email": "dsp@example.org"},
            "deputy_dsp": {"name": "Devon Example", "email": "deputy@example.org"},
            "admin_email": "admin@example.org",
        },
        "roles": ROLES,
        "intake": {"address": "safeguarding@example.org"},
        "register": {"workbook": {"backend": "memory"}, "escalate_after_hours": 4},
        "sending": {"sender": {"backend": "memory"}},
        "compliance": {"workbook": {"backend": "memory"}, "plan_owner": "Plan owner", **compliance},
    }
    return parse_config(data)


class Clock:
    """A frozen clock the test moves by hand."""

    def __init__(self, when: datetime) -> None:
        self.when = when

    def __call__(self) -> datetime:
        return self.when

    def set_local(self, day: date, at: time = time(8, 0)) -> None:
        self.when = datetime.combine(day, at, tzinfo=LONDON).astimezone(UTC)


def workbook_from_specs(specs: Sequence[TableSpec]) -> MemoryWorkbook:
    wb = MemoryWorkbook(tz=LONDON, name="compliance.xlsx")
    for spec in specs:
        wb.add_table(
            spec.table, [c.header for c in spec.columns], list(spec.rows), sheet=spec.sheet
        )
    return wb


def make_app(
    *,
    today: date,
    workbook: MemoryWorkbook | None = None,
    config: Config | None = None,
    demo: bool = True,
    register: MemoryWorkbook | None = None,
) -> tuple[App, Clock, MemorySender, MemoryWorkbook]:
    clock = Clock(datetime(2000, 1, 1, tzinfo=UTC))
    clock.set_local(today)
    wb = workbook or workbook_from_specs(compliance_table_specs(demo, today))
    sender = MemorySender()
    workbooks = {"compliance": wb}
    if register is not None:
        workbooks["register"] = register
    app = App(
        config or make_config(),
        ledger=Ledger(":memory:"),
        now=clock,
        sender=sender,
        workbooks=workbooks,
    )
    return app, clock, sender, wb


def digests_by_recipient(sender: MemorySender, start: int = 0) -> dict[str, str]:
    """Recipient → text part, for the digests sent since index ``start``."""
    out: dict[str, str] = {}
    for message in sender.sent[start:]:
        assert len(message.to) == 1
        out[message.to[0]] = message.text
    return out
