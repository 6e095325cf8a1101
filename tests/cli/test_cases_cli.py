"""The case record through the command line on the local default (folder inbox, outbox,
xlsx register): follow-ups join their case, others start new concerns that say why, a locked
register delays the chronology entry and not the alert, and `case` prints the whole case."""

from __future__ import annotations

import os
import sqlite3
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.cli.helpers import outbox_messages, register_rows, run_cli


def drop(demo: Path, name: str, msg: EmailMessage) -> None:
    path = demo / "inbox" / f"{name}.eml"
    path.write_bytes(msg.as_bytes())
    settled = time.time() - 60  # the folder mailbox takes settled files only
    os.utime(path, (settled, settled))


def message(sender: str, subject: str, body: str, message_id: str, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "safeguarding@example.org"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg["Date"] = "Tue, 24 Nov 2026 10:00:00 +0000"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    folder = tmp_path / "demo"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    config = folder / "config.toml"
    config.write_text(config.read_text().replace("poll_seconds = 15", "poll_seconds = 5"))
    assert run_cli("--config", str(config), "poll").returncode == 0
    return folder


def poll(demo: Path) -> str:
    result = run_cli("--config", str(demo / "config.toml"), "poll")
    assert result.returncode in (0, 1), result.stderr
    return result.stdout


def sent(demo: Path) -> list[EmailMessage]:
    return outbox_messages(demo / "outbox")


def sent_since(demo: Path, before: list[EmailMessage]) -> list[EmailMessage]:
    seen = {str(m["Message-ID"]) for m in before}
    return [m for m in sent(demo) if str(m["Message-ID"]) not in seen]


def events(demo: Path) -> list[dict[str, object]]:
    return register_rows(demo / "workbooks" / "concern-register.xlsx", "Chronology")


def test_follow_ups_and_look_alikes_through_the_cli(demo: Path) -> None:
    out = sent(demo)
    ack = next(m for m in out if "has been received" in str(m["Subject"]))
    alert = next(m for m in out if "New safeguarding concern" in str(m["Subject"]))
    case = str(ack["Subject"]).rsplit(" ", 1)[-1]
    other = next(
        str(m["Subject"]).rsplit(" ", 1)[-1]
        for m in out
        if "New safeguarding concern" in str(m["Subject"]) and case not in str(m["Subject"])
    )
    alerted = str(alert["Subject"]).rsplit(" ", 1)[-1]
    reporter = str(ack["To"])
    drop(
        demo,
        "1-reply",
        message(
            reporter,
            f"RE: {ack['Subject']}",
            "Again today.",
            "<a@x>",
            In_Reply_To=str(ack["Message-ID"]),
        ),
    )
    drop(
        demo,
        "2-deputy",
        message(
            "deputy.dsp@example.org",
            f"RE: {alert['Subject']}",
            "Spoke to the tutor.",
            "<b@x>",
            In_Reply_To=str(alert["Message-ID"]),
        ),
    )
    drop(
        demo,
        "3-colleague",
        message(
            "pat.jones@example.org",
            f"RE: {alert['Subject']}",
            "Same in my class.",
            "<c@x>",
            References=str(alert["Message-ID"]),
        ),
    )
    drop(
        demo,
        "4-stranger",
        message('"dsp@example.org" <random@evil.test>', f"Re {case}", "hello", "<d@evil.test>"),
    )
    drop(
        demo,
        "5-forward",
        message("dsp@example.org", f"FW: {case} and {other}", "Same learner?", "<e@x>"),
    )
    before = sent(demo)

    stdout = poll(demo)

    assert "problems" not in stdout, stdout
    rows = register_rows(demo / "workbooks" / "concern-register.xlsx")
    assert len(rows) == 7  # the stranger's and the forward: new concerns
    follow = sorted(
        (str(e["Reference"]), str(e["By"]))
        for e in events(demo)
        if e["Event"] == "Follow-up received"
    )
    assert follow == sorted(
        [
            (case, reporter.lower()),
            (alerted, "deputy.dsp@example.org"),
            (alerted, "pat.jones@example.org"),
        ]
    )
    new = sent_since(demo, before)
    news = [m for m in new if "New information on" in str(m["Subject"])]
    assert len(news) == 3
    added = [m for m in new if "added to" in str(m["Subject"])]
    # The deputy is on the safeguarding team: no reporter's acknowledgement for their note.
    assert sorted(str(m["To"]) for m in added) == sorted([reporter, "pat.jones@example.org"])
    concerns = {
        str(m["Subject"]).rsplit(" ", 1)[-1]: m.get_body(("plain",)).get_content()
        for m in new
        if "New safeguarding concern" in str(m["Subject"])
    }
    assert len(concerns) == 2
    texts = " ".join(concerns.values())
    assert f"quotes {case} from random@evil.test, who is not on that case" in texts
    assert f"quotes {case} and {other}" in texts

    listing = run_cli("--config", str(demo / "config.toml"), "case", alerted)
    assert listing.returncode == 0, listing.stderr
    assert "Spoke to the tutor." in listing.stdout and "Same in my class." in listing.stdout
    assert listing.stdout.index("Reported") < listing.stdout.index("Spoke to the tutor.")


def test_a_follow_up_while_the_register_is_open_in_excel(demo: Path) -> None:
    ack = next(m for m in sent(demo) if "has been received" in str(m["Subject"]))
    case = str(ack["Subject"]).rsplit(" ", 1)[-1]
    owner = demo / "workbooks" / "~$concern-register.xlsx"
    owner.write_text("someone")
    drop(
        demo,
        "reply",
        message(
            str(ack["To"]),
            f"RE: {ack['Subject']}",
            "More.",
            "<l@x>",
            In_Reply_To=str(ack["Message-ID"]),
        ),
    )
    before = sent(demo)

    poll(demo)

    new = sent_since(demo, before)
    [alert] = [m for m in new if "New information on" in str(m["Subject"])]
    assert "Pending" in alert.get_body(("plain",)).get_content()
    assert (demo / "inbox" / "reply.eml").exists()  # not processed until its entry is written
    owner.unlink()
    # Parked for a minute (Excel's lock); as if that minute had passed:
    with sqlite3.connect(demo / "state" / "ledger.sqlite3") as db:
        db.execute("UPDATE items SET retry_at = NULL")
    poll(demo)
    poll(demo)
    mine = [e for e in events(demo) if e["Reference"] == case]
    assert [e["Event"] for e in mine].count("Follow-up received") == 1
    assert len([m for m in sent(demo) if "New information on" in str(m["Subject"])]) == 1
    assert not (demo / "inbox" / "reply.eml").exists()


def test_case_shows_the_retention_review_date_not_the_formula(demo: Path) -> None:
    """The register's Retention review is a formula nobody has calculated yet (no program
    has saved the file since the service wrote it): `case` shows the date it gives."""
    from datetime import date, datetime

    from openpyxl import load_workbook

    path = demo / "workbooks" / "concern-register.xlsx"
    workbook = load_workbook(path)
    sheet = next(s for s in workbook.worksheets if "Concerns" in s.tables)
    headers = [c.value for c in sheet[1]]
    column = {h: i + 1 for i, h in enumerate(headers)}
    rows = {sheet.cell(r, column["Reference"]).value: r for r in range(2, sheet.max_row + 1)}
    sheet.cell(rows["PRV-2026-0002"], column["DOB or age"]).value = date(2008, 2, 29)
    sheet.cell(rows["PRV-2026-0003"], column["DOB or age"]).value = 17  # an age, not a date
    sheet.cell(rows["PRV-2026-0003"], column["Closed date"]).value = datetime(2026, 12, 1)
    workbook.save(path)

    def retention_line(reference: str) -> str:
        result = run_cli("--config", str(demo / "config.toml"), "case", reference)
        assert result.returncode == 0, result.stderr
        assert "=IF(" not in result.stdout
        return next((ln for ln in result.stdout.splitlines() if ln.startswith("Retention")), "")

    assert retention_line("PRV-2026-0002").split()[-1] == "28/02/2033"  # DOB + 25 years
    assert retention_line("PRV-2026-0003").split()[-1] == "01/12/2051"  # closed + 25 years
    assert retention_line("PRV-2026-0004") == ""  # neither known yet: nothing to confirm


def test_case_for_a_concern_whose_row_is_not_written_yet_says_so(demo: Path) -> None:
    """A DSP looking up the reference from an alert while the register is open in Excel was
    told "No concern … in the register. Check the reference": the reference was right."""
    (demo / "workbooks" / "~$concern-register.xlsx").write_text("someone")
    drop(demo, "new", message("Dana Ortiz <dana.ortiz@example.org>", "A worry", "Hm.", "<n@x>"))
    poll(demo)
    alert = next(
        m for m in sent(demo) if "New safeguarding concern PRV-2026-0006" in str(m["Subject"])
    )
    assert "Pending" in alert.get_body(("plain",)).get_content()

    result = run_cli("--config", str(demo / "config.toml"), "case", "PRV-2026-0006")

    assert result.returncode == 1, result.stderr
    first = result.stdout.splitlines()[0]
    assert "Check the reference" not in result.stdout
    assert first.startswith("PRV-2026-0006 was received on ")
    assert "the DSP was alerted, but its register row (table Concerns) is not written yet" in first
    assert "Last try: concern-register.xlsx is open in Excel" in first
    assert "LockedError" not in first
    assert "'prevent-service status'" in first
    # What the service has recorded is still shown, marked as not yet in the register.
    assert "Alert sent – Service  [pending: not yet in the register]" in result.stdout


def test_case_for_a_reference_the_service_never_gave_says_check_it(demo: Path) -> None:
    result = run_cli("--config", str(demo / "config.toml"), "case", "PRV-2026-0999")
    assert result.returncode == 1
    assert "No concern PRV-2026-0999 in the register" in result.stdout
    assert "Check the reference" in result.stdout


@pytest.mark.parametrize("command", [["case", "PRV-2026-0001"], ["report"]])
def test_a_broken_register_is_named_with_its_fix_not_an_unexpected_error(
    demo: Path, command: list[str]
) -> None:
    """The streamed reads (case, report) opened the file as a zip before anything else, so a
    damaged register gave 'unexpected BadZipFile' (exit 4) instead of the file and the fix."""
    register = demo / "workbooks" / "concern-register.xlsx"
    register.write_text("not a workbook")

    result = run_cli("--config", str(demo / "config.toml"), *command)

    assert result.returncode == 1, result.stderr
    assert "unexpected" not in result.stderr
    assert f"{register} is not a readable Excel workbook" in result.stderr
    assert "restore a copy from the" in result.stderr


def test_a_printed_chronology_names_the_case_on_every_page(demo: Path) -> None:
    """The Chronology table is wider than an A4 page: its Note column printed on a page of
    its own, without the Reference that says which case each note belongs to."""
    from openpyxl import load_workbook

    sheet = load_workbook(demo / "workbooks" / "concern-register.xlsx")["Chronology"]
    assert sheet.print_title_cols == "$A:$A"  # Reference, repeated on every printed page
    assert sheet.freeze_panes == "B2"  # and kept in view on screen
    assert sheet["A1"].value == "Reference"
