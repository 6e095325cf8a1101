"""The Mailbox contract, one test body per behaviour, run over every registered backend."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

import pytest

from tests.connectors.harness import MailboxHarness, parse


def make_raw(subject: str, body: str, *, message_id: str) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)  # CRLF line ends, as on the wire
    msg["From"] = "Alex Teacher <alex.teacher@example.org>"
    msg["To"] = "safeguarding@example.org"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg["Date"] = "Mon, 02 Feb 2026 09:30:00 +0000"
    msg.set_content(body)
    return msg.as_bytes()


def test_fetch_new_yields_a_delivered_message_once(mailbox_harness: MailboxHarness) -> None:
    raw = make_raw("Concern", "A learner said something worrying.", message_id="<c1@example.org>")
    mailbox_harness.deliver(raw)

    items = list(mailbox_harness.mailbox.fetch_new())

    assert [item.raw for item in items] == [raw]
    assert items[0].item_id
    # A replay is allowed (the ledger de-duplicates), but only under the same id.
    again = list(mailbox_harness.mailbox.fetch_new())
    assert {item.item_id for item in again} <= {items[0].item_id}
    assert mailbox_harness.inbox_count() == 1


def test_each_message_gets_its_own_id(mailbox_harness: MailboxHarness) -> None:
    raws = [
        make_raw(f"Concern {n}", f"Body {n}", message_id=f"<m{n}@example.org>") for n in range(3)
    ]
    for raw in raws:
        mailbox_harness.deliver(raw)

    items = list(mailbox_harness.mailbox.fetch_new())

    assert sorted(item.raw for item in items) == sorted(raws)
    assert len({item.item_id for item in items}) == 3


def test_mark_processed_moves_it_out_and_is_idempotent(mailbox_harness: MailboxHarness) -> None:
    mailbox_harness.deliver(make_raw("Concern", "Text", message_id="<p1@example.org>"))
    (item,) = list(mailbox_harness.mailbox.fetch_new())

    mailbox_harness.mailbox.mark_processed(item.item_id)
    mailbox_harness.mailbox.mark_processed(item.item_id)  # a retry after a crash

    assert mailbox_harness.inbox_count() == 0
    assert mailbox_harness.processed_count() == 1
    assert list(mailbox_harness.mailbox.fetch_new()) == []


def test_quarantine_moves_it_aside_and_is_idempotent(mailbox_harness: MailboxHarness) -> None:
    mailbox_harness.deliver(b"this is not a mail message \xff\xfe")
    (item,) = list(mailbox_harness.mailbox.fetch_new())

    mailbox_harness.mailbox.quarantine(item.item_id, "not a readable e-mail")
    mailbox_harness.mailbox.quarantine(item.item_id, "not a readable e-mail")

    assert mailbox_harness.inbox_count() == 0
    assert mailbox_harness.quarantined_count() == 1
    assert mailbox_harness.processed_count() == 0
    assert list(mailbox_harness.mailbox.fetch_new()) == []


def test_fetch_by_id_gets_the_same_message_again(mailbox_harness: MailboxHarness) -> None:
    raw = make_raw("Concern", "Resume me after a crash.", message_id="<r1@example.org>")
    mailbox_harness.deliver(raw)
    (item,) = list(mailbox_harness.mailbox.fetch_new())

    again = mailbox_harness.mailbox.fetch(item.item_id)

    assert again.item_id == item.item_id
    assert again.raw == raw


def test_non_ascii_content_round_trips_byte_for_byte(mailbox_harness: MailboxHarness) -> None:
    raw = (
        "From: =?utf-8?q?Zo=C3=AB_Teacher?= <zoe.teacher@example.org>\r\n"
        "To: safeguarding@example.org\r\n"
        "Subject: =?utf-8?b?Q29uY2VybiDigJMgw6lsw6h2ZQ==?=\r\n"
        "Message-ID: <u1@example.org>\r\n"
        "Date: Mon, 02 Feb 2026 09:30:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Zoë said: «ça suffit» – 日本語 – emoji \U0001f600\r\n"
    ).encode()
    mailbox_harness.deliver(raw)

    (item,) = list(mailbox_harness.mailbox.fetch_new())

    assert item.raw == raw
    assert "Zoë" in parse(item.raw).get_content()


@pytest.mark.parametrize("size", [0, 1, 300_000])
def test_odd_sizes_arrive_intact(mailbox_harness: MailboxHarness, size: int) -> None:
    raw = make_raw("Big", "x" * size + "\n", message_id=f"<s{size}@example.org>")
    mailbox_harness.deliver(raw)

    (item,) = list(mailbox_harness.mailbox.fetch_new())

    assert item.raw == raw
