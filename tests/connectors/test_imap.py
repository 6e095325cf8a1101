"""The IMAP mailbox against the real Dovecot on 127.0.0.1 (see tests/servers.py).

Each test has its own mailbox user. What the backend did is checked through a separate IMAP
session or doveadm, never through the backend itself.
"""

from __future__ import annotations

import email.policy
import imaplib
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from connectors.base import InboundItem
from connectors.imap import ImapMailbox, _fetched, _folder_arg, _uid_set, fingerprint
from connectors.mail_auth import xoauth2_string
from service.config import parse_config
from service.errors import ConfigError, InputError, PermanentError, TransientError
from service.ledger import Ledger
from tests.conftest import BASE_CONFIG, merge
from tests.connectors.harness import parse
from tests.connectors.harness_imap import ImapMailboxHarness, NoMoveImapMailbox
from tests.connectors.harness_imap import make_mailbox as _make_mailbox
from tests.servers import MailServers, MailUser

pytestmark = pytest.mark.servers


def raw_message(n: int, *, subject: str = "Concern", message_id: str | None = None) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Alex Teacher <alex.teacher@example.org>"
    msg["To"] = "safeguarding@example.org"
    msg["Subject"] = f"{subject} {n}"
    if message_id != "":
        msg["Message-ID"] = message_id or f"<concern.{n}@example.org>"
    msg["Date"] = "Mon, 02 Feb 2026 09:30:00 +0000"
    msg.set_content(f"Body {n}\n")
    return msg.as_bytes()


_OPEN: list[ImapMailbox] = []


def make_mailbox(*args: Any, **kwargs: Any) -> ImapMailbox:
    """``harness_imap.make_mailbox``, closed at the end of the test (no stray sockets)."""
    box = _make_mailbox(*args, **kwargs)
    _OPEN.append(box)
    return box


@pytest.fixture(autouse=True)
def _close_mailboxes() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    yield ledger
    ledger.close()


@pytest.fixture
def harness(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> Iterator[ImapMailboxHarness]:
    h = ImapMailboxHarness(mail_servers, mail_user, make_mailbox(mail_servers, mail_user, ledger))
    yield h
    h.close()


def flags_in(h: ImapMailboxHarness, folder: str) -> list[set[str]]:
    session = h.session
    session.select(_folder_arg(folder), readonly=True)
    typ, data = session.fetch("1:*", "(FLAGS)")
    assert typ == "OK"
    return [
        {f.decode() for f in line.split(b"FLAGS (")[1].split(b")")[0].split()} - {"\\Recent"}
        for line in data
        if isinstance(line, bytes) and b"FLAGS" in line
    ]


def folders(h: ImapMailboxHarness) -> dict[str, bool]:
    """Folder name → subscribed, as a mail client would list them."""
    typ, data = h.session.list()
    assert typ == "OK"
    names = {line.rsplit(b" ", 1)[1].strip(b'"').decode() for line in data if line}
    typ, subscribed = h.session.lsub()
    subs = {line.rsplit(b" ", 1)[1].strip(b'"').decode() for line in subscribed if line}
    return {name: name in subs for name in names}


# ---------------------------------------------------------------------------- TLS and login


@pytest.mark.parametrize("security", ["tls", "starttls", "none"])
def test_reads_over_each_kind_of_connection(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger, security: str
) -> None:
    box = make_mailbox(mail_servers, mail_user, ledger, security=security)
    h = ImapMailboxHarness(mail_servers, mail_user, box)
    h.deliver(raw_message(1))

    items = list(box.fetch_new())

    assert [parse(i.raw)["Subject"] for i in items] == ["Concern 1"]
    if security != "none":
        assert isinstance(box._client.sock, ssl.SSLSocket)  # type: ignore[union-attr]
    h.close()


def test_tls_is_verified_by_default(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> None:
    box = make_mailbox(mail_servers, mail_user, ledger, ca_bundle=None)

    with pytest.raises(PermanentError, match=r"certificate .* not trust.*ca_bundle"):
        list(box.fetch_new())


def test_starttls_is_verified_too(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> None:
    box = make_mailbox(mail_servers, mail_user, ledger, security="starttls", ca_bundle=None)

    with pytest.raises(PermanentError, match="certificate"):
        box.fetch("1:1")


# A UK keyboard's "£" (or any non-ASCII character) in a password must reach the server as
# UTF-8 (AUTHENTICATE/AUTH PLAIN), not crash the client's ASCII-only LOGIN.
@pytest.mark.parametrize("wrong", ["not-the-password", "not-the-pa££wörd"], ids=["ascii", "utf8"])
def test_wrong_password_is_permanent_and_names_the_fix(
    wrong: str, mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> None:
    box = make_mailbox(
        mail_servers,
        mail_user,
        ledger,
        password=wrong,
        credential_hint="the password in $PREVENT_IMAP_PASSWORD",
    )

    with pytest.raises(PermanentError) as caught:
        list(box.fetch_new())

    text = str(caught.value)
    assert mail_user.address in text and "$PREVENT_IMAP_PASSWORD" in text
    assert wrong not in text


def test_xoauth2_login_against_dovecot(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> None:
    """Dovecot checks the bearer token with its oauth2 passdb (token-info endpoint)."""
    calls: list[int] = []

    def token() -> str:
        calls.append(1)
        return mail_user.token

    box = make_mailbox(mail_servers, mail_user, ledger, token_provider=token)
    h = ImapMailboxHarness(mail_servers, mail_user, box)
    h.deliver(raw_message(1))

    assert len(list(box.fetch_new())) == 1
    assert calls == [1]
    h.close()


def test_xoauth2_bad_token_is_permanent(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> None:
    box = make_mailbox(mail_servers, mail_user, ledger, token_provider=lambda: "expired-token")

    with pytest.raises(PermanentError, match=r"refused the OAuth token.*IMAP\.AccessAsApp"):
        list(box.fetch_new())


def test_xoauth2_string_format() -> None:
    # The SASL form Google and Microsoft document (before base64).
    assert xoauth2_string("a@example.org", "tok") == "user=a@example.org\x01auth=Bearer tok\x01\x01"


def test_connection_refused_is_transient(mail_user: MailUser, ledger: Ledger) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    box = ImapMailbox(
        ledger, host="127.0.0.1", port=port, security="none", username="x", password="y"
    )

    with pytest.raises(TransientError, match="failed twice"):
        list(box.fetch_new())


def test_a_silent_server_times_out(ledger: Ledger) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)  # accepts the TCP connection, never says a word
        box = ImapMailbox(
            ledger,
            host="127.0.0.1",
            port=listener.getsockname()[1],
            security="none",
            username="x",
            password="y",
            timeout_seconds=0.3,
        )
        with pytest.raises(TransientError, match="TimeoutError"):
            list(box.fetch_new())


# ---------------------------------------------------------------------------- the queue


def test_never_uses_or_sets_the_seen_flag(harness: ImapMailboxHarness) -> None:
    harness.deliver(raw_message(1))
    harness.deliver(raw_message(2))
    harness.session.select("INBOX")
    harness.session.store("1", "+FLAGS", "(\\Seen)")  # a person read the first one

    items = list(harness.mailbox.fetch_new())
    harness.mailbox.fetch(items[1].item_id)

    assert len(items) == 2
    assert flags_in(harness, "INBOX") == [{"\\Seen"}, set()]


def test_cursor_moves_only_when_the_consumer_takes_the_item(
    harness: ImapMailboxHarness, mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> None:
    for n in (1, 2):
        harness.deliver(raw_message(n))
    gen = harness.mailbox.fetch_new()
    first = next(gen)
    gen.close()  # the process died while handling the first item

    again = make_mailbox(mail_servers, mail_user, ledger)
    items = [i.item_id for i in again.fetch_new()]
    again.close()

    assert items[0] == first.item_id  # replayed, not skipped
    assert len(items) == 2


def test_item_ids_carry_uidvalidity_and_received_time(harness: ImapMailboxHarness) -> None:
    harness.deliver(raw_message(1))

    (item,) = list(harness.mailbox.fetch_new())

    validity = harness.servers.doveadm(
        "-f", "flow", "mailbox", "status", "-u", harness.user.address, "uidvalidity", "INBOX"
    )
    assert item.item_id == f"{validity.split('=')[1].strip()}:1"
    assert item.received_at is not None and item.received_at.tzinfo is not None


def test_fetch_of_an_unknown_id_is_an_input_error(harness: ImapMailboxHarness) -> None:
    harness.deliver(raw_message(1))
    list(harness.mailbox.fetch_new())

    with pytest.raises(InputError, match="no longer in 'INBOX'"):
        harness.mailbox.fetch("1:999")
    with pytest.raises(InputError, match="not an IMAP item id"):
        harness.mailbox.fetch("nonsense")


def test_fetch_finds_a_message_already_moved_to_processed(harness: ImapMailboxHarness) -> None:
    raw = raw_message(1)
    harness.deliver(raw)
    (item,) = list(harness.mailbox.fetch_new())
    harness.mailbox.mark_processed(item.item_id)  # then the process died before recording it

    again = harness.mailbox.fetch(item.item_id)

    assert again.item_id == item.item_id and again.raw == raw


# ---------------------------------------------------------------------------- moving


class Recording(ImapMailbox):
    """Records the UID commands sent (to tell MOVE from COPY + EXPUNGE); the server is real."""

    commands: list[str]

    def _connect(self) -> imaplib.IMAP4:
        client = super()._connect()
        original = client.uid
        self.commands = getattr(self, "commands", [])

        def uid(command: str, *args: Any) -> Any:
            self.commands.append(command.upper())
            return original(command, *args)

        client.uid = uid  # type: ignore[method-assign]
        return client


class RecordingNoMove(Recording, NoMoveImapMailbox):
    pass


@pytest.mark.parametrize(
    ("cls", "used", "not_used"),
    [(Recording, "MOVE", "COPY"), (RecordingNoMove, "COPY", "MOVE")],
    ids=["move", "copy-expunge"],
)
def test_processed_and_quarantine_folders_are_created_and_used(
    mail_servers: MailServers,
    mail_user: MailUser,
    ledger: Ledger,
    cls: type[Recording],
    used: str,
    not_used: str,
) -> None:
    box = make_mailbox(mail_servers, mail_user, ledger, cls=cls)
    h = ImapMailboxHarness(mail_servers, mail_user, box)
    for n in range(3):
        h.deliver(raw_message(n))
    assert set(folders(h)) == {"INBOX"}
    h.session.select("INBOX")
    h.session.store("3", "+FLAGS", "(\\Deleted)")  # a person deleted one; not ours to expunge

    first, second, _third = list(box.fetch_new())
    box.mark_processed(first.item_id)
    box.quarantine(second.item_id, "not a readable e-mail")

    assert folders(h) == {"INBOX": False, "Processed": True, "Quarantine": True}
    assert (h.inbox_count(), h.processed_count(), h.quarantined_count()) == (1, 1, 1)
    assert used in box.commands and not_used not in box.commands
    assert {"$PreventQuarantined"} <= flags_in(h, "Quarantine")[0]
    assert flags_in(h, "Processed") == [set()]  # no \Deleted copied along
    h.close()


@pytest.mark.parametrize(
    ("cls", "what"),
    [
        (ImapMailbox, "delete"),
        (ImapMailbox, "rename"),
        (NoMoveImapMailbox, "delete"),
    ],
    ids=["move-deleted", "move-renamed", "copy-deleted"],
)
def test_a_processed_folder_a_person_deleted_or_renamed_is_made_again(
    mail_servers: MailServers,
    mail_user: MailUser,
    ledger: Ledger,
    cls: type[ImapMailbox],
    what: str,
) -> None:
    # The worker (``run``) keeps one mailbox object for days; a person tidies the folders.
    box = make_mailbox(mail_servers, mail_user, ledger, cls=cls)
    h = ImapMailboxHarness(mail_servers, mail_user, box)
    h.deliver(raw_message(1))
    h.deliver(raw_message(2))
    first, second = list(box.fetch_new())
    box.mark_processed(first.item_id)
    if what == "delete":
        h.session.delete("Processed")
    else:
        h.session.rename("Processed", "Old concerns")

    box.mark_processed(second.item_id)

    assert (h.inbox_count(), h.processed_count()) == (0, 1)
    h.close()


@pytest.mark.parametrize("cut_after", ["copy", "store"])
def test_copy_fallback_resumes_after_a_cut_without_copying_twice(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger, cut_after: str
) -> None:
    box = make_mailbox(mail_servers, mail_user, ledger, cls=NoMoveImapMailbox)
    h = ImapMailboxHarness(mail_servers, mail_user, box)
    h.deliver(raw_message(1))
    (item,) = list(box.fetch_new())
    # The earlier attempt got as far as COPY (and maybe \Deleted), then the connection died.
    h.session.create("Processed")
    h.session.select("INBOX")
    h.session.uid("COPY", "1", "Processed")
    if cut_after == "store":
        h.session.uid("STORE", "1", "+FLAGS.SILENT", "(\\Deleted)")

    box.mark_processed(item.item_id)

    assert (h.inbox_count(), h.processed_count()) == (0, 1)
    assert flags_in(h, "Processed") == [set()]
    h.close()


def test_copy_fallback_moves_a_message_a_person_flagged_deleted(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> None:
    box = make_mailbox(mail_servers, mail_user, ledger, cls=NoMoveImapMailbox)
    h = ImapMailboxHarness(mail_servers, mail_user, box)
    h.deliver(raw_message(1))
    (item,) = list(box.fetch_new())
    h.session.select("INBOX")
    h.session.uid("STORE", "1", "+FLAGS.SILENT", "(\\Deleted)")  # a person, before the move

    box.mark_processed(item.item_id)

    assert (h.inbox_count(), h.processed_count()) == (0, 1)
    assert flags_in(h, "Processed") == [set()]  # and no client expunge will erase it there
    h.close()


def test_copy_fallback_copies_a_same_bytes_message_delivered_separately(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> None:
    """A duplicate delivery processed earlier (same bytes, other arrival time) is not "ours"."""
    box = make_mailbox(mail_servers, mail_user, ledger, cls=NoMoveImapMailbox)
    h = ImapMailboxHarness(mail_servers, mail_user, box)
    h.session.create("Processed")
    h.session.append("Processed", "", imaplib.Time2Internaldate(1_700_000_000), raw_message(1))
    h.session.append("INBOX", "", imaplib.Time2Internaldate(1_700_003_600), raw_message(1))
    (item,) = list(box.fetch_new())

    box.mark_processed(item.item_id)

    assert (h.inbox_count(), h.processed_count()) == (0, 2)
    h.close()


def test_non_ascii_folder_names(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> None:
    box = make_mailbox(
        mail_servers,
        mail_user,
        ledger,
        folder="Sicherheit – Meldungen",
        processed_folder="Erledigt ✓",
        quarantine_folder="Quarantäne",
    )
    h = ImapMailboxHarness(mail_servers, mail_user, box)
    h.session.create(_folder_arg("Sicherheit – Meldungen"))
    h.deliver(raw_message(1))
    h.deliver(raw_message(2))

    first, second = list(box.fetch_new())
    box.mark_processed(first.item_id)
    box.quarantine(second.item_id, "unreadable")

    assert h.count("Erledigt ✓") == 1 and h.count("Quarantäne") == 1
    assert h.count("Sicherheit – Meldungen") == 0
    h.close()


def test_missing_intake_folder_names_the_folder(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> None:
    box = make_mailbox(mail_servers, mail_user, ledger, folder="Concerns")

    with pytest.raises(PermanentError, match=r"'Concerns'.*intake\.mailbox"):
        list(box.fetch_new())


# ---------------------------------------------------------------------------- dropped connections


def test_reconnects_when_the_server_drops_the_connection_mid_cycle(
    harness: ImapMailboxHarness,
) -> None:
    for n in range(3):
        harness.deliver(raw_message(n))
    taken: list[InboundItem] = []

    for item in harness.mailbox.fetch_new():
        taken.append(item)
        if len(taken) == 1:
            harness.servers.kick(harness.user)  # server side: as a restart or idle cut would

    assert [parse(i.raw)["Subject"] for i in taken] == ["Concern 0", "Concern 1", "Concern 2"]
    harness.servers.kick(harness.user)
    harness.mailbox.mark_processed(taken[0].item_id)
    assert harness.processed_count() == 1


def test_reconnects_when_our_socket_dies(harness: ImapMailboxHarness) -> None:
    harness.deliver(raw_message(1))
    (item,) = list(harness.mailbox.fetch_new())
    box = harness.imap_mailbox
    assert box._client is not None
    box._client.sock.shutdown(socket.SHUT_RDWR)  # e.g. a NAT box forgot the connection

    assert harness.mailbox.fetch(item.item_id).raw == raw_message(1)


def test_gives_up_with_transient_error_when_the_retry_fails_too(
    harness: ImapMailboxHarness,
) -> None:
    harness.deliver(raw_message(1))
    (item,) = list(harness.mailbox.fetch_new())
    box = harness.imap_mailbox
    kicks = [0]
    real_connect = box._connect

    def connect_then_drop() -> imaplib.IMAP4:
        client = real_connect()
        kicks[0] += 1
        client.sock.shutdown(socket.SHUT_RDWR)
        return client

    box.close()  # start from a fresh connection
    box._connect = connect_then_drop  # type: ignore[method-assign]

    with pytest.raises(TransientError, match="failed twice"):
        box.mark_processed(item.item_id)
    assert kicks == [2]


# ---------------------------------------------------------------------------- UIDVALIDITY


def change_uidvalidity(h: ImapMailboxHarness, how: str, raws: list[bytes]) -> None:
    if how == "doveadm":
        folder = h.imap_mailbox.folder
        status = h.servers.doveadm(
            "-f", "flow", "mailbox", "status", "-u", h.user.address, "uidvalidity", folder
        )
        new = int(status.split("=")[1]) + 1000
        h.servers.doveadm(
            "mailbox", "update", "--uid-validity", str(new), "-u", h.user.address, folder
        )
    else:  # the folder was deleted and restored from a backup: same mail, new numbers
        h.servers.kick(h.user)
        h.session.delete(_folder_arg(h.imap_mailbox.folder))
        h.session.create(_folder_arg(h.imap_mailbox.folder))
        for raw in raws:
            h.deliver(raw)


@pytest.mark.parametrize("how", ["doveadm", "restored"])
def test_uidvalidity_change_rescans_without_duplicates(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger, how: str
) -> None:
    box = make_mailbox(mail_servers, mail_user, ledger, folder="Concerns")
    h = ImapMailboxHarness(mail_servers, mail_user, box)
    h.session.create("Concerns")
    pending = [raw_message(1), raw_message(2, message_id="")]  # one without a Message-ID
    for raw in pending:
        h.deliver(raw)
    old = list(box.fetch_new())  # taken, still being worked on (not yet moved)

    change_uidvalidity(h, how, pending)
    h.deliver(raw_message(3))
    new = list(box.fetch_new())

    assert [parse(i.raw)["Subject"] for i in new] == ["Concern 3"]
    assert new[0].item_id.split(":")[0] != old[0].item_id.split(":")[0]
    # The old ids still work: found again by Message-ID (or the bytes' hash).
    for item in old:
        assert box.fetch(item.item_id).raw == item.raw
        box.mark_processed(item.item_id)
        box.mark_processed(item.item_id)
    assert (h.count("Concerns"), h.processed_count()) == (1, 2)
    assert list(box.fetch_new()) == []
    h.close()


def test_first_run_and_lost_cursor_read_everything_once(
    harness: ImapMailboxHarness, ledger: Ledger
) -> None:
    for n in range(2):
        harness.deliver(raw_message(n))
    assert len(list(harness.mailbox.fetch_new())) == 2

    ledger.delete(f"imap.cursor:{harness.imap_mailbox.account}")

    assert list(harness.mailbox.fetch_new()) == []


def test_fingerprint_is_the_message_id_else_a_hash() -> None:
    assert fingerprint(raw_message(1)) == "<concern.1@example.org>"
    assert fingerprint(b"no headers at all").startswith("sha256:")


# ---------------------------------------------------------------------------- real mail in


def test_non_ascii_subject_and_attachment_names_round_trip_through_smtp(
    harness: ImapMailboxHarness, mail_servers: MailServers, mail_user: MailUser
) -> None:
    msg = EmailMessage()
    msg["From"] = "Zoë Teacher <zoe.teacher@example.org>"
    msg["To"] = mail_user.address
    msg["Subject"] = "Überweisung – Sorge um einen Schüler ✓"
    msg["Message-ID"] = "<roundtrip.1@example.org>"
    msg.set_content("Zoë sagte: «ça suffit» – 日本語\n")
    msg.add_attachment(
        b"PK\x03\x04 not really a workbook",
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        filename="Antworten März.xlsx",
    )
    context = ssl.create_default_context(cafile=str(mail_servers.ca))
    with smtplib.SMTP(mail_servers.host, mail_servers.smtp_starttls_port, timeout=10) as smtp:
        smtp.starttls(context=context)
        smtp.login(mail_user.address, mail_user.password)
        smtp.send_message(msg, from_addr="zoe.teacher@example.org", to_addrs=[mail_user.address])

    (item,) = list(harness.mailbox.fetch_new())

    got = parse(item.raw)
    assert got["Subject"] == "Überweisung – Sorge um einen Schüler ✓"
    (attachment,) = list(got.iter_attachments())
    assert attachment.get_filename() == "Antworten März.xlsx"
    assert attachment.get_content() == b"PK\x03\x04 not really a workbook"
    body = got.get_body(preferencelist=("plain",))
    assert body is not None and "日本語" in body.get_content()


# ---------------------------------------------------------------------------- config


def imap_config(tmp_path: Path, **mailbox: Any) -> Any:
    section = {"backend": "imap", "host": "127.0.0.1", "username": "intake@example.org"}
    section.update(mailbox)
    data = merge(BASE_CONFIG, {"intake": {"mailbox": section}, "state": {"path": str(tmp_path)}})
    return parse_config(data, source=tmp_path / "config.toml")


def test_from_config_with_a_password_from_the_environment(
    tmp_path: Path,
    ledger: Ledger,
    mail_servers: MailServers,
    mail_user: MailUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREVENT_TEST_IMAP_PASSWORD", mail_user.password)
    config = imap_config(
        tmp_path,
        port=mail_servers.imaps_port,
        username=mail_user.address,
        password_env="PREVENT_TEST_IMAP_PASSWORD",
        ca_bundle=str(mail_servers.ca),
        timeout_seconds=5,
    )
    assert config.intake.mailbox is not None

    box = ImapMailbox.from_config(config.intake.mailbox, config, ledger)

    checks = list(box.checks())
    assert [c.ok for c in checks] == [True, True, True], checks
    assert "MOVE" in checks[0].detail
    box.close()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({}, "intake.mailbox.password_env: set password_env"),
        ({"password_env": "PREVENT_TEST_UNSET"}, "PREVENT_TEST_UNSET is not set"),
        ({"oauth2": True}, "intake.mailbox.oauth2: .*no \\[m365\\] section"),
    ],
)
def test_config_errors_name_the_key(
    tmp_path: Path,
    ledger: Ledger,
    section: dict[str, Any],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREVENT_TEST_UNSET", raising=False)
    config = imap_config(tmp_path, **section)

    with pytest.raises(ConfigError, match=message):
        ImapMailbox.from_config(config.intake.mailbox, config, ledger)


def test_needs_exactly_one_kind_of_credential(ledger: Ledger) -> None:
    provider: Callable[[], str] = lambda: "t"  # noqa: E731
    with pytest.raises(ConfigError, match="exactly one"):
        ImapMailbox(ledger, host="h", username="u", password="p", token_provider=provider)


def test_oauth2_from_config_gets_the_token_from_msal_and_logs_in(
    tmp_path: Path,
    ledger: Ledger,
    mail_servers: MailServers,
    mail_user: MailUser,
    graph: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """[m365] → msal (client credentials, Outlook scope) → XOAUTH2 → Dovecot.

    The Graph emulator plays the Microsoft sign-in host; Dovecot accepts the token it issued
    because the test registers it with the servers' token check (as Exchange would accept it).
    """
    from tests.connectors.harness_graph import CLIENT_ID, SECRET, SECRET_ENV, m365_section

    graph.add_app(CLIENT_ID, secret=SECRET)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    section = {
        "backend": "imap",
        "host": mail_servers.host,
        "port": mail_servers.imaps_port,
        "username": mail_user.address,
        "oauth2": True,
        "ca_bundle": str(mail_servers.ca),
        "timeout_seconds": 10,
    }
    data = merge(
        BASE_CONFIG,
        {
            "intake": {"mailbox": section},
            "m365": m365_section(graph),
            "state": {"path": str(tmp_path)},
        },
    )
    config = parse_config(data, source=tmp_path / "config.toml")
    box = ImapMailbox.from_config(config.intake.mailbox, config, ledger)
    _OPEN.append(box)
    assert box._token_provider is not None
    token = box._token_provider()
    mail_servers.accept_token(mail_user.address, token)
    h = ImapMailboxHarness(mail_servers, mail_user, box)
    h.deliver(raw_message(1))

    assert len(list(box.fetch_new())) == 1
    h.close()


# ---------------------------------------------------------------------------- batches


class CountingImapMailbox(ImapMailbox):
    """Counts the SELECTs and the message FETCHes a cycle sends, and the bytes per batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.selects = 0
        self.batches: list[tuple[int, int]] = []  # (messages, bytes)

    def _select(self, client: imaplib.IMAP4, folder: str) -> int:
        self.selects += 1
        return super()._select(client, folder)

    def _fetch_many(self, client: imaplib.IMAP4, validity: int, uids: Any) -> Any:
        got = super()._fetch_many(client, validity, uids)
        self.batches.append((len(got), sum(len(raw) for raw, _ in got.values())))
        return got


def test_a_first_run_reads_the_folder_in_a_few_batches_with_one_select(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> None:
    box = make_mailbox(mail_servers, mail_user, ledger, cls=CountingImapMailbox)
    assert isinstance(box, CountingImapMailbox)
    h = ImapMailboxHarness(mail_servers, mail_user, box)
    raws = [raw_message(n) for n in range(150)]
    for raw in raws:
        h.deliver(raw)

    items = list(box.fetch_new())

    assert [i.raw for i in items] == raws  # all, in order, byte for byte
    assert box.selects == 1
    # 1, 2, 4 … 64 messages, then batch_messages (100) at a time: 8 FETCHes, not 150.
    assert [n for n, _ in box.batches] == [1, 2, 4, 8, 16, 32, 64, 23]
    assert flags_in(h, "INBOX") == [set()] * 150  # BODY.PEEK: nothing marked \Seen
    assert list(box.fetch_new()) == []
    h.close()


def test_batches_stay_within_the_byte_bound(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> None:
    box = make_mailbox(mail_servers, mail_user, ledger, cls=CountingImapMailbox)
    assert isinstance(box, CountingImapMailbox)
    box.batch_bytes = 3_000
    h = ImapMailboxHarness(mail_servers, mail_user, box)
    big = raw_message(99, subject="x" * 10) + b"y" * 5_000 + b"\r\n"
    raws = [raw_message(n) for n in range(12)] + [big, raw_message(100)]
    for raw in raws:
        h.deliver(raw)

    items = list(box.fetch_new())

    assert [i.raw for i in items] == raws
    # Every batch is within the bound, except the one message bigger than it, read alone.
    assert all(size <= 3_000 or n == 1 for n, size in box.batches), box.batches
    assert (1, len(big)) in box.batches
    h.close()


def test_a_crash_mid_batch_replays_the_rest_and_skips_nothing(
    mail_servers: MailServers, mail_user: MailUser, ledger: Ledger
) -> None:
    box = make_mailbox(mail_servers, mail_user, ledger)
    h = ImapMailboxHarness(mail_servers, mail_user, box)
    for n in range(10):
        h.deliver(raw_message(n))
    gen = box.fetch_new()
    first = [next(gen).item_id for _ in range(6)]  # batches of 1, 2, 4: the 6th is in the 3rd
    gen.close()  # the process died while handling the 6th

    again = make_mailbox(mail_servers, mail_user, ledger)
    replay = [i.item_id for i in again.fetch_new()]

    # Saved as taken up to the last message the consumer finished: the 6th comes again.
    assert first[5] in replay
    assert set(first) | set(replay) == {f"{first[0].split(':')[0]}:{u}" for u in range(1, 11)}
    h.close()


def test_fetch_answers_are_read_whatever_the_order_of_their_items() -> None:
    body = b"From: a@example.org\r\n\r\nHello\r\n"
    data: list[Any] = [
        (b'1 (UID 7 INTERNALDATE "02-Feb-2026 09:30:00 +0000" BODY[] {27}', body),
        b")",
        b"2 (FLAGS (\\Seen) UID 9)",  # unsolicited: a person read another message
        (b'3 (INTERNALDATE "03-Feb-2026 10:00:00 +0000" BODY[] {27}', body),
        b" UID 12)",  # this server puts UID after the literal
    ]

    got = _fetched(data)

    assert sorted(got) == [7, 12]
    assert got[12][0] == body
    assert got[12][1] is not None and got[12][1].day == 3


def test_uid_sets_are_ranges() -> None:
    assert _uid_set([5, 1, 2, 3, 7, 9, 10]) == "1:3,5,7,9:10"
    assert _uid_set([4]) == "4"
