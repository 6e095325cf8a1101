"""A Forms response edited after the service took it: a chronology entry and an alert, once
per edit.

Forms lets respondents edit a response when the form allows it, and then writes a later
"Last modified time" on its row. The register row keeps the answers as first submitted (the
service never rewrites a row); the DSP is told that the response changed, and where to read
the new answers. An edit is known by its modified time: each distinct time is one edit, told
once (the alert's Message-ID is fixed by response and time; a ledger mark after it is sent).
Only edits later than when the service took the response count, so an upgrade does not
alert on old edits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from service.cases import chronology
from service.errors import ConnectorError
from service.intake.forms import FormResponse
from service.ledger import ItemState

if TYPE_CHECKING:
    from service.intake.pipeline import Intake

log = logging.getLogger("prevent_service.forms")

_KV = "forms.updated:"  # + response ID + ":" + modified time (UTC, to the minute)
_SLACK = timedelta(minutes=1)  # Forms writes the modified time of an unedited response too


def notice(intake: Intake, responses: Sequence[FormResponse]) -> int:
    """Tell the DSP about each new edit; returns how many were told."""
    app = intake.app
    told = 0
    for response in responses:
        modified = response.modified_at
        if modified is None:
            continue
        row = app.ledger.item(f"form:{response.response_id}")
        if row is None or row.state != ItemState.DONE:
            continue
        reference = row.reference or row.case_ref
        taken = datetime.fromisoformat(row.first_seen)
        if reference is None or modified <= taken + _SLACK:
            continue
        if response.completed_at and modified <= response.completed_at + _SLACK:
            continue
        stamp = modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
        mark = f"{_KV}{response.response_id}:{stamp}"
        if app.ledger.get(mark):
            continue
        if _tell(intake, response, reference, stamp):
            app.ledger.set(mark, reference)
            told += 1
    return told


def _tell(intake: Intake, response: FormResponse, reference: str, stamp: str) -> bool:
    app = intake.app
    tz = app.config.organisation.tz
    people = app.config.people
    concern = intake._concern_from_form(response, f"form:{response.response_id}", reference)
    modified = response.modified_at
    assert modified is not None
    urgent = "URGENT – " if concern.critical else ""
    message = app.compose(
        kind="form-updated",
        key=f"{response.response_id}|{stamp}",
        to=[people.dsp.email],
        cc=people.deputy_cc,
        subject=f"[Prevent] {urgent}Form response updated – {reference}",
        template="form_updated",
        context={
            "reference": reference,
            "concern": concern,
            "modified_at": modified.astimezone(tz),
            "row_number": response.row_number,
            "register_link": app.config.register.link or "",
            "full": app.config.register.alert_detail == "full",
            "dsp_name": people.dsp.name,
        },
        high_importance=concern.critical,
    )
    try:
        app.send(message)
    except ConnectorError as exc:
        intake.result.problems.append(f"{reference}: 'response updated' alert not sent: {exc}")
        return False
    chronology.record(
        app,
        reference,
        f"form-updated|{response.response_id}|{stamp}",
        "Form response updated",
        by=response.email or "anonymous",
        note=(
            f"Forms response {response.response_id} was edited at "
            f"{modified.astimezone(tz):%d/%m/%Y %H:%M}. The Forms responses workbook (row "
            f"{response.row_number}) has the edited answers; the register row keeps them as "
            f"first submitted. Alert sent to {chronology.people_text(app, message.to)}."
        ),
        at=modified,
    )
    log.info("form response updated: %s told", reference)
    return True
