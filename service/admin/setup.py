"""``prevent-service init``: lay out a working folder for the local default.

    DIR/config.toml                        the config (from config/example-local.toml)
    DIR/inbox/                             drop .eml files here (the intake mailbox)
    DIR/outbox/                            mail the service sends appears here as .eml
    DIR/workbooks/concern-register.xlsx    the register (tables Concerns and Chronology)
    DIR/workbooks/forms-responses.xlsx     what Microsoft Forms writes (sheet Form1, table Table1)
    DIR/workbooks/compliance.xlsx          action plan, policies, training (tables)
    DIR/state/                             the ledger

``--demo`` adds invented concerns (e-mails and form responses) and a demo plan.
"""

from __future__ import annotations

import os
import shutil
import time as clock
from datetime import date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from connectors import WORKBOOKS, backend_class
from connectors.base import TableSpec
from service.cases.chronology import chronology_table_spec
from service.cases.register import register_table_spec
from service.config import DEFAULT_FORM_COLUMNS
from service.errors import PreventServiceError
from service.indicators import form_choices
from service.intake.forms import forms_table_spec


class InitError(PreventServiceError):
    """The folder cannot be laid out (not empty, not writable)."""


def init_folder(target: Path, *, demo: bool, today: date) -> Path:
    target = target.expanduser().resolve()
    if target.exists() and any(target.iterdir()):
        raise InitError(f"{target} is not empty; choose a new or empty folder")
    try:
        # The service's user only: these will hold concern text (outbox, state, workbooks).
        target.mkdir(0o700, parents=True, exist_ok=True)
        for sub in ("inbox", "outbox", "workbooks", "state"):
            (target / sub).mkdir(0o700, parents=True, exist_ok=True)
        example = resources.files("config").joinpath("example-local.toml").read_text("utf-8")
        if demo:  # invented people: `check` allows the placeholders (service/admin/placeholders)
            example = example.replace("\n# demo = true ", "\ndemo = true   ", 1)
        (target / "config.toml").write_text(example, encoding="utf-8")
        create = backend_class(WORKBOOKS, "xlsx").create
        create(
            target / "workbooks" / "concern-register.xlsx",
            [register_table_spec(), chronology_table_spec()],
        )
        form_rows = _demo_form_rows(today) if demo else ()
        create(target / "workbooks" / "forms-responses.xlsx", [forms_table_spec(form_rows)])
        create(target / "workbooks" / "compliance.xlsx", _compliance_specs(demo, today))
        if demo:
            mail = resources.files("config").joinpath("demo", "mail")
            for item in sorted(mail.iterdir(), key=lambda p: p.name):
                if item.name.endswith(".eml"):
                    dropped = target / "inbox" / item.name
                    dropped.write_bytes(item.read_bytes())
                    # Settled, as if dropped a minute ago: the folder mailbox skips files
                    # that may still be being written, and the demo's first poll should not.
                    settled = clock.time() - 60
                    os.utime(dropped, (settled, settled))
    except OSError as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise InitError(f"cannot create {target}: {exc.strerror}") from None
    return target


def _compliance_specs(demo: bool, today: date) -> list[TableSpec]:
    from service.compliance.workbook import compliance_table_specs

    return list(compliance_table_specs(demo=demo, today=today))


def _pick(keyword: str) -> str:
    """The Form's option text for an indicator, found by a word in it."""
    for choice in form_choices():
        if keyword.lower() in choice.lower():
            return choice
    raise LookupError(keyword)


def _demo_form_rows(today: date) -> tuple[tuple[Any, ...], ...]:
    """Two invented Forms responses, in the column order of ``forms_table_spec``."""
    yesterday = datetime.combine(today - timedelta(days=1), time(16, 20))
    answers_1 = {
        "person_of_concern": "Avery Quinn",
        "learner_ref": "L10987",
        "dob_or_age": "17",
        "area": "Warwickshire – Nuneaton centre",
        "occurred_at": (today - timedelta(days=1)).strftime("%d/%m/%Y") + " 14:00",
        "account": (
            'Avery said in class that a group they met online "will sort things out '
            'properly" and asked me whether I thought an attack on a mosque was justified. '
            "Avery has stopped seeing old friends and spends time with a new group."
        ),
        "indicators": f"{_pick('justifying the use of violence')};{_pick('personal crisis')};",
        "immediate_action": "Spoke to Avery calmly, did not promise confidentiality.",
        "immediate_danger": "No",
        "others_told": "My line manager",
    }
    answers_2 = {
        "person_of_concern": "Drew Ellis",
        "learner_ref": "",
        "dob_or_age": "19",
        "area": "Coventry",
        "occurred_at": today.strftime("%d/%m/%Y"),
        "account": (
            "Drew's employer reports Drew has been sharing posts that support a banned "
            "organisation on the works group chat."
        ),
        "indicators": f"{_pick('voicing support')};",
        "immediate_action": "None yet",
        "immediate_danger": "No",
        "others_told": "",
    }
    rows = []
    for number, (answers, email, name) in enumerate(
        [
            (answers_1, "chris.tutor@example.org", "Chris Tutor"),
            (answers_2, "anonymous", ""),
        ],
        start=1,
    ):
        started = yesterday + timedelta(hours=number)
        rows.append(
            (
                number,
                started,
                started + timedelta(minutes=6),
                email,
                name,
                *(answers[f] for f in DEFAULT_FORM_COLUMNS),
            )
        )
    return tuple(rows)
