"""The SMTP sender against the real aiosmtpd on 127.0.0.1 (see tests/servers.py).

What went out is read from the server's spool (by envelope sender) or, for the full loop, from
the recipient's mailbox over IMAP.
"""

from __future__ import annotations

import email.utils
import re
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from connectors.base import OutboundMessage
from connectors.imap import ImapMailbox
from connectors.smtp import SmtpSender
from service.config import parse_config
from service.errors import ConfigError, PermanentError, TransientError
from service.ledger import Ledger
from tests.conftest import BASE_CONFIG, merge
from tests.connectors.harness import parse
from tests.connectors.harness_smtp import SmtpSenderHarness, make_sender
from tests.servers import (
    REFUSE_PERMANENT_DOMAIN,
    REFUSE_TEMPORARY_DOMAIN,
    MailServers,
    MailUser,
)

pytestmark = pytest.mark.servers

NO_LEDGER: Any = None  # the SMTP sender keeps no state in the ledger


def message(n: int = 1, **changes: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "message_id": f"<alert.{n}@example.org>",
        "sender": "safeguarding@example.org",
        "to": ("dsp@example.org",),
        "subject": f"Neue Meldung PRV-2026-000{n} – Schüler ✓",
        "text": "A concern was logged. Zoë\n",
        "html": "<p>A concern was logged. <b>Zoë</b></p>",
        "date": datetime(2026, 2, 2, 9, 30, tzinfo=UTC),
    }
    fields.update(changes)
    return OutboundMessage(**fields)


@pytest.mark.parametrize(
    ("security", "oauth2"),
    [("starttls", False), ("tls", False), ("tls", True), ("starttls", True)],
    ids=["starttls-password", "tls-password", "tls-xoauth2", "starttls-xoauth2"],
)
def test_sends_over_tls_with_auth(
    mail_servers: MailServers, mail_user: MailUser, security: str, oauth2: bool
) -> None:
    h = SmtpSenderHarness(
        mail_servers, make_sender(mail_servers, mail_user, security=security, oauth2=oauth2)
    )

    h.sender.send(message())

    ((envelope, sent),) = mail_servers.sent_by(h.smtp.envelope_from)
    assert envelope["tls"] is True
    assert envelope["auth_user"] == mail_user.address
    assert envelope["rcpt_tos"] == ["dsp@example.org"]
    assert sent["Message-ID"] == "<alert.1@example.org>"


def test_what_goes_out_has_the_headers_and_both_parts(
    mail_servers: MailServers, mail_user: MailUser
) -> None:
    sender = make_sender(mail_servers, mail_user)

    sender.send(message(cc=("deputy.dsp@example.org",), high_importance=True))

    ((envelope, sent),) = mail_servers.sent_by(sender.envelope_from)
    assert envelope["rcpt_tos"] == ["dsp@example.org", "deputy.dsp@example.org"]
    assert sent["Subject"] == "Neue Meldung PRV-2026-0001 – Schüler ✓"
    assert sent["Auto-Submitted"] == "auto-generated"
    assert sent["Importance"] == "High"
    assert email.utils.parsedate_to_datetime(sent["Date"]) == datetime(
        2026, 2, 2, 9, 30, tzinfo=UTC
    )
    assert sent.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in sent.iter_parts()] == ["text/plain", "text/html"]
    assert "Bcc" not in sent


def test_envelope_sender_is_the_intake_address_from_config(
    tmp_path: Path, mail_servers: MailServers, mail_user: MailUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREVENT_TEST_SMTP_PASSWORD", mail_user.password)
    config = smtp_config(
        tmp_path,
        port=mail_servers.smtp_starttls_port,
        username=mail_user.address,
        password_env="PREVENT_TEST_SMTP_PASSWORD",
        ca_bundle=str(mail_servers.ca),
    )
    sender = SmtpSender.from_config(config.sending.sender, config, NO_LEDGER)
    checks = list(sender.checks())

    sender.send(message(sender="Safeguarding <safeguarding@example.org>"))

    assert sender.envelope_from == "safeguarding@example.org"
    assert [c.ok for c in checks] == [True] and "STARTTLS" in checks[0].detail
    sent = [m for _, m in mail_servers.sent_by("safeguarding@example.org")]
    assert "<alert.1@example.org>" in [m["Message-ID"] for m in sent]


def test_alert_arrives_in_the_recipients_mailbox_intact(
    tmp_path: Path, mail_servers: MailServers, mail_user: MailUser
) -> None:
    """SMTP → Maildir → IMAP: what the DSP's mail client would show."""
    dsp = mail_servers.add_user("dsp")
    sender = make_sender(mail_servers, mail_user, security="tls")

    sender.send(message(to=(dsp.address,)))

    ledger = Ledger(tmp_path / "ledger.sqlite3")
    box = ImapMailbox(
        ledger,
        host=mail_servers.host,
        port=mail_servers.imaps_port,
        username=dsp.address,
        password=dsp.password,
        ca_bundle=mail_servers.ca,
        timeout_seconds=10,
    )
    (item,) = list(box.fetch_new())
    box.close()
    ledger.close()
    got = parse(item.raw)
    assert got["Subject"] == "Neue Meldung PRV-2026-0001 – Schüler ✓"
    assert got["Message-ID"] == "<alert.1@example.org>"
    html = got.get_body(preferencelist=("html",))
    assert html is not None and "<b>Zoë</b>" in html.get_content()


def test_starttls_is_required_never_a_quiet_fallback_to_clear_text(
    mail_servers: MailServers, mail_user: MailUser
) -> None:
    # The plain port does not offer STARTTLS (but would take AUTH and mail in clear).
    sender = make_sender(mail_servers, mail_user, security="starttls", port=mail_servers.smtp_port)

    with pytest.raises(PermanentError, match=r"does not offer STARTTLS.*nothing was sent in clear"):
        sender.send(message())

    assert mail_servers.sent_by(sender.envelope_from) == []


def test_plain_relay_without_auth(mail_servers: MailServers) -> None:
    sender = make_sender(mail_servers, None, security="none")

    sender.send(message())

    ((envelope, _),) = mail_servers.sent_by(sender.envelope_from)
    assert envelope["tls"] is False and envelope["auth_user"] is None


# A UK keyboard's "£" (or any non-ASCII character) in a password must reach the server as
# UTF-8 (AUTHENTICATE/AUTH PLAIN), not crash the client's ASCII-only LOGIN.
@pytest.mark.parametrize("wrong", ["not-the-password", "not-the-pa££wörd"], ids=["ascii", "utf8"])
def test_wrong_password_is_permanent_and_names_the_fix(
    wrong: str, mail_servers: MailServers, mail_user: MailUser
) -> None:
    sender = make_sender(
        mail_servers,
        mail_user,
        password=wrong,
        credential_hint="the password in $PREVENT_SMTP_PASSWORD",
    )

    with pytest.raises(PermanentError) as caught:
        sender.send(message())

    text = str(caught.value)
    assert "refused the login" in text and "$PREVENT_SMTP_PASSWORD" in text
    assert wrong not in text
    assert mail_servers.sent_by(sender.envelope_from) == []


def test_bad_oauth_token_is_permanent(mail_servers: MailServers, mail_user: MailUser) -> None:
    sender = make_sender(mail_servers, mail_user, security="tls", token_provider=lambda: "stale")

    with pytest.raises(PermanentError, match=r"refused the OAuth token.*SMTP\.SendAsApp"):
        sender.send(message())


def test_untrusted_certificate_is_permanent(mail_servers: MailServers, mail_user: MailUser) -> None:
    for security in ("tls", "starttls"):
        sender = make_sender(mail_servers, mail_user, security=security, ca_bundle=None)
        with pytest.raises(PermanentError, match=r"certificate .*sending\.sender\.ca_bundle"):
            sender.send(message())


def test_permanently_refused_recipients_name_only_the_domain(
    mail_servers: MailServers, mail_user: MailUser
) -> None:
    sender = make_sender(mail_servers, mail_user)

    with pytest.raises(PermanentError) as caught:
        sender.send(message(to=(f"alex.morgan@{REFUSE_PERMANENT_DOMAIN}",)))

    assert REFUSE_PERMANENT_DOMAIN in str(caught.value)
    assert "alex.morgan" not in str(caught.value)


def test_temporarily_refused_recipients_are_transient(
    mail_servers: MailServers, mail_user: MailUser
) -> None:
    sender = make_sender(mail_servers, mail_user)

    with pytest.raises(TransientError, match=REFUSE_TEMPORARY_DOMAIN):
        sender.send(message(to=(f"sam@{REFUSE_TEMPORARY_DOMAIN}",)))


def test_partly_refused_still_delivers_to_the_rest_and_says_so(
    mail_servers: MailServers, mail_user: MailUser, caplog: pytest.LogCaptureFixture
) -> None:
    sender = make_sender(mail_servers, mail_user)

    sender.send(message(to=("dsp@example.org", f"alex.morgan@{REFUSE_PERMANENT_DOMAIN}")))

    ((envelope, _),) = mail_servers.sent_by(sender.envelope_from)
    assert envelope["rcpt_tos"] == ["dsp@example.org"]
    assert REFUSE_PERMANENT_DOMAIN in caplog.text and "alex.morgan" not in caplog.text


class _Sink:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def test_a_non_ascii_address_without_smtputf8_is_permanent_and_nothing_is_sent() -> None:
    # A reporter writing from an internationalised address (RFC 6531) to a relay (a real
    # aiosmtpd) that does not offer SMTPUTF8: nothing goes out, and a retry cannot change that.
    sink = _Sink()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Controller(sink, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    server.start()
    try:
        sender = SmtpSender(
            host="127.0.0.1", port=port, security="none", envelope_from="safeguarding@example.org"
        )
        with pytest.raises(PermanentError, match="SMTPUTF8") as caught:
            sender.send(message(to=("zoë@example.org",)))
    finally:
        server.stop()

    assert "zoë" not in str(caught.value)
    assert sink.envelopes == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_password_with_non_ascii_characters_logs_in(mechanism: str) -> None:
    # A real aiosmtpd on a free port whose account's password has a "£" and an umlaut; it
    # offers one AUTH mechanism (Exchange Server's receive connectors offer LOGIN, not PLAIN).
    password = "Pa££wörd-2026"
    sink = _Sink()

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,  # AUTH offered in clear: loopback only (a wrong one is 535)
        auth_exclude_mechanism=["PLAIN" if mechanism == "LOGIN" else "LOGIN"],
    )
    server.start()
    try:
        SmtpSender(
            host="127.0.0.1",
            port=port,
            security="none",
            envelope_from="safeguarding@example.org",
            username="safeguarding@example.org",
            password=password,
        ).send(message())
    finally:
        server.stop()

    assert [e.rcpt_tos for e in sink.envelopes] == [["dsp@example.org"]]


def test_resend_goes_again_with_the_same_message_id(
    mail_servers: MailServers, mail_user: MailUser
) -> None:
    sender = make_sender(mail_servers, mail_user)

    sender.send(message())
    sender.send(message())  # SMTP cannot ask whether the first went through

    ids = [m["Message-ID"] for _, m in mail_servers.sent_by(sender.envelope_from)]
    assert ids == ["<alert.1@example.org>", "<alert.1@example.org>"]


def test_connection_refused_is_transient_and_nothing_is_sent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = SmtpSender(host="127.0.0.1", port=port, security="none", envelope_from="a@example.org")

    with pytest.raises(TransientError, match="nothing was sent"):
        sender.send(message())


def test_a_silent_server_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        sender = SmtpSender(
            host="127.0.0.1",
            port=listener.getsockname()[1],
            security="none",
            envelope_from="a@example.org",
            timeout_seconds=0.3,
        )
        with pytest.raises(TransientError, match="timed out"):
            sender.send(message())


# ---------------------------------------------------------------------------- config


def smtp_config(tmp_path: Path, **sender: Any) -> Any:
    section = {"backend": "smtp", "host": "127.0.0.1"}
    section.update(sender)
    data = merge(BASE_CONFIG, {"sending": {"sender": section}, "state": {"path": str(tmp_path)}})
    return parse_config(data, source=tmp_path / "config.toml")


@pytest.mark.parametrize(
    ("section", "message_re"),
    [
        ({"username": "a@example.org"}, r"sending\.sender\.password_env: set password_env"),
        ({"password_env": "PREVENT_TEST_UNSET"}, "PREVENT_TEST_UNSET is not set"),
        ({"oauth2": True, "username": "a@example.org"}, r"no \[m365\] section"),
    ],
)
def test_config_errors_name_the_key(
    tmp_path: Path, section: dict[str, Any], message_re: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREVENT_TEST_UNSET", raising=False)
    config = smtp_config(tmp_path, **section)

    with pytest.raises(ConfigError, match=message_re):
        SmtpSender.from_config(config.sending.sender, config, NO_LEDGER)


def test_oauth2_from_config_gets_the_token_from_msal_and_sends(
    tmp_path: Path,
    mail_servers: MailServers,
    mail_user: MailUser,
    graph: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """[m365] → msal (the Graph emulator as sign-in host) → XOAUTH2 → aiosmtpd."""
    from tests.connectors.harness_graph import CLIENT_ID, SECRET, SECRET_ENV, m365_section

    graph.add_app(CLIENT_ID, secret=SECRET)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    config = parse_config(
        merge(
            BASE_CONFIG,
            {
                "sending": {
                    "sender": {
                        "backend": "smtp",
                        "host": mail_servers.host,
                        "port": mail_servers.smtps_port,
                        "security": "tls",
                        "username": mail_user.address,
                        "oauth2": True,
                        "ca_bundle": str(mail_servers.ca),
                    }
                },
                "m365": m365_section(graph),
                "state": {"path": str(tmp_path)},
            },
        ),
        source=tmp_path / "config.toml",
    )
    sender = SmtpSender.from_config(config.sending.sender, config, NO_LEDGER)
    assert sender._token_provider is not None
    mail_servers.accept_token(mail_user.address, sender._token_provider())

    sender.send(message(n=7))

    sent = [m for _, m in mail_servers.sent_by("safeguarding@example.org")]
    assert "<alert.7@example.org>" in [m["Message-ID"] for m in sent]


def test_oauth2_token_refused_by_the_sign_in_host_is_permanent(
    tmp_path: Path, graph: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.mail_auth import m365_token_provider
    from tests.connectors.harness_graph import CLIENT_ID, SECRET, SECRET_ENV, m365_section

    graph.add_app(CLIENT_ID, secret=SECRET)
    monkeypatch.setenv(SECRET_ENV, "not-the-secret")
    config = parse_config(
        merge(BASE_CONFIG, {"m365": m365_section(graph), "state": {"path": str(tmp_path)}}),
        source=tmp_path / "config.toml",
    )
    assert config.m365 is not None
    provider = m365_token_provider(config.m365)

    with pytest.raises(
        PermanentError, match=r"mail \(IMAP/SMTP\) token.*PREVENT_TEST_GRAPH_SECRET"
    ):
        provider()


def test_a_login_without_tls_over_the_network_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Constructing connects to nothing; the admin sees the warning before any send."""
    secret = "s3cret-example-password"
    SmtpSender(
        host="relay.example.org",
        security="none",
        username="svc",
        password=secret,
        envelope_from="safeguarding@example.org",
    )
    assert "password goes over the network in clear" in caplog.text
    assert secret not in caplog.text
    caplog.clear()
    SmtpSender(host="relay.example.org", security="none", envelope_from="a@example.org")
    SmtpSender(
        host="127.0.0.1", security="none", username="x", password="y", envelope_from="a@example.org"
    )
    assert "in clear" not in caplog.text


# ---------------------------------------------------------------------------- check


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("security", "port", "fix"),
    [
        (
            "starttls",
            "closed",
            r"nothing accepts connections on 127\.0\.0\.1:\d+: check "
            r"sending\.sender\.host and sending\.sender\.port \(usually port 587",
        ),
        (
            "tls",
            "smtp_starttls_port",
            r"TLS handshake failed: .*probably expects STARTTLS: "
            r'set security = "starttls"',
        ),
        ("starttls", "smtps_port", r'no SMTP greeting .* within 2s\. .*set security = "tls"'),
    ],
    ids=["connection-refused", "tls-on-the-starttls-port", "starttls-on-the-tls-port"],
)
def test_check_names_what_it_tried_and_the_fix(
    mail_servers: MailServers, mail_user: MailUser, security: str, port: str, fix: str
) -> None:
    number = _free_port() if port == "closed" else getattr(mail_servers, port)
    sender = make_sender(mail_servers, mail_user, security=security, port=number, timeout_seconds=2)

    [line] = list(sender.checks(send_test_to="admin@example.org"))

    mode = {"tls": "TLS from the start", "starttls": "STARTTLS"}[security]
    assert not line.ok
    assert line.name == f"send via 127.0.0.1:{number} ({mode})"
    assert re.search(fix, line.detail), line.detail
    assert mail_servers.sent_by(sender.envelope_from) == []


def test_check_with_a_wrong_password_names_the_mode_and_the_fix(
    mail_servers: MailServers, mail_user: MailUser
) -> None:
    sender = make_sender(mail_servers, mail_user, password="not-it")

    [line] = list(sender.checks(send_test_to="admin@example.org"))

    assert not line.ok and line.name.endswith("(STARTTLS)")
    assert "refused the login" in line.detail and "sending.sender.username" in line.detail


def test_check_send_test_sends_one_message(mail_servers: MailServers, mail_user: MailUser) -> None:
    sender = make_sender(mail_servers, mail_user)

    lines = list(sender.checks(send_test_to="admin@example.org"))

    assert [line.ok for line in lines] == [True, True]
    assert lines[1].detail.startswith("sent to admin@example.org")
    ((envelope, sent),) = mail_servers.sent_by(sender.envelope_from)
    assert envelope["rcpt_tos"] == ["admin@example.org"]
    assert sent["Subject"] == "prevent-service: test message"
