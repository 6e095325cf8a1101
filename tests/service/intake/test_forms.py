"""Reading the Forms responses table: answers by register field, whatever backend read it."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from connectors.base import Table
from service.config import DEFAULT_FORM_COLUMNS
from service.intake.forms import new_responses

LONDON = ZoneInfo("Europe/London")
FIXED = ("ID", "Start time", "Completion time", "Email", "Name")


def table(**answers: object) -> Table:
    headers = (*FIXED, *DEFAULT_FORM_COLUMNS.values())
    row: dict[str, object] = dict.fromkeys(headers, "")
    row.update({"ID": 1, "Email": "chris.tutor@example.org", "Name": "Chris Tutor"})
    for field_name, value in answers.items():
        row[DEFAULT_FORM_COLUMNS[field_name]] = value
    return Table(name="Table1", headers=headers, rows=(row,), row_numbers=(2,))


def answers_of(t: Table) -> dict[str, str]:
    [response] = new_responses(t, DEFAULT_FORM_COLUMNS, tz=LONDON, where="forms")
    return response.answers


def test_date_answers_read_the_same_from_every_backend() -> None:
    """A Date question: openpyxl gives a datetime (or a date), Graph's ``values`` the Excel
    serial number. The register must show a date, not 46350."""
    from_openpyxl = answers_of(
        table(occurred_at=datetime(2026, 11, 24, 14, 0), dob_or_age=date(2009, 3, 14))
    )
    from_graph = answers_of(table(occurred_at=46350.583333333336, dob_or_age=39886.0))

    assert from_openpyxl["occurred_at"] == from_graph["occurred_at"] == "24/11/2026 14:00"
    assert from_openpyxl["dob_or_age"] == from_graph["dob_or_age"] == "14/03/2009"


def test_an_age_or_a_number_typed_in_a_text_question_stays_a_number() -> None:
    answers = answers_of(table(dob_or_age=17, learner_ref=46350, occurred_at="last Tuesday"))

    assert answers["dob_or_age"] == "17"
    assert answers["learner_ref"] == "46350"
    assert answers["occurred_at"] == "last Tuesday"


def test_a_question_typed_with_curly_quotes_matches_the_straight_quoted_config() -> None:
    """Forms keeps the question as typed: on a phone or pasted from Word, "person's" comes
    as "person’s". That is the same question, not a missing column."""
    t = table(account="Said it again")
    curly = tuple(h.replace("'", "\u2019") for h in t.headers)
    row = {h.replace("'", "\u2019"): v for h, v in t.rows[0].items()}
    assert curly != t.headers

    answers = answers_of(Table(name="Table1", headers=curly, rows=(row,), row_numbers=(2,)))

    assert answers["account"] == "Said it again"
