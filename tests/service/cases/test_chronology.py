"""The case chronology: the service's events written once each, people's rows untouched."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl

from connectors.memory import MemoryMailbox, MemorySender, MemoryWorkbook
from connectors.xlsx import XlsxWorkbook
from service.admin.status import status_report
from service.app import App
from service.cases import chronology, escalation
from service.config import Config
from service.errors import TransientError
from service.intake import pipeline
from tests.conftest import Clock
from tests.service.intake.test_pipeline import deliver, mail

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def events(app: App) -> list[dict[str, Any]]:
    return list(app.workbook("register").read_table(chronology.TABLE).rows)


def kinds(app: App, reference: str = "PRV-2026-0001") -> list[str]:
    return [r["Event"] for r in events(app) if r["Reference"] == reference]


def test_intake_writes_reported_alert_and_acknowledgement_once(memory_app: App) -> None:
    deliver(memory_app, mail())

    pipeline.poll(memory_app)
    pipeline.poll(memory_app)  # a re-poll adds nothing

    rows = events(memory_app)
    assert [r["Event"] for r in rows] == ["Reported", "Alert sent", "Acknowledgement sent"]
    reported, alert, ack = rows
    assert reported["By"] == "jordan.lee@example.org"
    assert "DSP (dsp@example.org)" in alert["Note"]
    assert "deputy DSP (deputy.dsp@example.org)" in alert["Note"]
    assert ack["Note"] == "To the reporter"
    assert len({r["Service key"] for r in rows}) == 3
    # A real date-time in the organisation's time zone (London = UTC in November).
    assert reported["When"].hour == 9 and reported["When"].tzinfo is None
    # Written: the ledger keeps keys and times, not the reporter's address.
    db = memory_app.ledger.db
    assert db.execute("SELECT COUNT(*) FROM case_events WHERE by_whom != ''").fetchone()[0] == 0


def test_the_table_is_added_to_a_register_without_one(memory_app: App) -> None:
    register = memory_app.workbook("register")
    assert isinstance(register, MemoryWorkbook) and chronology.TABLE not in register.tables

    deliver(memory_app, mail())
    pipeline.poll(memory_app)

    assert chronology.TABLE in register.tables
    assert register.read_table("Concerns").headers[0] == "Reference"


def test_a_locked_register_keeps_events_pending_then_writes_them(memory_app: App) -> None:
    register = memory_app.workbook("register")
    assert isinstance(register, MemoryWorkbook)
    register.locked = True
    deliver(memory_app, mail())

    result = pipeline.poll(memory_app)

    assert result.alerts == 1 and chronology.pending_count(memory_app) == 3
    assert any("chronology" in p for p in result.problems)
    _, lines = status_report(memory_app)
    assert "chronology: 3 event(s) waiting to be written" in lines
    register.locked = False
    memory_app._now.advance(minutes=10)  # type: ignore[attr-defined]
    pipeline.poll(memory_app)
    assert kinds(memory_app) == ["Reported", "Alert sent", "Acknowledgement sent"]
    assert chronology.pending_count(memory_app) == 0


def test_an_unclear_append_is_read_back_not_repeated(memory_app: App) -> None:
    chronology.record(memory_app, "PRV-2026-0001", "x", "Test event")
    register = memory_app.workbook("register")
    assert isinstance(register, MemoryWorkbook)
    chronology.ensure(register)
    # The append went in, but the answer was lost (a 504 after the write).
    register.fail_after_next = TransientError("504 Gateway Timeout")

    assert chronology.flush(memory_app) is not None
    assert chronology.flush(memory_app) is None

    assert kinds(memory_app) == ["Test event"]


def test_people_rows_are_never_touched(memory_app: App) -> None:
    register = memory_app.workbook("register")
    chronology.ensure(register)
    own = {
        "Reference": "PRV-2026-0001",
        "When": None,
        "Event": "Call to the police Prevent team",
        "By": "DSP",
        "Note": "Advised to refer; NRF sent",
    }
    register.append_rows(chronology.TABLE, [own])
    deliver(memory_app, mail())

    pipeline.poll(memory_app)

    rows = events(memory_app)
    assert rows[0] == {**own, "Service key": None}
    assert len(rows) == 4


def test_an_escalation_is_in_the_chronology_once(memory_app: App, clock: Clock) -> None:
    deliver(memory_app, mail())
    pipeline.poll(memory_app)
    clock.advance(hours=memory_app.config.register.escalate_after_hours * 1.5)

    escalation.check(memory_app)
    escalation.check(memory_app)

    rows = [r for r in events(memory_app) if r["Event"].startswith("Escalated")]
    assert [r["Event"] for r in rows] == ["Escalated (level 1)"]
    assert "deputy DSP (deputy.dsp@example.org)" in rows[0]["Note"]
    assert "copied to DSP (dsp@example.org)" in rows[0]["Note"]


def test_a_register_from_the_previous_version_is_upgraded_in_place(
    tmp_path: Path, make_config: Callable[..., Config], clock: Clock
) -> None:
    # Made by the version before the case record (tests/fixtures/make_register_v1.py), then
    # edited as a DSP would: a status, a fill, an extra column of theirs, a rule.
    path = tmp_path / "register.xlsx"
    shutil.copy(FIXTURES / "register-v1.xlsx", path)
    before = openpyxl.load_workbook(path)
    old = before["Register"]
    old_headers = [c.name for c in old.tables["Concerns"].tableColumns]
    old_values = [[c.value for c in row] for row in old.iter_rows()]
    register = XlsxWorkbook(path, tz=make_config().organisation.tz)
    app = App(
        make_config(),
        now=clock,
        mailbox=MemoryMailbox(),
        sender=MemorySender(),
        workbooks={"register": register},
    )
    deliver(app, mail())

    pipeline.poll(app)

    after = openpyxl.load_workbook(path)
    assert after.sheetnames == ["Register", "Chronology"]
    ws = after["Register"]
    assert [c.name for c in ws.tables["Concerns"].tableColumns] == old_headers
    assert old_headers[-1] == "DSP notes"
    # Every cell that was there is as it was; the new concern is one row below them.
    values = [[c.value for c in row] for row in ws.iter_rows()]
    assert values[: len(old_values)] == old_values
    assert values[len(old_values)][0] == "PRV-2026-0006"
    status = old_headers.index("Status") + 1
    assert ws.cell(2, status).fill.start_color.rgb.endswith("C6EFCE")
    assert ws.column_dimensions[openpyxl.utils.get_column_letter(len(old_headers))].width == 33
    assert len(ws.conditional_formatting) == 1
    new = after["Chronology"]
    table = new.tables["Chronology"]
    assert [c.name for c in table.tableColumns] == [c.header for c in chronology.COLUMNS]
    assert new.column_dimensions["F"].hidden
    # Its When cells show as the register's dates do (dd/mm/yyyy hh:mm), not ISO.
    assert {new.cell(r, 2).number_format for r in range(2, 5)} == {"dd/mm/yyyy hh:mm"}
    assert [r["Event"] for r in events(app)] == ["Reported", "Alert sent", "Acknowledgement sent"]
    assert all(r["Reference"] == "PRV-2026-0006" for r in events(app))
    app.close()
