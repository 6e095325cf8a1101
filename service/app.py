"""The running service: config, ledger, clock and the configured backends, built once.

Commands and scheduled jobs take an ``App``. Tests build one with in-memory backends and a
frozen clock; product code never asks whether it is under test.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from connectors import MAILBOXES, SENDERS, WORKBOOKS, backend_class
from connectors.base import Attachment, Mailbox, MailSender, OutboundMessage, Workbook
from service.config import Config
from service.errors import ConnectorError
from service.ledger import Ledger
from service.render import render_email, workbook_where

log = logging.getLogger("prevent_service")


# Kinds of mail whose replies should reach the safeguarding mailbox (see ``App.compose``).
REPLIES_COME_BACK = frozenset({"ack", "followup-ack"})


def _cycle_hook(workbook: Workbook, name: str) -> None:
    hook = getattr(workbook, name, None)
    if hook is not None:
        hook()


class App:
    def __init__(
        self,
        config: Config,
        *,
        ledger: Ledger | None = None,
        now: Callable[[], datetime] | None = None,
        mailbox: Mailbox | None = None,
        sender: MailSender | None = None,
        workbooks: Mapping[str, Workbook] | None = None,
    ) -> None:
        self.config = config
        self._now = now or (lambda: datetime.now(UTC))
        self.ledger = ledger or Ledger(config.ledger_path, now=self.now)
        self._mailbox = mailbox
        self._sender = sender
        # Workbooks by role: "register", "forms", "compliance".
        self._workbooks: dict[str, Workbook] = dict(workbooks or {})
        self._in_cycle = False

    # -- time -------------------------------------------------------------------------

    def now(self) -> datetime:
        """Aware UTC now (frozen in tests)."""
        return self._now().astimezone(UTC)

    def local_now(self) -> datetime:
        return self.now().astimezone(self.config.organisation.tz)

    # -- backends ---------------------------------------------------------------------

    def mailbox(self) -> Mailbox | None:
        section = self.config.intake.mailbox
        if self._mailbox is None and section is not None:
            cls = backend_class(MAILBOXES, section.backend)
            self._mailbox = cls.from_config(section, self.config, self.ledger)
        return self._mailbox

    def sender(self) -> MailSender:
        if self._sender is None:
            section = self.config.sending.sender
            cls = backend_class(SENDERS, section.backend)
            self._sender = cls.from_config(section, self.config, self.ledger)
        return self._sender

    def workbook(self, role: str) -> Workbook:
        """The workbook for ``register``, ``forms`` or ``compliance``."""
        if role not in self._workbooks:
            section: Any
            if role == "register":
                section = self.config.register.workbook
            elif role == "forms" and self.config.intake.forms:
                section = self.config.intake.forms.workbook
            elif role == "compliance" and self.config.compliance:
                section = self.config.compliance.workbook
            else:
                raise KeyError(f"no {role} workbook is configured")
            cls = backend_class(WORKBOOKS, section.backend)
            self._workbooks[role] = cls.from_config(section, self.config, self.ledger)
            if self._in_cycle:
                _cycle_hook(self._workbooks[role], "begin_cycle")
        return self._workbooks[role]

    @contextmanager
    def cycle(self) -> Iterator[None]:
        """One intake cycle: a workbook backend that can share one session among the
        cycle's operations (``begin_cycle``/``end_cycle``) does so; others are untouched."""
        self._in_cycle = True
        for workbook in self._workbooks.values():
            _cycle_hook(workbook, "begin_cycle")
        try:
            yield
        finally:
            self._in_cycle = False
            for workbook in self._workbooks.values():
                _cycle_hook(workbook, "end_cycle")

    def close(self) -> None:
        for backend in [self._mailbox, self._sender, *self._workbooks.values()]:
            if backend is not None:
                try:
                    backend.close()
                except Exception:  # closing must not hide the real outcome
                    log.warning("closing %s failed", type(backend).__name__, exc_info=True)
        self.ledger.close()

    # -- sending ----------------------------------------------------------------------

    def message_id(self, kind: str, key: str) -> str:
        """A Message-ID stable for (kind, key): a retry of the same e-mail is recognisable."""
        digest = hashlib.sha256(f"{kind}\0{key}".encode()).hexdigest()[:24]
        domain = self.config.intake.address.rpartition("@")[2]
        return f"<{kind}.{digest}@{domain}>"

    def compose(
        self,
        *,
        kind: str,
        key: str,
        to: Iterable[str],
        subject: str,
        template: str,
        context: Mapping[str, Any],
        cc: Iterable[str] = (),
        high_importance: bool = False,
        attachments: Iterable[Attachment] = (),
        reply_to: str | None = None,
    ) -> OutboundMessage:
        """Render ``template`` and build the message; ``kind``+``key`` make its Message-ID.

        Everything goes from the safeguarding mailbox, and whatever lands there is taken in as
        a concern. So a reply should go to a person: ``reply_to``, else the DSP. Only a
        reporter's reply to an acknowledgement comes back to the mailbox, where it is logged as
        a follow-up to the concern."""
        if reply_to is None and kind not in REPLIES_COME_BACK:
            reply_to = self.config.people.dsp.email
        compliance, forms = self.config.compliance, self.config.intake.forms
        ctx = {
            "organisation": self.config.organisation.name,
            # Where the workbooks are, for mail that cannot link to them (no link configured).
            "register_where": workbook_where(self.config.register.workbook),
            "compliance_where": workbook_where(compliance.workbook if compliance else None),
            "forms_where": workbook_where(forms.workbook if forms else None),
            **context,
        }
        html, text = render_email(template, **ctx)
        to_list = tuple(dict.fromkeys(a for a in to if a))
        cc_list = tuple(dict.fromkeys(a for a in cc if a and a not in to_list))
        return OutboundMessage(
            message_id=self.message_id(kind, key),
            sender=self.config.intake.address,
            to=to_list,
            cc=cc_list,
            subject=subject,
            text=text,
            html=html,
            high_importance=high_importance,
            date=self.now(),
            attachments=tuple(attachments),
            reply_to=reply_to,
        )

    def send(self, message: OutboundMessage) -> None:
        self.sender().send(message)
        # The sender answers: what was parked behind its outage goes on the next cycle.
        self.ledger.release("sender")

    def sending(self, messages: Sequence[OutboundMessage]) -> Iterator[ConnectorError | None]:
        """Each message's outcome (None: sent), in order. A sender that can send several in
        fewer round trips (``send_many``) does so; otherwise each is sent only when its
        outcome is asked for, so a caller's per-message steps stay in between."""
        many = getattr(self.sender(), "send_many", None)
        if many is not None:
            for outcome in many(messages):
                if outcome is None:  # as in send: the sender answers, release what waits
                    self.ledger.release("sender")
                yield outcome
            return
        for message in messages:
            try:
                self.send(message)
            except ConnectorError as exc:
                yield exc
                continue
            yield None

    def tell_admin(
        self,
        *,
        kind: str,
        key: str,
        subject: str,
        what: str,
        problem: str,
        attempts: int = 0,
        high_importance: bool = False,
    ) -> bool:
        """E-mail ``people.admin_email`` about something a person must fix (content-free
        text only). False if it could not be sent: the caller tries again on a later run."""
        notice = self.compose(
            kind=kind,
            key=key,
            to=[self.config.people.admin_email],
            subject=f"[Prevent service] {subject}",
            template="admin_problem",
            context={
                "what": what,
                "problem": problem,
                "attempts": attempts,
                "at": self.local_now(),
            },
            high_importance=high_importance,
        )
        try:
            self.send(notice)
        except ConnectorError:
            log.error("could not e-mail the admin (%s %s)", kind, key)
            return False
        return True
