"""IMAP intake and SMTP sending against the real local Dovecot and aiosmtpd (loopback).

Prints: an idle ``fetch_new`` (nothing new), reading a burst of N messages, moving them to
Processed (MOVE, and the COPY + EXPUNGE fallback), the rescan after a UIDVALIDITY change, and
SMTP sends per second over STARTTLS with AUTH (one connection per message).

    PYTHONPATH=. python bench/bench_imap_smtp.py [--burst 200]

Starts (or reuses) the servers with .ci/mail-servers.sh. Loopback only: a real server adds its
round-trip time to every command (about 3 per message read, 3 per move, 6 per SMTP send).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from connectors.base import InboundItem, OutboundMessage
from connectors.imap import ImapMailbox
from service.ledger import Ledger
from tests.connectors.harness_imap import ImapMailboxHarness, NoMoveImapMailbox, make_mailbox
from tests.connectors.harness_smtp import make_sender
from tests.servers import MailServers, start_servers


def raw(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "alex.teacher@example.org"
    msg["To"] = "safeguarding@example.org"
    msg["Subject"] = f"Concern {n}"
    msg["Message-ID"] = f"<bench.{n}@example.org>"
    msg.set_content("A learner said something worrying.\n" * 20)
    return msg.as_bytes()


def timed(label: str, count: int, action: Callable[[], object]) -> None:
    start = time.perf_counter()
    action()
    spent = time.perf_counter() - start
    rate = f", {count / spent:,.0f}/s" if count else ""
    print(f"{label:<48} {spent * 1000:9.1f} ms{rate}")


def read_and_move(
    servers: MailServers, tmp: Path, n: int, cls: type[ImapMailbox], how: str
) -> None:
    user = servers.add_user("bench")
    box = make_mailbox(servers, user, Ledger(tmp / f"{how}.sqlite3"), cls=cls)
    h = ImapMailboxHarness(servers, user, box)
    for i in range(n):
        h.deliver(raw(i))
    items: list[InboundItem] = []
    timed(f"read {n} new messages ({how} run)", n, lambda: items.extend(box.fetch_new()))
    timed("idle fetch_new (nothing new)", 0, lambda: list(box.fetch_new()))
    timed(f"mark {n} processed by {how}", n, lambda: [box.mark_processed(i.item_id) for i in items])
    h.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=200)
    n = parser.parse_args().burst
    servers = start_servers()
    with tempfile.TemporaryDirectory() as tmp:
        for cls, how in ((ImapMailbox, "MOVE"), (NoMoveImapMailbox, "COPY+EXPUNGE")):
            read_and_move(servers, Path(tmp), n, cls, how)
        user = servers.add_user("bench")
        ledger = Ledger(Path(tmp) / "rescan.sqlite3")
        box = make_mailbox(servers, user, ledger)
        h = ImapMailboxHarness(servers, user, box)
        for i in range(n):
            h.deliver(raw(i))
        list(box.fetch_new())
        servers.doveadm("mailbox", "update", "--uid-validity", "42", "-u", user.address, "INBOX")
        timed(
            f"rescan of {n} after UIDVALIDITY change (skip all)", n, lambda: list(box.fetch_new())
        )
        h.close()

        sender = make_sender(servers, servers.add_user("bench"))
        messages = [
            OutboundMessage(
                message_id=f"<bench.{i}@example.org>",
                sender="safeguarding@example.org",
                to=("dsp@example.org",),
                subject=f"Alert {i}",
                text="text",
                html="<p>html</p>",
            )
            for i in range(min(n, 50))
        ]
        timed(
            f"send {len(messages)} over STARTTLS + AUTH",
            len(messages),
            lambda: [sender.send(m) for m in messages],
        )


if __name__ == "__main__":
    main()
