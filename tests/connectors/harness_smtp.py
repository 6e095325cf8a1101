"""Contract-test harness for the SMTP sender, against the real aiosmtpd on 127.0.0.1.

The sender logs in over STARTTLS as a fresh user with a unique envelope sender; ``sent()``
reads what the server accepted from that envelope sender (its spool), so tests never see each
other's mail. SMTP cannot ask whether an earlier attempt went through: ``idempotent_resend`` is
False (the stable Message-ID is what lets a receiver recognise the repeat).
"""

from __future__ import annotations

import secrets
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from connectors.base import MailSender
from connectors.smtp import SmtpSender
from tests.servers import MailServers, MailUser


def make_sender(
    servers: MailServers,
    user: MailUser | None,
    *,
    security: str = "starttls",
    envelope_from: str | None = None,
    oauth2: bool = False,
    **kwargs: Any,
) -> SmtpSender:
    port = {
        "starttls": servers.smtp_starttls_port,
        "tls": servers.smtps_port,
        "none": servers.smtp_port,
    }[security]
    credentials: dict[str, Any] = {}
    if user is not None:
        credentials["username"] = user.address
        if oauth2:
            credentials["token_provider"] = lambda: user.token
        else:
            credentials["password"] = user.password
    options: dict[str, Any] = {
        "host": servers.host,
        "port": port,
        "security": security,
        "envelope_from": envelope_from or f"intake-{secrets.token_hex(5)}@example.org",
        "ca_bundle": servers.ca,
        "timeout_seconds": 10,
        **credentials,
        **kwargs,
    }
    return SmtpSender(**options)


class SmtpSenderHarness:
    idempotent_resend = False

    def __init__(self, servers: MailServers, sender: SmtpSender) -> None:
        self.servers = servers
        self.smtp = sender
        self.sender: MailSender = sender

    def envelopes(self) -> list[dict[str, Any]]:
        return [envelope for envelope, _ in self.servers.sent_by(self.smtp.envelope_from)]

    def sent(self) -> list[EmailMessage]:
        return [message for _, message in self.servers.sent_by(self.smtp.envelope_from)]

    def close(self) -> None:
        self.smtp.close()


def smtp_sender(tmp_path: Path, request: pytest.FixtureRequest) -> SmtpSenderHarness:
    servers: MailServers = request.getfixturevalue("mail_servers")
    user = servers.add_user("sender")
    return SmtpSenderHarness(servers, make_sender(servers, user))
