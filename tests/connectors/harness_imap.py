"""Contract-test harnesses for the IMAP mailbox, against the real Dovecot on 127.0.0.1.

Each harness gets a fresh mailbox user, so tests never see each other's mail. ``deliver``
APPENDs to the intake folder (as a delivery agent would); counts come from a separate IMAP
session, never from the backend under test. ``imap_nomove`` runs the same contract with the
server's MOVE capability ignored, so the COPY + \\Deleted + UID EXPUNGE path is proven too.
"""

from __future__ import annotations

import contextlib
import imaplib
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Mailbox
from connectors.imap import ImapMailbox, _folder_arg
from service.ledger import Ledger
from tests.servers import MailServers, MailUser


class NoMoveImapMailbox(ImapMailbox):
    """As if the server had no MOVE (RFC 6851): the fallback path against a real server."""

    def has_move(self) -> bool:
        return False


def make_mailbox(
    servers: MailServers,
    user: MailUser,
    ledger: Ledger,
    *,
    cls: type[ImapMailbox] = ImapMailbox,
    security: str = "tls",
    oauth2: bool = False,
    **kwargs: Any,
) -> ImapMailbox:
    port = servers.imaps_port if security == "tls" else servers.imap_port
    credentials: dict[str, Any] = (
        {"token_provider": lambda: user.token} if oauth2 else {"password": user.password}
    )
    if "token_provider" in kwargs:
        credentials = {}
    options: dict[str, Any] = {
        "host": servers.host,
        "port": port,
        "security": security,
        "username": user.address,
        "ca_bundle": servers.ca,
        "timeout_seconds": 10,
        **credentials,
        **kwargs,
    }
    return cls(ledger, **options)


class ImapMailboxHarness:
    def __init__(self, servers: MailServers, user: MailUser, mailbox: ImapMailbox) -> None:
        self.servers = servers
        self.user = user
        self.imap_mailbox = mailbox
        self.mailbox: Mailbox = mailbox
        self._session: imaplib.IMAP4 | None = None
        self._epoch = int(time.time()) - 86_400
        self._delivered = 0

    @property
    def session(self) -> imaplib.IMAP4:
        """The test side's own IMAP session (reopened if the server dropped it)."""
        if self._session is not None:
            try:
                self._session.noop()
            except (imaplib.IMAP4.abort, OSError):
                with contextlib.suppress(OSError, imaplib.IMAP4.error):
                    self._session.shutdown()
                self._session = None
        if self._session is None:
            self._session = self.servers.imap(self.user)
        return self._session

    def deliver(self, raw: bytes, folder: str | None = None) -> None:
        # One second apart, as deliveries are: without MOVE, a byte-identical copy with the
        # same INTERNALDATE as one already in Processed is taken for an earlier cut-off copy
        # and kept once (see ImapMailbox._copied_already).
        self._delivered += 1
        when = imaplib.Time2Internaldate(self._epoch + self._delivered)
        typ, data = self.session.append(
            _folder_arg(folder or self.imap_mailbox.folder), "", when, raw
        )
        assert typ == "OK", data

    def count(self, folder: str) -> int:
        typ, data = self.session.status(_folder_arg(folder), "(MESSAGES)")
        if typ != "OK":
            return 0  # no such folder (yet)
        # Sample: [b'"Processed" (MESSAGES 1)']
        return int(data[0].rsplit(b"MESSAGES ", 1)[1].rstrip(b")"))

    def inbox_count(self) -> int:
        return self.count(self.imap_mailbox.folder)

    def processed_count(self) -> int:
        return self.count(self.imap_mailbox.processed_folder)

    def quarantined_count(self) -> int:
        return self.count(self.imap_mailbox.quarantine_folder)

    def close(self) -> None:
        self.imap_mailbox.close()
        if self._session is not None:
            try:
                with contextlib.suppress(imaplib.IMAP4.error, OSError):
                    self._session.logout()
            finally:  # logout() leaves the socket open when the server already said BYE
                with contextlib.suppress(imaplib.IMAP4.error, OSError):
                    self._session.shutdown()
            self._session = None
        self.imap_mailbox.ledger.close()


def _harness(
    tmp_path: Path, request: pytest.FixtureRequest, cls: type[ImapMailbox]
) -> ImapMailboxHarness:
    servers: MailServers = request.getfixturevalue("mail_servers")
    user = servers.add_user("intake")
    ledger = Ledger(tmp_path / "imap-ledger.sqlite3")
    return ImapMailboxHarness(servers, user, make_mailbox(servers, user, ledger, cls=cls))


def imap_mailbox(tmp_path: Path, request: pytest.FixtureRequest) -> ImapMailboxHarness:
    return _harness(tmp_path, request, ImapMailbox)


def imap_nomove_mailbox(tmp_path: Path, request: pytest.FixtureRequest) -> ImapMailboxHarness:
    return _harness(tmp_path, request, NoMoveImapMailbox)
