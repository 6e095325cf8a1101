"""The Mailbox contract, one test body per behaviour, run over every registered backend."""

from __future__ import annotations

import email.policy
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from service.app import App
from service.config import Config
from service.ledger import ItemState
from tests.conftest import Clock
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


# ---------------------------------------------------------------------------- copies


def copies() -> list[bytes]:
    """Two byte-identical copies of a message, a resend of it (same Message-ID, other bytes),
    and two identical copies of a message with no Message-ID: what a mail loop, a person
    forwarding twice or a restored folder leaves in the intake folder."""
    first = make_raw("Concern", "A learner said something.", message_id="<dup1@example.org>")
    resend = make_raw("Concern", "A learner said something!", message_id="<dup1@example.org>")
    bare = first.replace(b"Message-ID: <dup1@example.org>\r\n", b"").replace(
        b"Subject: Concern", b"Subject: Another concern"
    )
    assert b"Message-ID" not in bare
    return [first, first, resend, bare, bare]


def test_every_copy_is_handed_on_and_leaves_when_marked(mailbox_harness: MailboxHarness) -> None:
    """On a first read (no cursor yet) every message is handed on, copies included: a backend
    that kept a copy back left it in the intake folder for good."""
    for raw in copies():
        mailbox_harness.deliver(raw)

    items = list(mailbox_harness.mailbox.fetch_new())
    for item in items:
        mailbox_harness.mailbox.mark_processed(item.item_id)

    assert sorted(item.raw for item in items) == sorted(copies())
    assert mailbox_harness.inbox_count() == 0
    assert mailbox_harness.processed_count() == len(copies())


def test_intake_records_every_copy_and_empties_the_inbox(
    mailbox_harness: MailboxHarness, make_config: Callable[..., Config], clock: Clock
) -> None:
    """The pipeline over each backend: one concern per distinct message, every copy moved to
    Processed with a ledger record (a duplicate), nothing left in the intake folder."""
    from service.intake import pipeline

    app = _app(mailbox_harness, make_config, clock)
    for raw in copies():
        mailbox_harness.deliver(raw)
    mailbox_harness.deliver(make_raw("Third", "Something else.", message_id="<d3@example.org>"))

    first = pipeline.poll(app)
    second = pipeline.poll(app)

    assert first.ok and second.ok, first.problems + second.problems
    assert mailbox_harness.inbox_count() == 0
    assert mailbox_harness.processed_count() == len(copies()) + 1
    alerts = [m for m in app.sender().sent if "dsp@example.org" in m.to]  # type: ignore[attr-defined]
    assert len(alerts) == 3  # the first concern, the one with no Message-ID, the third
    assert len(app.workbook("register").read_table("Concerns").rows) == 3
    counts = app.ledger.counts_by_state()
    assert counts.get(ItemState.DONE) == 3, counts
    assert set(counts) <= {ItemState.DONE, ItemState.DUPLICATE}, counts
    # The folder backend names a file by its bytes, so identical copies are one item there.
    assert counts.get(ItemState.DUPLICATE) in {1, 3}, counts
    assert second.new == 0 and second.alerts == 0


def _app(harness: MailboxHarness, make_config: Callable[..., Config], clock: Clock) -> App:
    from connectors.memory import MemorySender, MemoryWorkbook
    from service.cases.register import register_table_spec

    register = MemoryWorkbook()
    spec = register_table_spec()
    register.add_table(spec.table, [c.header for c in spec.columns], [])
    app = App(
        make_config({"intake": {"forms": None}}),
        now=clock,
        mailbox=harness.mailbox,
        sender=MemorySender(),
        workbooks={"register": register},
    )
    return app
