"""`prevent-service case`: events at the same time read in the order they happened."""

from __future__ import annotations

import io

from connectors.memory import MemoryWorkbook
from service.app import App
from service.cases import casefile, chronology
from service.intake import pipeline
from tests.conftest import Clock
from tests.service.intake.test_pipeline import deliver, mail


def test_same_time_events_list_reported_first_then_the_follow_up(
    memory_app: App, clock: Clock
) -> None:
    deliver(memory_app, mail(message_id="<first@example.org>"))
    pipeline.poll(memory_app)
    deliver(
        memory_app,
        mail("More.", subject="RE: PRV-2026-0001", message_id="<more@example.org>"),
    )
    pipeline.poll(memory_app)  # the same second: the clock has not moved
    register = memory_app.workbook("register")
    assert isinstance(register, MemoryWorkbook)
    table = register.read_table(chronology.TABLE)
    # The DSP sorted the sheet (by Event, say): the rows' order is no longer the story's.
    rows = sorted(table.rows, key=lambda r: str(r[chronology.EVENT]), reverse=True)
    assert len({r[chronology.WHEN] for r in rows}) == 1 and len(rows) == 6
    headers = list(table.headers)
    shuffled = MemoryWorkbook()
    shuffled.add_table(chronology.TABLE, headers, [[r.get(h) for h in headers] for r in rows])
    concerns = register.read_table(memory_app.config.register.table)
    shuffled.add_table(
        memory_app.config.register.table,
        list(concerns.headers),
        [[r.get(h) for h in concerns.headers] for r in concerns.rows],
    )
    memory_app._workbooks["register"] = shuffled

    out = io.StringIO()
    assert casefile.case_command(memory_app, "PRV-2026-0001", out) == casefile.EXIT_OK

    listed = [
        line.split("  ", 1)[1].split(" – ")[0]
        for line in out.getvalue().split("Chronology", 1)[1].splitlines()
        if line[:2].isdigit()
    ]
    assert listed == [
        "Reported",
        "Alert sent",
        "Acknowledgement sent",
        "Follow-up received",
        "Alert sent (new information)",
        "Acknowledgement sent",
    ]
