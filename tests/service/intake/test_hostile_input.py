"""Hostile and broken input through the real local backends (folder → xlsx → outbox).

Nothing is lost, nothing is executed: formula text stays text, HTML stays escaped, attachment
names never become paths, huge and broken messages are logged or quarantined with the DSP told.
"""

from __future__ import annotations

import email
import email.policy
from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook

from service.admin.setup import init_folder
from service.app import App
from service.cases.register import retention_formula
from service.config import load_config
from service.intake.pipeline import poll
from tests.cli.helpers import alerts_in, outbox_messages, register_rows


@pytest.fixture
def local(tmp_path: Path) -> Path:
    folder = tmp_path / "svc"
    init_folder(folder, demo=False, today=date(2026, 11, 24))
    text = (
        (folder / "config.toml")
        .read_text()
        .replace('alert_detail = "summary"', 'alert_detail = "full"')
    )
    (folder / "config.toml").write_text(text)
    return folder


def drop(folder: Path, name: str, raw: bytes) -> None:
    (folder / "inbox" / name).write_bytes(raw)
    # The folder mailbox waits for files to settle; age the file.
    import os

    os.utime(folder / "inbox" / name, (1_700_000_000, 1_700_000_000))


def run(folder: Path) -> None:
    app = App(load_config(folder / "config.toml"))
    try:
        poll(app)
    finally:
        app.close()


def plain(subject: str, body: str, extra: str = "") -> bytes:
    return (
        f"From: Staff <staff@example.org>\r\nTo: safeguarding@example.org\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{abs(hash(subject + body))}@example.org>\r\n"
        f"MIME-Version: 1.0\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def test_formula_text_is_stored_as_text_in_the_saved_workbook(local: Path) -> None:
    drop(
        local, "f.eml", plain('=HYPERLINK("http://evil.example.org","click")', "+cmd|' /C calc'!A0")
    )
    run(local)
    path = local / "workbooks" / "concern-register.xlsx"
    sheet = load_workbook(path).active
    values = [c.value for row in sheet.iter_rows() for c in row if isinstance(c.value, str)]
    assert any("HYPERLINK" in v for v in values)
    # No cell is a formula but the register's own calculated column (Retention review).
    headers = [c.value for c in sheet[1]]
    formulas = [
        (headers[c.column - 1], c.value)
        for row in sheet.iter_rows(min_row=2)
        for c in row
        if c.data_type == "f"
    ]
    assert formulas == [("Retention review", "=" + retention_formula("Concerns"))]


def test_html_and_script_are_escaped_in_the_alert(local: Path) -> None:
    html = (
        b"From: Staff <staff@example.org>\r\nTo: safeguarding@example.org\r\n"
        b"Subject: <script>alert(1)</script>\r\nMessage-ID: <h1@example.org>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><body><script>steal()</script>"
        b"<p onclick='x()'>He said <b>hello</b></p></body></html>\r\n"
    )
    drop(local, "h.eml", html)
    run(local)
    [alert] = alerts_in(local / "outbox")
    html_part = alert.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html_part and "steal()" not in html_part
    assert "&lt;script&gt;" in html_part or "script" not in html_part.lower()
    [row] = register_rows(local / "workbooks" / "concern-register.xlsx")
    assert "He said hello" in str(row["Account"]) and "steal" not in str(row["Account"])


def test_attachment_names_never_become_paths(local: Path) -> None:
    msg = email.message.EmailMessage()
    msg["From"] = "Staff <staff@example.org>"
    msg["To"] = "safeguarding@example.org"
    msg["Subject"] = "Screenshots"
    msg["Message-ID"] = "<att@example.org>"
    msg.set_content("See attached.")
    for name in ("../../../../tmp/pwned.txt", "C:\\Windows\\evil.docx", "/etc/passwd"):
        msg.add_attachment(b"data", maintype="application", subtype="octet-stream", filename=name)
    drop(local, "a.eml", msg.as_bytes())
    run(local)
    assert not Path("/tmp/pwned.txt").exists()
    [row] = register_rows(local / "workbooks" / "concern-register.xlsx")
    attachments = str(row["Attachments"])
    assert "3 kept with the original" in attachments
    assert ".." not in attachments and "/" not in attachments.split(":", 1)[1]
    # The original (with its attachments) is kept whole in processed/.
    [kept] = (local / "inbox" / "processed").glob("*.eml")
    assert (
        len(
            list(
                email.message_from_bytes(
                    kept.read_bytes(), policy=email.policy.default
                ).iter_attachments()
            )
        )
        == 3
    )


def test_a_five_megabyte_body_is_logged_truncated_with_a_marker(local: Path) -> None:
    drop(local, "big.eml", plain("Long", "word " * 1_000_000))
    run(local)
    [row] = register_rows(local / "workbooks" / "concern-register.xlsx")
    account = str(row["Account"])
    assert len(account) <= 32_767 and "truncated" in account


def test_broken_mime_and_bad_charsets_still_become_concerns(local: Path) -> None:
    broken = (
        b"From: Staff <staff@example.org>\r\nTo: safeguarding@example.org\r\n"
        b"Subject: =?x-unknown?b?SGVsbG8=?= broken\r\nMessage-ID: <b@example.org>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="zz"\r\n\r\n'
        b"--zz\r\nContent-Type: text/plain; charset=klingon\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n"
        b"--zz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nCaf\xe9 \xff\xfe text\r\n"
    )  # no closing boundary
    drop(local, "broken.eml", broken)
    run(local)
    rows = register_rows(local / "workbooks" / "concern-register.xlsx")
    assert len(rows) == 1 and len(alerts_in(local / "outbox")) == 1


def test_junk_and_outlook_msg_files_are_quarantined_and_the_dsp_told(local: Path) -> None:
    drop(local, "junk.eml", b"\x00\x01\x02\x03" * 100)
    drop(local, "Concern.msg", b"\xd0\xcf\x11\xe0 compound file")
    run(local)
    notices = [
        m for m in outbox_messages(local / "outbox") if "needs a person" in str(m["Subject"])
    ]
    assert len(notices) == 2
    assert not register_rows(local / "workbooks" / "concern-register.xlsx")
    assert len(list((local / "inbox" / "quarantine").glob("*.reason.txt"))) == 2
    run(local)  # nothing new the second time
    assert len(list((local / "outbox").glob("*.eml"))) == 2
