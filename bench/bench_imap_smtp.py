"""IMAP intake and SMTP sending against the real local Dovecot and aiosmtpd (loopback).

First, the figure issue 10 asks for: a first run (no cursor) and a rescan (after a UIDVALIDITY
change) of ``--messages`` messages (default 1,000), by the batched reader the service uses (one
SELECT, ``UID FETCH`` ranges with ``BODY.PEEK[]``, one ledger commit per batch) side by side
with the per-message baseline it replaced (SELECT + ``UID FETCH`` and two ledger commits per
message), in the same run on the same mailbox: medians of ``--runs`` runs and the ratio. Then
the batched reader alone on ``--target`` messages (default 5,000). The baseline costs about
15 s per 1,000 messages here, so ``--messages 5000`` (same figure for both) takes ~15 minutes.

Then: an idle ``fetch_new``, reading a burst of ``--burst`` messages, moving them to Processed
(MOVE, and the COPY + EXPUNGE fallback), and SMTP sends over STARTTLS with AUTH.

    PYTHONPATH=. python bench/bench_imap_smtp.py [--messages 1000] [--target 5000] [--runs 5]
        [--burst 200]

Starts (or reuses) the servers with .ci/mail-servers.sh. Loopback only: a real server adds its
round-trip time to every command (the baseline pays it twice per message, the batched reader
about twice per hundred). The ledger is on the same disk as a real state folder would be.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from connectors.base import InboundItem, OutboundMessage
from connectors.imap import ImapMailbox, fingerprint
from service.ledger import Ledger
from tests.connectors.harness_imap import ImapMailboxHarness, NoMoveImapMailbox, make_mailbox
from tests.connectors.harness_smtp import make_sender
from tests.servers import MailServers, MailUser, start_servers


def raw(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "alex.teacher@example.org"
    msg["To"] = "safeguarding@example.org"
    msg["Subject"] = f"Concern {n}"
    msg["Message-ID"] = f"<bench.{n}@example.org>"
    msg.set_content("A learner said something worrying.\n" * 20)
    return msg.as_bytes()


class PerMessageImapMailbox(ImapMailbox):
    """The baseline: the reader as it was before batching. For each message one SELECT (to
    check the UIDVALIDITY) and one ``UID FETCH``, a ledger commit for its fingerprint and one
    for the cursor; the rest of the mailbox (and the rescan's rules) is the service's own."""

    def fetch_new(self) -> Iterator[InboundItem]:
        cursor = self._cursor()
        validity, uids = self._run("reading the folder", lambda c: self._listing(c, cursor))
        rescan = cursor is None or cursor[0] != validity
        renumbered: set[str] = set()
        for uid in uids:

            def one(client: imaplib.IMAP4, uid: int = uid) -> tuple[bytes, datetime | None] | None:
                assert self._select(client, self.folder) == validity
                return self._fetch(client, uid)

            got = self._run(f"fetching message {uid}", one)
            if got is None:
                continue
            message, received = got
            item_id, print_ = f"{validity}:{uid}", fingerprint(message)
            if rescan and self._in_flight(item_id, print_, validity, renumbered):
                self._taken([], validity, uid)
                continue
            self._remember_all([(item_id, print_)])
            yield InboundItem(item_id=item_id, raw=message, received_at=received)
            self._taken([item_id], validity, uid)


def fill(servers: MailServers, user: MailUser, n: int) -> None:
    """Put ``n`` messages in the user's INBOX fast: straight into the Maildir (as a local
    delivery agent does), then one session so that Dovecot indexes them."""
    session = servers.imap(user)
    session.select("INBOX")  # Dovecot makes the Maildir when the INBOX is first opened
    session.logout()
    new = servers.mail_root / user.address.lower() / "Maildir" / "new"
    owner = new.stat()
    for i in range(n):
        path = new / f"{time.time():.0f}.B{i}.bench:2,"
        path.write_bytes(raw(i))
        os.chown(path, owner.st_uid, owner.st_gid)
    session = servers.imap(user)
    typ, data = session.select("INBOX")
    assert typ == "OK" and int(data[0]) == n, data
    session.logout()


def new_uidvalidity(servers: MailServers, user: MailUser) -> None:
    status = servers.doveadm(
        "-f", "flow", "mailbox", "status", "-u", user.address, "uidvalidity", "INBOX"
    )
    value = int(status.split("=")[1]) + 1
    servers.doveadm("mailbox", "update", "--uid-validity", str(value), "-u", user.address, "INBOX")


def seconds(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def first_run_and_rescan(
    servers: MailServers, user: MailUser, state: Path, cls: type[ImapMailbox], n: int
) -> tuple[float, float]:
    """A fresh ledger reads the whole folder; then the folder gets a new UIDVALIDITY and the
    same mailbox reads it again (every message recognised as still being worked on)."""
    shutil.rmtree(state, ignore_errors=True)
    ledger = Ledger(state / "ledger.sqlite3")
    try:
        box = make_mailbox(servers, user, ledger, cls=cls)
        items: list[InboundItem] = []
        first = seconds(lambda: items.extend(box.fetch_new()))
        box.close()
        assert len(items) == n, len(items)
        new_uidvalidity(servers, user)
        box = make_mailbox(servers, user, ledger, cls=cls)
        again: list[InboundItem] = []
        rescan = seconds(lambda: again.extend(box.fetch_new()))
        box.close()
        assert again == [], len(again)
        cursor = ledger.get(f"imap.cursor:{box.account}") or ""
        assert cursor.split(":")[0] != items[0].item_id.split(":")[0], "no rescan happened"
        return first, rescan
    finally:
        ledger.close()


def compare(servers: MailServers, tmp: Path, n: int, runs: int, names: tuple[str, ...]) -> None:
    user = servers.add_user("bench")
    fill(servers, user, n)
    state = tmp / "state"  # on disk, like a real state folder (not tmpfs)
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for run in range(runs):
        # Alternate, so that load from other processes falls on both alike.
        for name in names if run % 2 == 0 else names[::-1]:
            cls = ImapMailbox if name == "batched" else PerMessageImapMailbox
            figures[name].append(first_run_and_rescan(servers, user, state, cls, n))
    print(f"IMAP, {n:,} messages in the INBOX, median of {runs} runs (seconds):")
    print(
        f"{'':<14}"
        + "".join(f"{name:>14}" for name in names)
        + ("   ratio" if len(names) > 1 else "")
    )
    for index, label in enumerate(("first run", "rescan")):
        medians = [statistics.median(f[index] for f in figures[name]) for name in names]
        ratio = f"{medians[1] / medians[0]:>7.1f}x" if len(medians) > 1 else ""
        print(f"{label:<14}" + "".join(f"{m:>14.2f}" for m in medians) + ratio)
    print()


def timed(label: str, count: int, action: Callable[[], object]) -> None:
    spent = seconds(action)
    rate = f", {count / spent:,.0f}/s" if count else ""
    print(f"{label:<48} {spent * 1000:9.1f} ms{rate}")


def read_and_move(
    servers: MailServers, tmp: Path, n: int, cls: type[ImapMailbox], how: str
) -> None:
    user = servers.add_user("bench")
    box = make_mailbox(servers, user, Ledger(tmp / f"{how}.sqlite3"), cls=cls)
    h = ImapMailboxHarness(servers, user, box)
    fill(servers, user, n)
    items: list[InboundItem] = []
    timed(f"read {n} new messages ({how} run)", n, lambda: items.extend(box.fetch_new()))
    timed("idle fetch_new (nothing new)", 0, lambda: list(box.fetch_new()))
    timed(f"mark {n} processed by {how}", n, lambda: [box.mark_processed(i.item_id) for i in items])
    h.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000, help="side by side with the baseline")
    parser.add_argument("--target", type=int, default=5000, help="the batched reader alone")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args()
    servers = start_servers()
    # The ledgers go to $BENCH_DIR if set (a real disk, as a state folder is), else the temp
    # folder (memory on some systems: the baseline's commits then look cheaper than they are).
    with tempfile.TemporaryDirectory(prefix="bench-imap-", dir=os.environ.get("BENCH_DIR")) as tmp:
        compare(servers, Path(tmp), args.messages, args.runs, ("batched", "per-message"))
        if args.target and args.target != args.messages:
            compare(servers, Path(tmp), args.target, args.runs, ("batched",))
        n = args.burst
        for cls, how in ((ImapMailbox, "MOVE"), (NoMoveImapMailbox, "COPY+EXPUNGE")):
            read_and_move(servers, Path(tmp), n, cls, how)

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
