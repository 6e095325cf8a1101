"""SMTP sender (standard library ``smtplib``): TLS, AUTH, timeouts, errors a person can act on.

* ``security = "tls"``: implicit TLS (``SMTP_SSL``, port 465). ``"starttls"`` (port 587):
  STARTTLS is *required*: a server that does not offer it is an error, never a quiet fallback to
  clear text. ``"none"`` (port 25): for an internal relay only.
* AUTH with a password from the environment, or XOAUTH2 with a token from a callable (msal for
  Microsoft 365, see ``connectors.mail_auth.m365_token_provider``); no AUTH when no username is set.
* The envelope sender is the config's ``intake.address``; the message is
  ``OutboundMessage.to_email()`` (stable Message-ID, Date, ``Auto-Submitted: auto-generated``,
  text + HTML).
* SMTP cannot ask whether an earlier attempt went through, so a resend after an unclear failure
  may deliver twice; the stable Message-ID lets the receiving side (and people) see it is the
  same message. A failure *before* the message data was handed over is retried once at once.
* 4xx replies → ``TransientError``; 5xx → ``PermanentError`` naming only recipient domains.
"""

from __future__ import annotations

import base64
import logging
import smtplib
import socket
import ssl
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.base import CheckResult, OutboundMessage
from connectors.mail_auth import (
    TokenProvider,
    credentials_from_config,
    is_loopback,
    tls_context,
    xoauth2_string,
)
from service.config import SmtpSenderConfig
from service.errors import ConfigError, PermanentError, PreventServiceError, TransientError

if TYPE_CHECKING:
    from service.config import Config
    from service.ledger import Ledger

log = logging.getLogger("prevent_service.smtp")

DEFAULT_PORTS = {"tls": 465, "starttls": 587, "none": 25}


class _BeforeData(Exception):
    """Internal: the connection failed before the message was handed over; safe to retry."""


def _domains(addresses: Iterable[str]) -> str:
    names = sorted({a.rpartition("@")[2].lower() for a in addresses})
    return ", ".join(names) or "(none)"


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:120]


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())[:160]}"


class SmtpSender:
    backend = "smtp"

    def __init__(
        self,
        *,
        host: str,
        envelope_from: str,
        port: int | None = None,
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        token_provider: TokenProvider | None = None,
        ca_bundle: Path | str | None = None,
        timeout_seconds: float = 60.0,
        credential_hint: str = "the password",
        local_hostname: str | None = None,
    ) -> None:
        if security not in DEFAULT_PORTS:
            raise ConfigError(f"unknown security {security!r}", key="sending.sender.security")
        if username and password is None and token_provider is None:
            raise ConfigError(
                "a username needs password_env or oauth2 = true", key="sending.sender.username"
            )
        self.host = host
        self.port = port or DEFAULT_PORTS[security]
        self.security = security
        self.envelope_from = envelope_from
        self.username = username
        self._password = password
        self._token_provider = token_provider
        self._credential_hint = credential_hint
        self.timeout = timeout_seconds
        self._local_hostname = local_hostname
        self._tls = tls_context(ca_bundle) if security != "none" else None
        if security == "none" and username and not is_loopback(host):
            log.warning(
                "smtp: security = none to %s with a login: the password goes over the network "
                "in clear; use starttls or tls",
                host,
            )

    @classmethod
    def from_config(cls, section: SmtpSenderConfig, config: Config, ledger: Ledger) -> SmtpSender:
        credentials = credentials_from_config(
            section, config, key="sending.sender", username_optional=True
        )
        return cls(
            host=section.host,
            port=section.port,
            security=section.security,
            envelope_from=config.intake.address,
            username=section.username,
            password=credentials.password,
            token_provider=credentials.token_provider,
            ca_bundle=section.ca_bundle,
            timeout_seconds=section.timeout_seconds,
            credential_hint=credentials.hint,
        )

    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    # -- connecting ---------------------------------------------------------------------

    def _open(self) -> smtplib.SMTP:
        """A connected, secured and authenticated session. Raises ``_BeforeData`` for
        connection-level failures (worth one immediate retry) and our errors otherwise."""
        try:
            if self.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self._local_hostname,
                    timeout=self.timeout,
                    context=self._tls,
                )
            else:
                client = smtplib.SMTP(
                    self.host, self.port, local_hostname=self._local_hostname, timeout=self.timeout
                )
        except ssl.SSLCertVerificationError as exc:
            raise self._cert_error(exc) from exc
        except smtplib.SMTPConnectError as exc:
            raise self._reply_error(exc.smtp_code, exc.smtp_error, "connecting") from exc
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            # A timeout while waiting for the greeting shows as SMTPServerDisconnected("Connection
            # unexpectedly closed: timed out"): keep the text, it says which.
            raise _BeforeData(f"connect: {type(exc).__name__}: {_short(exc)}") from exc
        try:
            client.ehlo()
            if self.security == "starttls":
                if not client.has_extn("starttls"):
                    raise PermanentError(
                        f"the SMTP server {self._where()} does not offer STARTTLS, and "
                        'sending.sender.security = "starttls" requires it: nothing was sent in '
                        'clear. Use security = "tls" (port 465) or ask the mail admin'
                    )
                client.starttls(context=self._tls)
                client.ehlo()
            if self.username:
                self._auth(client)
        except PreventServiceError:
            _close(client)
            raise
        except ssl.SSLCertVerificationError as exc:
            _close(client)
            raise self._cert_error(exc) from exc
        except smtplib.SMTPAuthenticationError as exc:
            _close(client)
            raise self._auth_error(exc) from exc
        except smtplib.SMTPNotSupportedError as exc:
            _close(client)
            raise PermanentError(
                f"the SMTP server {self._where()} does not support AUTH here ({exc}): check "
                "sending.sender.security (many servers offer AUTH only after TLS)"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            _close(client)
            raise self._reply_error(exc.smtp_code, exc.smtp_error, "setting up") from exc
        except (OSError, smtplib.SMTPException) as exc:
            _close(client)
            raise _BeforeData(f"setup: {type(exc).__name__}: {_short(exc)}") from exc
        return client

    def _auth(self, client: smtplib.SMTP) -> None:
        assert self.username
        if self._token_provider is None:
            assert self._password is not None
            if not (self.username + self._password).isascii():
                self._auth_plain_utf8(client)
                return
            try:
                client.login(self.username, self._password)
            except (smtplib.SMTPResponseException, smtplib.SMTPServerDisconnected):
                raise
            except smtplib.SMTPNotSupportedError:
                raise
            except smtplib.SMTPException as exc:  # "No suitable authentication method found."
                raise PermanentError(
                    f"the SMTP server {self._where()} offers no AUTH method this service can use "
                    f"with a password ({exc}): check sending.sender.security"
                ) from exc
            return
        token = self._token_provider()
        blob = xoauth2_string(self.username, token)
        # The initial response carries the credentials; an error challenge (base64 JSON) is
        # answered with an empty line, after which the server sends 535.
        client.auth("XOAUTH2", lambda challenge=None: blob if challenge is None else "")

    def _auth_plain_utf8(self, client: smtplib.SMTP) -> None:
        """AUTH PLAIN with UTF-8 (RFC 4616): smtplib encodes every AUTH answer as ASCII, so a
        password with a "£" in it raised UnicodeEncodeError instead of logging in."""
        assert self.username and self._password is not None

        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode("ascii")

        offered = str(client.esmtp_features.get("auth", "")).upper().split()
        if "PLAIN" in offered:
            code, reply = client.docmd(
                "AUTH", "PLAIN " + b64(f"\0{self.username}\0{self._password}")
            )
        elif "LOGIN" in offered:  # e.g. Exchange Server receive connectors: NTLM and LOGIN only
            code, reply = client.docmd("AUTH", "LOGIN " + b64(self.username))
            if code == 334:
                code, reply = client.docmd(b64(self._password))
        else:
            raise PermanentError(
                f"the SMTP server {self._where()} offers neither AUTH PLAIN nor LOGIN, which a "
                "password with non-ASCII characters needs: check sending.sender.security (many "
                f"servers offer AUTH only after TLS), or change {self._credential_hint}"
            )
        if code != 235:
            raise smtplib.SMTPAuthenticationError(code, reply)

    def _cert_error(self, exc: ssl.SSLCertVerificationError) -> PermanentError:
        return PermanentError(
            f"the SMTP server {self._where()} has a TLS certificate this machine does not trust "
            f"({exc.verify_message}): check sending.sender.host, or set sending.sender.ca_bundle "
            "to the CA that issued it"
        )

    def _auth_error(self, exc: smtplib.SMTPAuthenticationError) -> PermanentError:
        if self._token_provider is not None:
            return PermanentError(
                f"the SMTP server {self._where()} refused the OAuth token for {self.username} "
                f"({_reply(exc.smtp_code, exc.smtp_error)}): on Microsoft 365 check the app's "
                "SMTP.SendAsApp permission, Add-MailboxPermission for its service principal, "
                "and that SMTP AUTH is enabled for the mailbox"
            )
        return PermanentError(
            f"the SMTP server {self._where()} refused the login for {self.username} "
            f"({_reply(exc.smtp_code, exc.smtp_error)}): check sending.sender.username and "
            f"{self._credential_hint}"
        )

    def _reply_error(self, code: int, text: bytes | str, doing: str) -> PreventServiceError:
        what = f"the SMTP server {self._where()} said {_reply(code, text)} while {doing}"
        if 400 <= code < 500:
            return TransientError(f"{what}; will retry")
        return PermanentError(what)

    # -- sending ------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> None:
        """Send once per call. See the module docstring for what a retry can and cannot know."""
        mime = message.to_email()
        recipients = list(dict.fromkeys([*message.to, *message.cc]))
        if not recipients:
            raise PermanentError(f"message {message.message_id} has no recipients")
        for attempt in (1, 2):
            try:
                client = self._open()
            except _BeforeData as exc:
                if attempt == 2:
                    raise TransientError(
                        f"could not reach the SMTP server {self._where()} "
                        f"({exc}); nothing was sent; will retry"
                    ) from exc
                log.info("smtp: connection failed (%s); trying once more", exc)
                continue
            try:
                refused = client.send_message(
                    mime, from_addr=self.envelope_from, to_addrs=recipients
                )
            except smtplib.SMTPRecipientsRefused as exc:
                raise self._refused(exc.recipients, message) from exc
            except smtplib.SMTPSenderRefused as exc:
                raise self._reply_error(
                    exc.smtp_code,
                    exc.smtp_error,
                    f"accepting the sender {self.envelope_from} (check that the account may "
                    "send as intake.address)",
                ) from exc
            except smtplib.SMTPNotSupportedError as exc:
                # Raised before MAIL FROM: an address is not ASCII and the server has no
                # SMTPUTF8 (RFC 6531). Nothing was sent, and a retry would meet the same.
                raise PermanentError(
                    f"the SMTP server {self._where()} does not offer SMTPUTF8, which "
                    f"{message.message_id} needs for an address with non-ASCII characters "
                    f"(at {_domains(recipients)}); nothing was sent. Ask the mail admin to "
                    "enable SMTPUTF8, or use the person's ASCII address"
                ) from exc
            except smtplib.SMTPResponseException as exc:
                # e.g. SMTPDataError: the server answered the message itself with an error.
                raise self._reply_error(
                    exc.smtp_code, exc.smtp_error, "taking the message"
                ) from exc
            except (OSError, smtplib.SMTPException) as exc:
                # Lost while the message was being handed over: it may or may not have gone.
                raise TransientError(
                    f"the connection to the SMTP server {self._where()} was lost while sending "
                    f"{message.message_id} ({type(exc).__name__}); it may have been delivered; a "
                    "resend carries the same Message-ID"
                ) from exc
            finally:
                _close(client)
            if refused:
                # Accepted for some recipients: a resend would duplicate theirs, so say so
                # loudly (domains only) and don't raise.
                log.warning(
                    "smtp: %s accepted, but refused for %d recipient(s) at %s",
                    message.message_id,
                    len(refused),
                    _domains(refused),
                )
            log.info("smtp: sent %s to %d recipient(s)", message.message_id, len(recipients))
            return

    def _refused(
        self, recipients: dict[str, tuple[int, bytes]], message: OutboundMessage
    ) -> PreventServiceError:
        codes = [code for code, _ in recipients.values()]
        domains = _domains(recipients)
        first = _reply(*next(iter(recipients.values())))
        if all(400 <= c < 500 for c in codes):
            return TransientError(
                f"the SMTP server {self._where()} deferred every recipient of "
                f"{message.message_id} at {domains} ({first}); will retry"
            )
        return PermanentError(
            f"the SMTP server {self._where()} refused every recipient of {message.message_id} "
            f"at {domains} ({first}): check the addresses in the config for those domains"
        )

    # -- check and close ----------------------------------------------------------------

    def checks(self, send_test_to: str | None = None) -> Iterator[CheckResult]:
        """Connect, secure and log in; a real test message only when ``send_test_to``. A
        failure names what was tried (host, port, TLS mode) and the likely fix."""
        how = {"tls": "TLS from the start", "starttls": "STARTTLS", "none": "no TLS"}[self.security]
        name = f"send via {self._where()} ({how})"
        try:
            client = self._open()
        except _BeforeData as exc:
            fix = self._fix_for(exc.__cause__)
            yield CheckResult(name, False, f"cannot reach the SMTP server ({exc}): {fix}")
            return
        except PreventServiceError as exc:
            yield CheckResult(name, False, str(exc))
            return
        _close(client)
        who = f"logged in as {self.username}" if self.username else "no login"
        yield CheckResult(name, True, f"connected with {how}, {who}")
        if send_test_to:
            yield self._send_test(send_test_to)

    def _send_test(self, to: str) -> CheckResult:
        now = datetime.now(UTC)
        domain = self.envelope_from.rpartition("@")[2] or "localhost"
        text = "This is a test message from prevent-service check. No action is needed."
        message = OutboundMessage(
            message_id=f"<check.{now.strftime('%Y%m%d%H%M%S%f')}@{domain}>",
            sender=self.envelope_from,
            to=(to,),
            subject="prevent-service: test message",
            text=text,
            html=f"<p>{text}</p>",
            date=now,
        )
        try:
            self.send(message)
        except PreventServiceError as exc:
            return CheckResult("send test message", False, str(exc))
        return CheckResult("send test message", True, f"sent to {to} via {self._where()}")

    def _fix_for(self, cause: BaseException | None) -> str:
        """The likely fix for a connection that failed before the server could say why."""
        where = self._where()
        ports = (
            'usually port 587 with security = "starttls", 465 with "tls", 25 with "none" '
            "(an internal relay)"
        )
        if isinstance(cause, socket.gaierror):
            return f"the host name {self.host} does not resolve: check sending.sender.host"
        if isinstance(cause, ConnectionRefusedError):
            return (
                f"nothing accepts connections on {where}: check sending.sender.host and "
                f"sending.sender.port ({ports}), and that the mail server is running"
            )
        if isinstance(cause, ssl.SSLError):
            if self.security == "tls":
                return (
                    f"the TLS handshake failed: the server on port {self.port} does not start "
                    'with TLS; it probably expects STARTTLS: set security = "starttls" (usually '
                    'port 587), or keep security = "tls" with the server\'s TLS port (usually 465)'
                )
            return (
                "the TLS handshake after STARTTLS failed: check sending.sender.ca_bundle and "
                "that the server accepts TLS 1.2 or later; ask the mail admin"
            )
        if isinstance(cause, TimeoutError | socket.timeout) or "timed out" in str(cause):
            if self.security != "tls":
                return (
                    f"no SMTP greeting from {where} within {self.timeout:g}s. A port that "
                    'starts with TLS (usually 465) stays silent like this: set security = "tls" '
                    "for it; otherwise a firewall may be dropping the connection, or the host "
                    "or port is wrong"
                )
            return (
                f"no answer from {where} within {self.timeout:g}s: a firewall may be dropping "
                f"the connection, or the host or port is wrong ({ports})"
            )
        return f"check sending.sender.host, sending.sender.port and security ({ports})"

    def close(self) -> None:
        """Nothing to close: each send uses its own short connection."""


def _close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()
