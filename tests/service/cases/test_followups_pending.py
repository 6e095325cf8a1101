"""A reply to a concern whose register row is still waiting (the workbook open in Excel) joins
that concern as a follow-up when it comes from the concern's own reporter, even from outside the
organisation: the reporter's address waits in the ledger with the concern's "Reported" event
until the register can be written, so "is this sender on the case?" no longer depends on a row
that is not there yet. Anyone else is still a new concern that names the case.

Folder mailbox, local .xlsx register and outbox: the demo folder `init --demo` lays out, with
the register locked the way Excel locks it (its owner file beside it)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from service.app import App
from service.cases import chronology
from service.config import load_config
from service.intake import pipeline
from tests.cli.helpers import outbox_messages, register_rows, run_cli
from tests.conftest import Clock

REPORTER = "parent@example.net"  # outside the organisation's domains (example.org)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Path, App, Clock]]:
    folder = tmp_path / "demo"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    clock = Clock(datetime.now(UTC))
    app = App(load_config(folder / "config.toml"), now=clock)
    assert pipeline.poll(app).ok  # the demo's own concerns, out of the way
    yield folder, app, clock
    app.close()


def drop(folder: Path, name: str, sender: str, subject: str, body: str, **headers: str) -> None:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "safeguarding@example.org"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{name}@example.net>"
    msg["Date"] = "Tue, 24 Nov 2026 10:00:00 +0000"
    for key, value in headers.items():
        msg[key.replace("_", "-")] = value
    msg.set_content(body)
    path = folder / "inbox" / f"{name}.eml"
    path.write_bytes(msg.as_bytes())
    settled = time.time() - 60  # the folder mailbox takes settled files only
    os.utime(path, (settled, settled))


def subjects(folder: Path, *, not_in: frozenset[str] = frozenset()) -> list[str]:
    """Subjects of the mail sent, leaving out the Message-IDs ``not_in``."""
    out = outbox_messages(folder / "outbox")
    return [str(m["Subject"]) for m in out if str(m["Message-ID"]) not in not_in]


def sent_ids(folder: Path) -> frozenset[str]:
    return frozenset(str(m["Message-ID"]) for m in outbox_messages(folder / "outbox"))


def register(folder: Path) -> Path:
    return folder / "workbooks" / "concern-register.xlsx"


def lock(folder: Path) -> Path:
    owner = register(folder).with_name("~$" + register(folder).name)
    owner.write_bytes(b"\x0bExample User" + b"\x00" * 40)  # what Excel leaves beside it
    return owner


def poll_later(app: App, clock: Clock, minutes: float = 2) -> pipeline.CycleResult:
    clock.advance(minutes=minutes)
    return pipeline.poll(app)


def test_the_reporters_reply_joins_the_concern_whose_row_is_waiting(
    demo: tuple[Path, App, Clock],
) -> None:
    folder, app, clock = demo
    rows_before = len(register_rows(register(folder), "Concerns"))
    before = sent_ids(folder)
    owner = lock(folder)
    drop(folder, "first", f"A Parent <{REPORTER}>", "Worried about my son", "He has changed.")
    first = poll_later(app, clock)
    assert first.alerts == 1 and first.logged == 0  # alerted; the row waits for Excel
    [ack] = [
        m
        for m in outbox_messages(folder / "outbox")
        if "has been received" in str(m["Subject"]) and m["To"] == REPORTER
    ]
    case = str(ack["Subject"]).rsplit(" ", 1)[-1]

    # The reporter answers the acknowledgement; a stranger forges the same threading.
    drop(
        folder,
        "reply",
        REPORTER,
        f"RE: {ack['Subject']}",
        "He has now started sharing the videos.",
        In_Reply_To=str(ack["Message-ID"]),
        References=str(ack["Message-ID"]),
    )
    drop(  # and writes again, quoting the reference only (a new message, no threading)
        folder,
        "quoted",
        f"A Parent <{REPORTER}>",
        f"More about {case}",
        "He was seen with the same group again.",
    )
    drop(
        folder,
        "stranger",
        "someone@example.com",
        f"RE: {ack['Subject']}",
        "Not the reporter.",
        In_Reply_To=str(ack["Message-ID"]),
    )
    second = poll_later(app, clock)

    new = subjects(folder, not_in=before)
    # Both joined the case (whether the wording makes them URGENT is triage's business).
    followups = [s for s in new if "New information on" in s]
    assert [s.replace("URGENT – ", "") for s in followups] == [
        f"[Prevent] New information on {case}"
    ] * 2
    concerns = [s for s in new if "New safeguarding concern" in s]
    assert len(concerns) == 2, concerns  # the first concern, and the stranger's (its own)
    [stranger] = [
        m.get_body(("plain",)).get_content()
        for m in outbox_messages(folder / "outbox")
        if str(m["Message-ID"]) not in before
        and "New safeguarding concern" in str(m["Subject"])
        and case not in str(m["Subject"])
    ]
    assert f"quotes {case} from someone@example.com, who is not on that case" in stranger
    assert second.followups == 0  # their Chronology entries wait for Excel too
    assert (folder / "inbox" / "reply.eml").exists()  # not processed until that is written

    owner.unlink()
    for _ in range(3):  # Excel's lock parks for a minute; the row, the entry, then the rest
        poll_later(app, clock)
    rows = register_rows(register(folder), "Concerns")
    assert len(rows) == rows_before + 2  # the concern and the stranger's; no row for the reply
    mine = [e for e in register_rows(register(folder), chronology.TABLE) if e["Reference"] == case]
    follow_ups = [str(e["Note"]) for e in mine if e["Event"] == "Follow-up received"]
    assert {e["By"] for e in mine if e["Event"] == "Follow-up received"} == {REPORTER}
    assert len(follow_ups) == 2
    assert all("from the reporter" in note for note in follow_ups)
    assert any("sharing the videos" in note for note in follow_ups)
    assert any("same group again" in note for note in follow_ups)
    assert not (folder / "inbox" / "reply.eml").exists()
    assert not (folder / "inbox" / "quoted.eml").exists()
    assert chronology.pending_count(app) == 0
