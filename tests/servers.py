"""Real mail servers on 127.0.0.1 for the IMAP/SMTP tests: a pytest plugin and the SMTP server.

``.ci/mail-servers.sh`` starts a private Dovecot (IMAP, STARTTLS, IMAPS, XOAUTH2) and this
module's SMTP server (``python -m tests.servers smtp …``: aiosmtpd on three ports, delivering into
the Dovecot users' Maildirs, plus the token-info endpoint Dovecot asks to check XOAUTH2 tokens).
The ``mail_servers`` fixture reuses running servers or runs the script; if they cannot start, the
test FAILS with the reason (never a skip). ``mail_user`` gives each test a fresh mailbox user.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import email
import email.policy
import imaplib
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "mail-servers.sh"
ENV_FILE = Path(os.environ.get("PREVENT_MAIL_ENV", "/tmp/prevent-mail-servers.env"))
HOST = "127.0.0.1"

# Recipients at these domains are refused by the test SMTP server (to test error translation).
REFUSE_PERMANENT_DOMAIN = "refused.example.org"  # 550
REFUSE_TEMPORARY_DOMAIN = "busy.example.org"  # 451


# ---------------------------------------------------------------------------- the servers


@dataclass(frozen=True)
class MailUser:
    """One mailbox on the test Dovecot: log in with ``password`` (the servers' one test
    password) or XOAUTH2 ``token`` (this user's own)."""

    address: str
    password: str
    token: str


@dataclass(frozen=True)
class MailServers:
    dir: Path
    imap_port: int  # plain IMAP, STARTTLS offered
    imaps_port: int  # implicit TLS
    smtp_port: int  # plain SMTP, AUTH offered without TLS (loopback test server only)
    smtp_starttls_port: int  # STARTTLS required, then AUTH required
    smtps_port: int  # implicit TLS, AUTH required
    tokeninfo_port: int
    ca: Path
    password: str
    tokens: Path
    mail_root: Path
    spool: Path
    dovecot_conf: Path
    host: str = HOST

    @classmethod
    def from_env_file(cls, path: Path) -> MailServers:
        values: dict[str, str] = {}
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
        return cls(
            dir=Path(values["PREVENT_MAIL_DIR"]),
            imap_port=int(values["PREVENT_IMAP_PORT"]),
            imaps_port=int(values["PREVENT_IMAPS_PORT"]),
            smtp_port=int(values["PREVENT_SMTP_PORT"]),
            smtp_starttls_port=int(values["PREVENT_SMTP_STARTTLS_PORT"]),
            smtps_port=int(values["PREVENT_SMTPS_PORT"]),
            tokeninfo_port=int(values["PREVENT_TOKENINFO_PORT"]),
            ca=Path(values["PREVENT_MAIL_CA"]),
            password=values["PREVENT_MAIL_PASSWORD"],
            tokens=Path(values["PREVENT_MAIL_TOKENS"]),
            mail_root=Path(values["PREVENT_MAIL_ROOT"]),
            spool=Path(values["PREVENT_SMTP_SPOOL"]),
            dovecot_conf=Path(values["PREVENT_DOVECOT_CONF"]),
        )

    def answering(self) -> bool:
        ports = (
            self.imap_port,
            self.imaps_port,
            self.smtp_port,
            self.smtp_starttls_port,
            self.smtps_port,
            self.tokeninfo_port,
        )
        for port in ports:
            try:
                socket.create_connection((self.host, port), timeout=2).close()
            except OSError:
                return False
        return self.tokens.exists()

    # -- users --------------------------------------------------------------------------

    def add_user(self, prefix: str = "box") -> MailUser:
        """A new, empty mailbox (Dovecot creates it at the first login)."""
        return self.user(f"{prefix}-{secrets.token_hex(5)}@example.org")

    def user(self, address: str) -> MailUser:
        """The mailbox ``address`` (new or not), with a fresh XOAUTH2 token."""
        user = MailUser(address=address, password=self.password, token=secrets.token_urlsafe(24))
        self.accept_token(user.address, user.token)
        return user

    def accept_token(self, address: str, token: str) -> None:
        """From now on the servers take ``token`` (XOAUTH2) as ``address``'s credential."""
        with self.tokens.open("a") as f:
            f.write(f"{token} {address}\n")

    # -- looking at and poking the IMAP side --------------------------------------------

    def imap(self, user: MailUser) -> imaplib.IMAP4:
        """A plain test-side IMAP session for ``user`` (to deliver, count and inspect)."""
        client = imaplib.IMAP4(self.host, self.imap_port, timeout=10)
        try:
            client.login(user.address, user.password)
        except BaseException:
            client.shutdown()
            raise
        return client

    def doveadm(self, *args: str) -> str:
        result = subprocess.run(
            ["doveadm", "-c", str(self.dovecot_conf), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def kick(self, user: MailUser) -> None:
        """Drop every IMAP connection of ``user`` on the server side (as a server restart would).

        ``doveadm kick`` only signals the sessions; wait until Dovecot reports them gone, so a
        test's next command on an old session meets the BYE instead of racing it.
        """
        self.doveadm("kick", user.address)
        deadline = time.monotonic() + 10
        while user.address.lower() in self.doveadm("who", "-1", user.address).lower():
            if time.monotonic() > deadline:
                raise RuntimeError(f"doveadm kick: {user.address} still connected after 10 s")
            time.sleep(0.02)

    def mailbox_messages(self, address: str) -> list[EmailMessage]:
        """Messages the SMTP server delivered to ``address``'s INBOX and not yet read by IMAP."""
        found: list[EmailMessage] = []
        maildir = self.mail_root / address.lower() / "Maildir"
        for sub in ("new", "cur"):
            folder = maildir / sub
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    found.append(_parse(path.read_bytes()))
        return found

    def sent_by(self, envelope_from: str) -> list[tuple[dict[str, Any], EmailMessage]]:
        """(envelope, message) for everything the SMTP server accepted from ``envelope_from``."""
        folder = self.spool / _safe_name(envelope_from)
        if not folder.is_dir():
            return []
        out = []
        for meta in sorted(folder.glob("*.json")):
            envelope = json.loads(meta.read_text())
            out.append((envelope, _parse(meta.with_suffix(".eml").read_bytes())))
        return out


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _text(value: object) -> str | None:
    return value.decode() if isinstance(value, bytes) and value else None


def _safe_name(address: str) -> str:
    return "".join(c if c.isalnum() or c in "@.-_+" else "_" for c in address.lower()) or "_"


def start_servers() -> MailServers:
    """Run the start script: it reuses the servers in the env file if they answer (and a probe
    user can log in), else starts fresh ones."""
    if shutil.which("bash") is None:
        raise RuntimeError("bash is needed to run .ci/mail-servers.sh")
    env = {**os.environ, "PYTHON": sys.executable, "PREVENT_MAIL_ENV": str(ENV_FILE)}
    result = subprocess.run(
        ["bash", str(SCRIPT), "start"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{SCRIPT.name} exited {result.returncode}:\n{tail}")
    servers = MailServers.from_env_file(ENV_FILE)
    if not servers.answering():
        raise RuntimeError(f"{SCRIPT.name} reported success but the servers do not answer")
    return servers


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def mail_servers() -> MailServers:
    try:
        return start_servers()
    except Exception as exc:  # any reason at all: fail loudly, never skip
        pytest.fail(f"the IMAP/SMTP test servers could not start: {exc}", pytrace=False)


@pytest.fixture
def mail_user(mail_servers: MailServers) -> MailUser:
    return mail_servers.add_user()


@pytest.fixture
def imap_session(mail_servers: MailServers, mail_user: MailUser) -> Iterator[imaplib.IMAP4]:
    client = mail_servers.imap(mail_user)
    yield client
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        client.logout()
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        client.shutdown()  # logout() leaves the socket open when the server already said BYE


# ---------------------------------------------------------------------------- SMTP server


def _read_tokens(path: Path) -> dict[str, str]:
    tokens = {}
    for line in path.read_text().splitlines():
        token, _, user = line.partition(" ")
        tokens[token] = user
    return tokens


class _Delivery:
    """aiosmtpd handler: every message goes into each recipient's Maildir (Dovecot reads it)
    and, with its envelope, into a spool folder per envelope sender (what a sender test sees)."""

    def __init__(self, root: Path, mail_uid: int, mail_gid: int) -> None:
        self.root = root
        self.mail_uid = mail_uid
        self.mail_gid = mail_gid
        self.counter = 0

    def _own(self, path: Path) -> None:
        if os.getuid() == 0:
            os.chown(path, self.mail_uid, self.mail_gid)

    def _unique(self) -> str:
        self.counter += 1
        return f"{time.time_ns()}.P{os.getpid()}Q{self.counter}.prevent-test"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        domain = address.rpartition("@")[2].lower()
        if domain == REFUSE_PERMANENT_DOMAIN:
            return "550 5.1.1 No such mailbox here"
        if domain == REFUSE_TEMPORARY_DOMAIN:
            return "451 4.3.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or envelope.content
        for rcpt in envelope.rcpt_tos:
            home = self.root / "mail" / rcpt.lower()
            maildir = home / "Maildir"
            for sub in ("tmp", "new", "cur"):
                (maildir / sub).mkdir(parents=True, exist_ok=True)
            for path in (home, maildir, maildir / "tmp", maildir / "new", maildir / "cur"):
                self._own(path)
            name = self._unique()
            tmp = maildir / "tmp" / name
            tmp.write_bytes(data)
            self._own(tmp)
            tmp.rename(maildir / "new" / name)
        spool = self.root / "spool" / _safe_name(envelope.mail_from or "")
        spool.mkdir(parents=True, exist_ok=True)
        name = self._unique()
        (spool / f"{name}.eml").write_bytes(data)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            # LOGIN/PLAIN leave the login name in login_data; our XOAUTH2 leaves it in auth_data.
            "auth_user": _text(session.login_data or session.auth_data),
            "tls": server._tls_protocol is not None
            or server.transport.get_extra_info("ssl_object") is not None,
        }
        (spool / f"{name}.json").write_text(json.dumps(meta))
        return "250 2.0.0 Message accepted"

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:
        """SASL XOAUTH2 as Google and Microsoft do it: base64 of
        ``user=<address>^Aauth=Bearer <token>^A^A``; on a bad token a JSON error challenge,
        an empty client line, then 535."""
        from aiosmtpd.smtp import MISSING, AuthResult

        if len(args) > 1:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            answer = await server.challenge_auth("")
            if answer is MISSING:
                return AuthResult(success=False, handled=True)
            blob = answer
        fields = dict(
            part.split("=", 1) for part in blob.decode("utf-8", "replace").split("\x01") if part
        )
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        if user and _read_tokens(self.root / "tokens").get(token) == user:
            return AuthResult(success=True, handled=False, auth_data=user.encode())
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"})
        await server.challenge_auth(error)  # the client answers with an empty line
        return AuthResult(success=False, handled=False)


class _TokenInfo(BaseHTTPRequestHandler):
    """Dovecot's oauth2 passdb asks ``GET /tokeninfo?access_token=T``; we answer from the tokens
    file: ``200 {"email": "<address>"}`` or ``401 {"error": "invalid_token"}``."""

    tokens_file: Path

    def do_GET(self) -> None:
        token = parse_qs(urlparse(self.path).query).get("access_token", [""])[0]
        user = _read_tokens(self.tokens_file).get(token)
        body = json.dumps({"email": user} if user else {"error": "invalid_token"}).encode()
        self.send_response(200 if user else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep tokens out of the log
        return


def serve_smtp(argv: list[str]) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    parser = argparse.ArgumentParser(prog="python -m tests.servers smtp")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--mail-uid", type=int, required=True)
    parser.add_argument("--mail-gid", type=int, required=True)
    for name in ("plain", "starttls", "tls", "tokeninfo"):
        parser.add_argument(f"--{name}-port", type=int, required=True)
    args = parser.parse_args(argv)
    root: Path = args.dir

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        password = (root / "probe").read_text().split()[0]
        ok = secrets.compare_digest(auth_data.password, password.encode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(root / "server.pem", root / "server.key")
    handler = _Delivery(root, args.mail_uid, args.mail_gid)
    common: dict[str, Any] = {"hostname": HOST, "authenticator": authenticator}
    controllers = [
        # AUTH offered in clear: a loopback-only test server, to test "security = none".
        Controller(handler, port=args.plain_port, auth_require_tls=False, **common),
        Controller(
            handler,
            port=args.starttls_port,
            tls_context=tls,
            require_starttls=True,
            auth_required=True,
            **common,
        ),
        # Implicit TLS: aiosmtpd only counts STARTTLS as TLS, so "require TLS for AUTH" is off
        # here (the whole connection is TLS anyway).
        Controller(
            handler,
            port=args.tls_port,
            ssl_context=tls,
            auth_required=True,
            auth_require_tls=False,
            **common,
        ),
    ]
    for controller in controllers:
        controller.start()

    _TokenInfo.tokens_file = root / "tokens"
    http = ThreadingHTTPServer((HOST, args.tokeninfo_port), _TokenInfo)
    threading.Thread(target=http.serve_forever, daemon=True).start()

    stop = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"smtp up on {args.plain_port} {args.starttls_port} {args.tls_port}", flush=True)
    stop.wait()
    http.shutdown()
    for controller in controllers:
        controller.stop()


def main(argv: list[str]) -> int:
    if argv[:1] == ["smtp"]:
        serve_smtp(argv[1:])
        return 0
    if argv[:1] == ["start"]:
        print(start_servers())
        return 0
    print("usage: python -m tests.servers smtp … | start", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
