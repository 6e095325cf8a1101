"""The case record end to end on Graph (emulator): follow-ups join their case, a stranger's
and a two-reference forward do not, and a register from the previous version gets its
Chronology sheet by worksheets/add + tables/add."""

from __future__ import annotations

import io
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import openpyxl

from tests.cli.test_e2e_graph import REGISTER, cli, register_rows, site, subjects
from tests.connectors.harness_graph import MAILBOX, SITE_HOST, SITE_PATH

__all__ = ["site"]  # the fixture, used by name
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def chronology_rows(graph: Any) -> list[dict[str, object]]:
    book = openpyxl.load_workbook(io.BytesIO(graph.get_file(SITE_HOST, SITE_PATH, REGISTER)))
    for ws in book.worksheets:
        if "Chronology" in ws.tables:
            cells = ws[ws.tables["Chronology"].ref]
            headers = [c.value for c in cells[0]]
            return [
                dict(zip(headers, (c.value for c in row), strict=True))
                for row in cells[1:]
                if any(c.value not in (None, "") for c in row)
            ]
    raise AssertionError("no Chronology table")


def reply(to: EmailMessage, sender: str, subject: str, body: str, message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = MAILBOX
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    if to is not None:
        msg["In-Reply-To"] = str(to["Message-ID"])
        msg["References"] = str(to["Message-ID"])
    msg["Date"] = "Tue, 24 Nov 2026 10:00:00 +0000"
    msg.set_content(body)
    return msg.as_bytes()


def test_follow_ups_join_their_case_on_graph(site: Path, graph: Any) -> None:
    assert cli(site, "poll").returncode == 0
    sent = [m.message() for m in graph.outbox(MAILBOX)]
    ack = next(m for m in sent if "has been received" in str(m["Subject"]))
    alert = next(m for m in sent if "New safeguarding concern" in str(m["Subject"]))
    case = str(ack["Subject"]).rsplit(" ", 1)[-1]
    alerted = str(alert["Subject"]).rsplit(" ", 1)[-1]
    deputy = "deputy.dsp@example.org"
    graph.deliver(
        MAILBOX,
        reply(ack, str(ack["To"]), f"RE: {ack['Subject']}", "It happened again.", "<r1@x.org>"),
    )
    graph.deliver(
        MAILBOX,
        reply(alert, deputy, f"RE: {alert['Subject']}", "I will call the tutor.", "<r2@x.org>"),
    )
    stranger = EmailMessage()
    stranger["From"] = '"dsp@example.org" <random@evil.test>'
    stranger["To"] = MAILBOX
    stranger["Subject"] = f"About {case}"
    stranger["Message-ID"] = "<r3@evil.test>"
    stranger.set_content("Hello")
    graph.deliver(MAILBOX, stranger.as_bytes())

    result = cli(site, "poll")

    assert result.returncode == 0, result.stdout + result.stderr
    rows = register_rows(graph)
    assert len(rows) == 6  # the stranger's message only
    events = chronology_rows(graph)
    follow = [e for e in events if e["Event"] == "Follow-up received"]
    assert sorted((str(e["Reference"]), str(e["By"])) for e in follow) == sorted(
        [(case, str(ack["To"]).lower()), (alerted, deputy)]
    )
    keys = [e["Service key"] for e in events]
    assert len(keys) == len(set(keys))
    news = [s for s in subjects(graph) if "New information on" in s]
    assert sorted(s.rsplit(" ", 1)[-1] for s in news) == sorted([case, alerted])
    new_alert = next(
        m.message() for m in graph.outbox(MAILBOX) if "PRV-2026-0006" in str(m.message()["Subject"])
    )
    assert "who is not on that case" in new_alert.get_body(("plain",)).get_content()
    again = cli(site, "poll")
    assert again.returncode == 0 and "new=0" in again.stdout
    assert len(chronology_rows(graph)) == len(events)


def test_a_register_from_the_previous_version_gets_its_chronology_on_graph(
    site: Path, graph: Any
) -> None:
    old = (FIXTURES / "register-v1.xlsx").read_bytes()
    graph.put_file(SITE_HOST, SITE_PATH, REGISTER, old)

    result = cli(site, "poll")

    assert result.returncode == 0, result.stdout + result.stderr
    book = openpyxl.load_workbook(io.BytesIO(graph.get_file(SITE_HOST, SITE_PATH, REGISTER)))
    assert book.sheetnames == ["Register", "Chronology"]
    assert book["Chronology"].column_dimensions["F"].hidden
    headers = [c.name for c in book["Register"].tables["Concerns"].tableColumns]
    assert headers[-1] == "DSP notes"
    events = chronology_rows(graph)
    # The demo's three e-mails (its form responses are in the old register already); numbered
    # after the references the register shows.
    assert len([e for e in events if e["Event"] == "Reported"]) == 3
    assert {str(e["Reference"]) for e in events} == {f"PRV-2026-{n:04d}" for n in range(6, 9)}


def test_the_alerts_original_is_the_outlook_link_and_the_mailbox_folder(
    site: Path, graph: Any
) -> None:
    assert cli(site, "poll").returncode == 0
    alert = next(
        m.message()
        for m in graph.outbox(MAILBOX)
        if "New safeguarding concern" in str(m.message()["Subject"])
    )
    text = alert.get_body(("plain",)).get_content()
    [original] = [line for line in text.splitlines() if line.startswith("Original:")]
    assert "https://outlook.office365.com/owa/?ItemID=" in original
    assert f"(in the mailbox {MAILBOX}, folder Processed)" in original
