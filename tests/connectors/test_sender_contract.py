"""The MailSender contract, one test body per behaviour, run over every registered backend."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.base import Attachment, OutboundMessage
from tests.connectors.harness import SenderHarness

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def message(message_id: str = "<alert.0001@example.org>", **changes: object) -> OutboundMessage:
    fields: dict[str, object] = {
        "message_id": message_id,
        "sender": "safeguarding@example.org",
        "to": ("dsp@example.org",),
        "cc": ("deputy.dsp@example.org",),
        "subject": "New concern PRV-2026-0001 – récit",
        "text": "A concern was logged: PRV-2026-0001.\nZoë",
        "html": "<p>A concern was logged: <b>PRV-2026-0001</b>. Zoë</p>",
        "reply_to": "dsp@example.org",
        "date": datetime(2026, 2, 2, 9, 30, tzinfo=UTC),
        "headers": {"X-Prevent-Reference": "PRV-2026-0001"},
    }
    fields.update(changes)
    return OutboundMessage(**fields)  # type: ignore[arg-type]


def test_sends_text_and_html_with_the_headers(sender_harness: SenderHarness) -> None:
    sender_harness.sender.send(message(high_importance=True))

    (sent,) = sender_harness.sent()

    assert sent["Message-ID"] == "<alert.0001@example.org>"
    assert sent["From"] == "safeguarding@example.org"
    assert sent["To"] == "dsp@example.org"
    assert sent["Cc"] == "deputy.dsp@example.org"
    assert sent["Reply-To"] == "dsp@example.org"
    assert sent["Subject"] == "New concern PRV-2026-0001 – récit"
    assert sent["Auto-Submitted"] == "auto-generated"
    assert sent["X-Auto-Response-Suppress"] == "All"
    assert sent["Importance"] == "High"
    assert sent["X-Prevent-Reference"] == "PRV-2026-0001"
    assert sent.get_content_type() == "multipart/alternative"
    text = sent.get_body(preferencelist=("plain",))
    html = sent.get_body(preferencelist=("html",))
    assert text is not None and "PRV-2026-0001" in text.get_content()
    assert "Zoë" in text.get_content()
    assert html is not None and "<b>PRV-2026-0001</b>" in html.get_content()


def test_normal_importance_is_not_flagged(sender_harness: SenderHarness) -> None:
    sender_harness.sender.send(message())

    (sent,) = sender_harness.sent()

    assert sent["Importance"] is None


def test_resend_of_the_same_message_id(sender_harness: SenderHarness) -> None:
    sender_harness.sender.send(message())
    sender_harness.sender.send(message())  # a retry after an unclear failure

    expected = 1 if sender_harness.idempotent_resend else 2
    assert len(sender_harness.sent()) == expected


def test_different_message_ids_are_all_sent(sender_harness: SenderHarness) -> None:
    for n in range(3):
        sender_harness.sender.send(message(f"<ack.{n}@example.org>", subject=f"Ack {n}"))

    sent = sender_harness.sent()

    assert sorted(m["Message-ID"] for m in sent) == [f"<ack.{n}@example.org>" for n in range(3)]


def test_attachments_arrive_intact_beside_the_text_and_html(
    sender_harness: SenderHarness,
) -> None:
    workbook = bytes(range(256)) * 40  # binary, not valid UTF-8
    sender_harness.sender.send(
        message(
            attachments=(
                Attachment("prevent-report-2025-08-01-to-2026-07-31.xlsx", workbook, XLSX),
                Attachment("notes – récit.txt", "Zoë\n".encode(), "text/plain"),
            )
        )
    )

    (sent,) = sender_harness.sent()

    assert sent.get_content_type() == "multipart/mixed"
    text = sent.get_body(preferencelist=("plain",))
    html = sent.get_body(preferencelist=("html",))
    assert text is not None and "PRV-2026-0001" in text.get_content()
    assert html is not None and "<b>PRV-2026-0001</b>" in html.get_content()
    files = {a.get_filename(): a for a in sent.iter_attachments()}
    assert set(files) == {"prevent-report-2025-08-01-to-2026-07-31.xlsx", "notes – récit.txt"}
    report = files["prevent-report-2025-08-01-to-2026-07-31.xlsx"]
    assert report.get_content_type() == XLSX
    assert report.get_content() == workbook
    assert files["notes – récit.txt"].get_content() == "Zoë\n"
