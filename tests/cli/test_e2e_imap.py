"""The command line end to end with ``backend = "imap"`` and ``"smtp"``, against real servers.

A concern is mailed in over SMTP (aiosmtpd → the intake user's Maildir), the real CLI runs in
another process and reads it over IMAPS from Dovecot, alerts the DSP over SMTP with STARTTLS
(→ the DSP's Maildir), writes the register row and moves the message to ``Processed``. Then
the same with the process SIGKILLed between steps, with the server dropping the connection
mid-cycle, and with the folder's UIDVALIDITY changed before the rerun.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import ssl
import subprocess
import sys
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.cli.helpers import ROOT, register_rows, run_cli
from tests.servers import MailServers, MailUser

pytestmark = pytest.mark.servers

PASSWORD_ENV = "PREVENT_TEST_MAIL_PASSWORD"

# Runs the real CLI; at the given step of the first item either SIGKILLs itself or has the
# server drop every IMAP connection of the intake user (then carries on).
HOOKED = """
import os, signal, subprocess, sys, time
from service.intake import pipeline
from service.cli import main
action, step, user, dovecot_conf = sys.argv[1:5]
done = []
def step_done(self, name, key):
    if name != step or done:
        return
    done.append(name)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    subprocess.run(["doveadm", "-c", dovecot_conf, "kick", user], check=True)
    for _ in range(500):  # kick only signals: wait until the sessions are really gone
        who = subprocess.run(["doveadm", "-c", dovecot_conf, "who", "-1", user],
                             capture_output=True, text=True, check=True).stdout
        if user.lower() not in who.lower():
            break
        time.sleep(0.02)
pipeline.Intake.step_done = step_done
sys.exit(main(sys.argv[5:]))
"""


@dataclass
class Site:
    folder: Path
    config: Path
    servers: MailServers
    intake: MailUser
    dsp: MailUser
    reporter: MailUser
    env: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("--config", str(self.config), *args, env=self.env)

    def hooked(self, action: str, step: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                HOOKED,
                action,
                step,
                self.intake.address,
                str(self.servers.dovecot_conf),
                "--config",
                str(self.config),
                "poll",
            ],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def mail_concern(self, n: int = 1) -> None:
        """A member of staff e-mails a concern to the safeguarding mailbox."""
        msg = EmailMessage()
        msg["From"] = f"Zoë Teacher <{self.reporter.address}>"
        msg["To"] = self.intake.address
        msg["Subject"] = f"Sorge um einen Schüler – Überweisung {n}"
        msg["Message-ID"] = f"<concern.{n}.{self.intake.address}>"
        msg.set_content(
            "A learner at the Leamington centre said something worrying in class today.\nZoë\n"
        )
        msg.add_attachment(
            b"notes",
            maintype="text",
            subtype="plain",
            filename="Notizen März.txt",
        )
        context = ssl.create_default_context(cafile=str(self.servers.ca))
        with smtplib.SMTP(self.servers.host, self.servers.smtp_starttls_port, timeout=10) as smtp:
            smtp.starttls(context=context)
            smtp.login(self.reporter.address, self.reporter.password)
            smtp.send_message(msg)

    def concern_bytes(self, n: int, *, message_id: bool = True, resend: bool = False) -> bytes:
        msg = EmailMessage()
        msg["From"] = f"Zoë Teacher <{self.reporter.address}>"
        msg["To"] = self.intake.address
        msg["Subject"] = f"Sorge um einen Schüler – Überweisung {n}"
        if message_id:
            msg["Message-ID"] = f"<concern.{n}.{self.intake.address}>"
        msg["Date"] = "Mon, 02 Feb 2026 09:30:00 +0000"
        msg.set_content(f"A learner said something worrying in class today{'!' if resend else '.'}")
        return msg.as_bytes()

    def append(self, folder: str, *raws: bytes) -> None:
        """Put messages straight into a folder (a delivery agent, a restore, a mail loop)."""
        session = self.servers.imap(self.intake)
        try:
            for raw in raws:
                typ, data = session.append(f'"{folder}"', "", None, raw)
                assert typ == "OK", data
        finally:
            session.logout()

    def new_uidvalidity(self) -> None:
        status = self.servers.doveadm(
            "-f", "flow", "mailbox", "status", "-u", self.intake.address, "uidvalidity", "INBOX"
        )
        new = int(status.split("=")[1]) + 1000
        self.servers.doveadm(
            "mailbox", "update", "--uid-validity", str(new), "-u", self.intake.address, "INBOX"
        )

    def alerts(self) -> list[EmailMessage]:
        return [
            m
            for m in self.servers.mailbox_messages(self.dsp.address)
            if "New safeguarding concern" in str(m["Subject"])
        ]

    def acks(self) -> list[EmailMessage]:
        return self.servers.mailbox_messages(self.reporter.address)

    def folder_count(self, name: str) -> int:
        session = self.servers.imap(self.intake)
        try:
            typ, data = session.status(f'"{name}"', "(MESSAGES)")
            return int(data[0].rsplit(b"MESSAGES ", 1)[1].rstrip(b")")) if typ == "OK" else 0
        finally:
            session.logout()

    def rows(self) -> list[dict[str, object]]:
        return register_rows(self.folder / "workbooks" / "concern-register.xlsx")


@pytest.fixture
def site(tmp_path: Path, mail_servers: MailServers) -> Site:
    folder = tmp_path / "site"
    assert run_cli("init", str(folder)).returncode == 0
    config = folder / "config.toml"
    intake = mail_servers.add_user("safeguarding")
    dsp = mail_servers.add_user("dsp")
    deputy = mail_servers.add_user("deputy")
    reporter = mail_servers.add_user("teacher")
    servers = mail_servers
    text = config.read_text(encoding="utf-8")
    replacements = {
        r'mailbox = \{ backend = "folder"[^}]*\}': (
            f'mailbox = {{ backend = "imap", host = "{servers.host}", port = {servers.imaps_port}, '
            f'security = "tls", username = "{intake.address}", password_env = "{PASSWORD_ENV}", '
            f'ca_bundle = "{servers.ca}", timeout_seconds = 10 }}'
        ),
        r'sender = \{ backend = "outbox"[^}]*\}': (
            f'sender = {{ backend = "smtp", host = "{servers.host}", '
            f'port = {servers.smtp_starttls_port}, security = "starttls", '
            f'username = "{intake.address}", password_env = "{PASSWORD_ENV}", '
            f'ca_bundle = "{servers.ca}", timeout_seconds = 10 }}'
        ),
        r'address = "safeguarding@example.org"': f'address = "{intake.address}"',
        r'email = "dsp@example.org"': f'email = "{dsp.address}"',
        r'email = "deputy.dsp@example.org"': f'email = "{deputy.address}"',
    }
    for pattern, new in replacements.items():
        text, n = re.subn(pattern, new, text)
        assert n == 1, pattern
    config.write_text(text, encoding="utf-8")
    return Site(
        folder,
        config,
        servers,
        intake,
        dsp,
        reporter,
        env={PASSWORD_ENV: servers.password},
    )


def assert_exactly_once(site: Site, *, alerts: int = 1) -> None:
    rows = site.rows()
    assert len(rows) == 1, rows
    reference = str(rows[0]["Reference"])
    found = site.alerts()
    assert len(found) == alerts
    assert {str(m["Subject"]).rsplit(" ", 1)[-1] for m in found} == {reference}
    assert len({m["Message-ID"] for m in found}) == 1  # a resend is recognisably the same
    assert (site.folder_count("INBOX"), site.folder_count("Processed")) == (0, 1)
    status = site.cli("status")
    assert "open 0" in status.stdout, status.stdout


def test_concern_mailed_in_is_alerted_logged_acknowledged_and_moved(site: Site) -> None:
    site.mail_concern()

    result = site.cli("poll")

    assert result.returncode == 0, result.stdout + result.stderr
    assert_exactly_once(site)
    (ack,) = site.acks()
    assert "Überweisung" not in str(ack["Subject"]) + ack.get_body().get_content()  # type: ignore[union-attr]
    (alert,) = site.alerts()
    assert alert["Auto-Submitted"] == "auto-generated"
    assert alert["Cc"] is not None
    check = site.cli("check")
    assert "mailbox" in check.stdout and "MOVE" in check.stdout, check.stdout


def test_server_drops_the_connection_mid_cycle(site: Site) -> None:
    site.mail_concern()

    result = site.hooked("kick", "alerted")  # every IMAP connection cut after the alert

    assert result.returncode == 0, result.stdout + result.stderr
    assert "reconnecting" in result.stderr  # the cut really happened mid-cycle
    assert_exactly_once(site)


@pytest.mark.slow
@pytest.mark.parametrize("step", ["seen", "alerted", "row_written", "acked", "processed"])
def test_killed_between_steps_then_rerun(site: Site, step: str) -> None:
    site.mail_concern()

    killed = site.hooked("kill", step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    rerun = site.cli("poll")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert_exactly_once(site)


def test_killed_after_the_alert_went_but_before_it_was_recorded(site: Site) -> None:
    """SMTP cannot ask whether a message went: the rerun sends the alert again, with the same
    Message-ID, so the DSP's mail client (and people) can see it is the same one."""
    site.mail_concern()

    killed = site.hooked("kill", "alert_sent")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert site.cli("poll").returncode == 0

    assert_exactly_once(site, alerts=2)


def test_uidvalidity_change_between_the_kill_and_the_rerun(site: Site) -> None:
    site.mail_concern(1)
    site.mail_concern(2)
    killed = site.hooked("kill", "alerted")
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    status = site.servers.doveadm(
        "-f", "flow", "mailbox", "status", "-u", site.intake.address, "uidvalidity", "INBOX"
    )
    new = int(status.split("=")[1]) + 1000
    site.servers.doveadm(
        "mailbox", "update", "--uid-validity", str(new), "-u", site.intake.address, "INBOX"
    )
    site.mail_concern(3)
    rerun = site.cli("poll")

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    rows = site.rows()
    assert len(rows) == 3, rows
    assert len({r["Source key"] for r in rows}) == 3
    alerts = site.alerts()
    assert sorted(str(m["Subject"]).rsplit(" ", 1)[-1] for m in alerts) == sorted(
        str(r["Reference"]) for r in rows
    )
    assert (site.folder_count("INBOX"), site.folder_count("Processed")) == (0, 3)
    assert "open 0" in site.cli("status").stdout


def test_no_password_or_concern_text_reaches_the_output(site: Site) -> None:
    """With --debug, a wrong password and a right one: nothing secret or personal is printed."""
    site.mail_concern()
    wrong = "Wr0ng-example-Pa55word"
    printed = ""
    for command in ("check", "poll", "status"):
        bad = run_cli("--debug", "--config", str(site.config), command, env={PASSWORD_ENV: wrong})
        printed += bad.stdout + bad.stderr
    assert "password" in printed.lower()  # the failure is explained…
    for command in ("poll", "check", "status"):
        good = site.cli("--debug", command)
        printed += good.stdout + good.stderr
    assert "PRV-" in printed
    for secret in (
        wrong,
        site.servers.password,
        site.reporter.address,
        "Zoë",
        "Leamington",
        "Sorge",
    ):
        assert secret not in printed, secret


def items_line(status: str) -> str:
    return next(line for line in status.splitlines() if line.startswith("items: "))


def test_first_poll_over_a_mailbox_holding_duplicates(site: Site) -> None:
    """A new mailbox's first batch is read without a cursor: two copies of one message, a resend
    of it (same Message-ID), two copies of one without a Message-ID and another concern. Each
    copy leaves the INBOX with a ledger record; one alert and one row per concern."""
    one, bare = site.concern_bytes(1), site.concern_bytes(2, message_id=False)
    site.append("INBOX", one, one, site.concern_bytes(1, resend=True), bare, bare)
    site.append("INBOX", site.concern_bytes(3))

    result = site.cli("poll")

    assert result.returncode == 0, result.stdout + result.stderr
    assert (site.folder_count("INBOX"), site.folder_count("Processed")) == (0, 6)
    assert len(site.rows()) == 3
    assert len(site.alerts()) == 3
    status = site.cli("status").stdout
    assert items_line(status) == ("items: open 0, done 3, ignored 0, duplicate 3, quarantined 0"), (
        status
    )


def test_uidvalidity_change_with_duplicates_and_new_mail(site: Site) -> None:
    """The INBOX is restored from a backup (new UIDVALIDITY) on top of mail already handled:
    the old messages come back, one of them twice, with new mail. Only the new mail is a new
    concern; every old copy is recorded as a duplicate and moved, none stays in the INBOX."""
    old = [site.concern_bytes(1), site.concern_bytes(2, message_id=False)]
    site.append("INBOX", *old)
    assert site.cli("poll").returncode == 0
    assert (site.folder_count("INBOX"), len(site.alerts())) == (0, 2)

    site.append("INBOX", *old, old[0], site.concern_bytes(3))
    site.new_uidvalidity()
    rerun = site.cli("poll")

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert (site.folder_count("INBOX"), site.folder_count("Processed")) == (0, 6)
    rows = site.rows()
    assert len(rows) == 3, rows
    assert len(site.alerts()) == 3  # the first two, then only the new one
    status = site.cli("status").stdout
    assert items_line(status) == ("items: open 0, done 3, ignored 0, duplicate 3, quarantined 0"), (
        status
    )
    assert site.cli("poll").returncode == 0  # and nothing comes back
    assert (site.folder_count("INBOX"), len(site.alerts())) == (0, 3)
