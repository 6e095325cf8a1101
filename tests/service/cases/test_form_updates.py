"""A Forms response edited after it was taken: a chronology entry and an alert, once per edit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from connectors.memory import MemoryWorkbook
from service.app import App
from service.cases import chronology
from service.config import Config
from service.intake import pipeline
from service.intake.forms import forms_table_spec
from tests.conftest import Clock, make_memory_app

ACCOUNT = "What happened? Please use the person's own words where you can"


def forms(app: App) -> MemoryWorkbook:
    book = app.workbook("forms")
    assert isinstance(book, MemoryWorkbook)
    return book


def setup_form(app: App) -> None:
    headers = [c.header for c in forms_table_spec().columns] + ["Last modified time"]
    forms(app).add_table("Table1", headers, [])
    forms(app).append_rows(
        "Table1",
        [
            {
                "ID": 1,
                "Completion time": datetime(2026, 11, 24, 9, 0),
                "Last modified time": datetime(2026, 11, 24, 9, 0),  # as Forms writes unedited
                "Email": "jordan.lee@example.org",
                "Name": "Jordan Lee",
                ACCOUNT: "A learner has become withdrawn.",
            }
        ],
    )


def edit_response(app: App, when: datetime, account: str) -> None:
    table = forms(app).tables["Table1"]
    row = table.rows[0]
    row[table.headers.index("Last modified time")] = when
    row[table.headers.index(ACCOUNT)] = account


def updated_alerts(app: App) -> list[object]:
    return [m for m in app.sender().sent if "Form response updated" in m.subject]  # type: ignore[attr-defined]


def test_each_edit_after_it_was_taken_is_told_once(memory_app: App, clock: Clock) -> None:
    setup_form(memory_app)
    pipeline.poll(memory_app)
    pipeline.poll(memory_app)
    assert updated_alerts(memory_app) == []  # unedited: modified time = completion time

    clock.advance(hours=1)
    edit_response(
        memory_app,
        datetime(2026, 11, 24, 10, 15),
        "He is now in contact with extremist recruiters.",
    )
    pipeline.poll(memory_app)
    pipeline.poll(memory_app)

    [alert] = updated_alerts(memory_app)
    assert alert.subject == "[Prevent] URGENT – Form response updated – PRV-2026-0001"  # type: ignore[attr-defined]
    assert alert.high_importance  # type: ignore[attr-defined]
    assert "recruiters" not in alert.text  # type: ignore[attr-defined]  # summary detail
    rows = memory_app.workbook("register").read_table(chronology.TABLE).rows
    [event] = [r for r in rows if r["Event"] == "Form response updated"]
    assert event["Reference"] == "PRV-2026-0001" and event["By"] == "jordan.lee@example.org"
    assert event["When"] == datetime(2026, 11, 24, 10, 15)
    # The register row keeps the answers as first submitted.
    [row] = memory_app.workbook("register").read_table("Concerns").rows
    assert "withdrawn" in row["Account"]

    clock.advance(hours=1)
    edit_response(memory_app, datetime(2026, 11, 24, 11, 0), "Edited again.")
    pipeline.poll(memory_app)
    assert len(updated_alerts(memory_app)) == 2


def test_an_edit_naming_immediate_danger_says_call_999_and_where_the_answers_are(
    make_config: Callable[..., Config], clock: Clock, tmp_path: Path
) -> None:
    """The edited answers are in the Forms responses workbook: the alert says where it is, and
    an edit that now names immediate danger opens with the 999 instruction, as a new alert does."""
    forms_book = {"workbook": {"backend": "xlsx", "path": "forms.xlsx"}, "table": "Table1"}
    config = make_config(intake={"forms": forms_book})
    app = make_memory_app(config, clock, forms_table=False)
    setup_form(app)
    pipeline.poll(app)
    clock.advance(hours=1)
    edit_response(app, datetime(2026, 11, 24, 10, 15), "He has a knife and will stab Jo today.")
    pipeline.poll(app)

    [alert] = updated_alerts(app)
    where = str(tmp_path / "forms.xlsx")
    for body in (alert.text, alert.html):  # type: ignore[attr-defined]
        assert "call 999 first" in body
        assert f"Forms responses workbook ({where}), row 2" in body
    assert ".\n\nThe register row keeps" in alert.text  # type: ignore[attr-defined]
    app.close()
