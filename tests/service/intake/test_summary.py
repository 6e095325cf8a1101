"""`poll`'s one-line summary counts what a person means: concerns logged (register rows),
follow-ups joined to a case, alerts and acknowledgements sent, and Chronology rows written,
each under its own name (follow-ups and chronology rows used to be counted as `rows=`)."""

from __future__ import annotations

import re

from service.app import App
from service.cases import chronology
from service.intake import pipeline
from tests.conftest import Clock
from tests.service.cases.test_followups import REPORTER, first_concern
from tests.service.intake.test_pipeline import deliver, mail

FIELDS = (
    "new",
    "logged",
    "followups",
    "alerts",
    "acks",
    "events",
    "pending",
    "done",
    "ignored",
    "duplicates",
    "quarantined",
)


def counts(summary: str) -> dict[str, int]:
    """The summary's fields, in their order; every field is always there (monitoring parses it)."""
    pairs = re.findall(r"(\w+)=(\d+)", summary)
    assert [name for name, _ in pairs] == list(FIELDS), summary
    return {name: int(value) for name, value in pairs}


def chronology_rows(app: App) -> int:
    return len(app.workbook("register").read_table(chronology.TABLE).rows)


def register_rows(app: App) -> int:
    return len(app.workbook("register").read_table("Concerns").rows)


def test_a_new_concern_is_one_logged_one_alert_one_ack_and_its_events(
    memory_app: App,
) -> None:
    app = memory_app
    deliver(app, mail(message_id="<first@example.org>", sender=REPORTER))
    result = pipeline.poll(app)
    got = counts(result.summary())
    assert got["logged"] == register_rows(app) == 1
    assert got["events"] == chronology_rows(app) > 0  # reported, alert sent, acknowledged
    assert (got["new"], got["followups"], got["alerts"], got["acks"], got["done"]) == (
        1,
        0,
        1,
        1,
        1,
    )
    assert len(result.summary()) <= 120  # one short line


def test_a_follow_up_is_counted_as_a_follow_up_not_a_logged_concern(
    memory_app: App, clock: Clock
) -> None:
    app = memory_app
    _, ack = first_concern(app, clock)
    rows_before, events_before = register_rows(app), chronology_rows(app)
    deliver(
        app,
        mail(
            "He has now started sharing the videos with other learners.",
            subject=f"RE: {ack.subject}",
            message_id="<reply@example.org>",
            sender=REPORTER,
            headers={"In-Reply-To": ack.message_id, "References": ack.message_id},
        ),
    )
    got = counts(pipeline.poll(app).summary())

    assert register_rows(app) == rows_before
    assert got["logged"] == 0 and got["followups"] == 1
    assert (got["alerts"], got["acks"], got["done"]) == (1, 1, 1)
    # The follow-up's own entry, its alert's and its acknowledgement's: all Chronology rows.
    assert got["events"] == chronology_rows(app) - events_before == 3
