"""Follow-ups: new information on an existing concern joins its case.

A message joins case PRV-… when it points at that case **and** comes from someone already on
it. It points at a case when

- its ``In-Reply-To``/``References`` name the Message-ID of mail the service sent about the
  case (the alert, the acknowledgement, an escalation, a follow-up's alert or
  acknowledgement) — the direct parent first, so threading headers win; or else
- its subject (or a Forms answer) quotes exactly one known reference.

Someone on the case is the case's reporter (the register's "Reporter email"), the DSP or
deputy DSP, an address in a configured role, or an address in ``[organisation] domains``.
The sender is the ``From`` addr-spec only: a display name (``"dsp@example.org"
<random@evil.test>``) proves nothing. Threading alone is not proof either: the service's
Message-IDs are fixed by reference, so anyone who knows the scheme can write one.

Anything else that names a case — a sender not on it, or a forward quoting two references —
is a new concern whose alert names the reference(s) it quotes: a concern is never added to
the wrong case or dropped, and the DSP decides.

A follow-up gets no reference and no register row: a chronology entry (the message itself,
so the case record holds it), an alert "New information on PRV-…" (same detail rules as the
first alert; urgent on a critical risk factor or immediate danger) and an acknowledgement
"added to PRV-…" to the sender — unless the sender is on the safeguarding team (the DSP, the
deputy, or an address of a ``compliance.dsp_roles`` role): a reporter's acknowledgement ("call
999", "keep it confidential") is not for them, and they already have the alert. It keeps
intake's guarantees: the ledger item (``case_ref`` set, before any step) moves through the
same steps — alerted, logged (the chronology row, read back after an unclear append),
acknowledged (when due), processed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from connectors.base import Mailbox
from service.app import App
from service.cases import chronology
from service.cases.escalation import ESCALATION_LEVELS
from service.cases.register import REFERENCE
from service.config import Compliance
from service.errors import ConnectorError, InputError, LockedError
from service.intake.external import may_acknowledge
from service.ledger import ItemRow, ItemState
from service.model import Concern
from service.values import as_text

if TYPE_CHECKING:
    from service.intake.pipeline import Intake

log = logging.getLogger("prevent_service.followups")

REPORTER_EMAIL = "Reporter email"
# Kinds of mail about one case whose Message-ID is fixed by its reference (``App.message_id``).
_BY_REFERENCE = ("alert", "ack")
_ALERT_KIND = "followup-alert"
_ACK_KIND = "followup-ack"
_DEFAULT_DSP_ROLES: list[str] = Compliance.model_fields["dsp_roles"].default


@dataclass(frozen=True)
class Decision:
    """Where a message goes: ``case`` to join it; else a new concern, with ``note`` (for its
    alert) naming the references it quoted but was not added to."""

    case: str | None = None
    how: str = ""
    note: str = ""


class Cases:
    """What one intake cycle knows of existing cases: references, reporters, Message-IDs."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.prefix = app.config.organisation.reference_prefix
        self._threads: dict[str, str] | None = None
        self._register: dict[str, dict[str, Any]] | None = None

    # -- deciding -------------------------------------------------------------------------

    def decide(
        self,
        *,
        sender: str | None,
        thread_ids: Sequence[str] = (),
        text: str = "",
        row: ItemRow | None = None,
    ) -> Decision:
        """The decision for a message (stable: once a ledger item has a case or a reference
        of its own, that stands, so a resumed item goes the same way)."""
        if row is not None and row.case_ref:
            return Decision(case=row.case_ref, how=self._how(row.case_ref, sender, thread_ids))
        threaded = self.thread_refs(thread_ids)
        quoted = [r for r in self.references_in(text) if r not in threaded]
        if not threaded and not quoted:
            return Decision()
        named = list(dict.fromkeys([*threaded, *quoted]))
        if threaded:
            candidate: str | None = threaded[0]  # threading headers win; the parent first
        elif len(quoted) == 1:
            candidate = quoted[0]
        else:
            candidate = None
        if candidate is None:
            note = (
                f"It quotes {_and(named)}; it names more than one case, so it was logged "
                "as a new concern and added to none of them."
            )
            return Decision(note=note)
        # An item that already has a reference of its own stays a new concern (a resume).
        joins = not (row is not None and row.reference)
        if joins and sender and self.on_case(candidate, sender):
            return Decision(case=candidate, how=self._how(candidate, sender, thread_ids))
        return Decision(note=self._not_added(named, sender))

    def _how(self, reference: str, sender: str | None, thread_ids: Sequence[str]) -> str:
        threaded = reference in self.thread_refs(thread_ids)
        way = "a reply to the service's mail about it" if threaded else "it quotes the reference"
        return f"Added to {reference}: {way}, from {self.role_of(reference, sender)}"

    def _not_added(self, named: Sequence[str], sender: str | None) -> str:
        return (
            f"It quotes {_and(named)} from {sender or 'an unknown sender'}, who is not on "
            f"{'that case' if len(named) == 1 else 'those cases'}; it was logged as a new "
            "concern, not added. If it belongs to the case, note that in the register."
        )

    # -- who is on a case -----------------------------------------------------------------

    def on_case(self, reference: str, sender: str) -> bool:
        return self.role_of(reference, sender) != ""

    def role_of(self, reference: str, sender: str | None) -> str:
        """How ``sender`` is on the case ("the reporter", "the DSP", …), or "" if not."""
        if not sender:
            return ""
        address = sender.strip().lower()
        config = self.app.config
        if address == config.people.dsp.email.lower():
            return "the DSP"
        if config.people.deputy_dsp and address == config.people.deputy_dsp.email.lower():
            return "the deputy DSP"
        reporter = self.reporter(reference)
        if reporter and address == reporter.lower():
            return "the reporter"
        for role, emails in config.roles.items():
            if address in {e.lower() for e in emails}:
                return f"{role} (a configured role)"
        if config.organisation.is_internal(address):
            return "a member of staff (the organisation's own domain)"
        return ""

    def reporter(self, reference: str) -> str | None:
        row = self._register_rows().get(reference)
        if row is None:  # its row may be waiting (the register open in Excel, or down)
            return self._waiting_reporter(reference)
        return as_text(row.get(REPORTER_EMAIL)) or None

    def _waiting_reporter(self, reference: str) -> str | None:
        """The reporter of a concern whose register row is not written yet. Their address
        waits in the ledger with the concern's "Reported" event until the register can be
        written (then it lives in the register, and the ledger forgets it), so their reply
        joins the case instead of becoming a new concern that names it."""
        found = self.app.ledger.db.execute(
            "SELECT by_whom FROM case_events WHERE key = ? AND written_at IS NULL",
            (f"{reference}|{chronology.REPORTED_KEY}",),
        ).fetchone()
        value = as_text(found[0]) if found else ""
        return value if "@" in value else None  # not "anonymous" or "unknown"

    # -- references -----------------------------------------------------------------------

    def references_in(self, text: str) -> list[str]:
        """Known references quoted in ``text``, in order, once each."""
        pattern = rf"\b{re.escape(self.prefix)}-\d{{4}}-\d{{4,}}\b"
        found = dict.fromkeys(m.group(0) for m in re.finditer(pattern, text or ""))
        return [r for r in found if self.known(r)]

    def known(self, reference: str) -> bool:
        if self.app.ledger.item_by_reference(reference) is not None:
            return True
        return reference in self._register_rows()

    def thread_refs(self, message_ids: Iterable[str]) -> list[str]:
        """Cases whose mail the given Message-IDs name, in the order given."""
        ids = [m for m in message_ids if m]
        if not ids:
            return []
        out: list[str] = []
        db = self.app.ledger.db
        for message_id in ids:
            row = db.execute(
                "SELECT reference FROM case_messages WHERE message_id = ?", (message_id,)
            ).fetchone()
            reference = row[0] if row else self._computed_threads().get(message_id)
            if reference and reference not in out:
                out.append(reference)
        return out

    def _computed_threads(self) -> dict[str, str]:
        """Message-IDs of alerts, acknowledgements and escalations, computed from the ledger's
        references (they are fixed by reference, so mail sent before this version counts)."""
        if self._threads is None:
            self._threads = {}
            refs = self.app.ledger.db.execute(
                "SELECT reference FROM items WHERE reference IS NOT NULL"
            ).fetchall()
            for (reference,) in refs:
                for kind in _BY_REFERENCE:
                    self._threads[self.app.message_id(kind, reference)] = reference
                for level in ESCALATION_LEVELS:
                    key = f"{reference}|{level}"
                    self._threads[self.app.message_id("escalation", key)] = reference
        return self._threads

    def _register_rows(self) -> dict[str, dict[str, Any]]:
        """The register's rows by reference, read once a cycle and only when needed."""
        if self._register is None:
            self._register = {}
            try:
                table = self.app.workbook("register").read_table(self.app.config.register.table)
            except (ConnectorError, InputError) as exc:
                # Never wait on the register: decided without it, a reporter not found here
                # makes a new concern that names the case (safe), not a lost one.
                log.warning("follow-ups: the register could not be read (%s)", type(exc).__name__)
                return self._register
            for row in table.rows:
                reference = as_text(row.get(REFERENCE))
                if reference:
                    self._register.setdefault(reference, row)
        return self._register


def on_safeguarding_team(app: App, sender: str | None) -> bool:
    """Whether ``sender`` is the DSP, the deputy DSP, or an address of a role that
    ``compliance.dsp_roles`` names (the team that receives the alerts)."""
    if not sender:
        return False
    address = sender.strip().lower()
    config = app.config
    team = {config.people.dsp.email}
    if config.people.deputy_dsp:
        team.add(config.people.deputy_dsp.email)
    # Without a [compliance] section, the default role names still say who the team is.
    roles = config.compliance.dsp_roles if config.compliance else _DEFAULT_DSP_ROLES
    names = {n.strip().lower() for n in roles}
    for role, emails in config.roles.items():
        if role.strip().lower() in names:
            team.update(emails)
    return address in {a.strip().lower() for a in team}


def remember_message(app: App, message_id: str, reference: str, kind: str) -> None:
    """Record the Message-ID of mail about a case whose ID the reference alone does not fix."""
    app.ledger.db.execute(
        "INSERT INTO case_messages (message_id, reference, kind) VALUES (?, ?, ?) "
        "ON CONFLICT(message_id) DO NOTHING",
        (message_id, reference, kind),
    )


def join(app: App, source_key: str, reference: str) -> None:
    """Record, before any step, that this item is a follow-up to ``reference``."""
    app.ledger.db.execute(
        "UPDATE items SET case_ref = ? WHERE source_key = ? AND case_ref IS NULL "
        "AND reference IS NULL",
        (reference, source_key),
    )


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------------------- the steps


@dataclass
class FollowUp:
    """A follow-up in flight this cycle. ``concern`` holds the new message as a concern would
    (its reference is the case's), for the alert's detail rules and urgency."""

    source_key: str
    concern: Concern
    how: str
    sender: str | None
    subject: str
    mail_item_id: str | None = None
    ack_to: str | None = None  # set when processed; None when none is due

    @property
    def reference(self) -> str:
        return self.concern.reference

    @property
    def event_key(self) -> str:
        return f"{self.reference}|followup|{self.source_key}"


def follow_up(
    concern: Concern,
    decision: Decision,
    *,
    sender: str | None,
    subject: str,
    mail_item_id: str | None = None,
) -> FollowUp:
    assert decision.case is not None
    return FollowUp(
        source_key=concern.source_key,
        concern=replace(concern, reference=decision.case),
        how=decision.how,
        sender=sender,
        subject=subject,
        mail_item_id=mail_item_id,
    )


def process(intake: Intake, items: Sequence[FollowUp], mailbox: Mailbox | None) -> None:
    """Alert, chronology row, acknowledgement, processed: each once, as for a new concern."""
    if not items:
        return
    register_status = intake._register_status()
    for item in items:
        on_team = on_safeguarding_team(intake.app, item.sender)
        item.ack_to = None if on_team else intake._ack_address(item.sender)
        _alert(intake, item, register_status)
    _write(intake, items)
    for item in items:
        _acknowledge(intake, item)
    for item in items:
        _finish(intake, item, mailbox)


def _alert(intake: Intake, item: FollowUp, register_status: str | None) -> None:
    app, ledger = intake.app, intake.ledger
    row = ledger.item(item.source_key)
    if row is None or row.alerted_at:
        return
    concern = item.concern
    people = app.config.people
    urgent = "URGENT – " if concern.critical else ""
    message = app.compose(
        kind=_ALERT_KIND,
        key=item.source_key,
        to=[people.dsp.email],
        cc=people.deputy_cc,
        subject=f"[Prevent] {urgent}New information on {concern.reference}",
        template="followup_alert",
        context={
            "concern": concern,
            "how": item.how,
            "recorded_at": concern.recorded_at,
            "register_link": app.config.register.link or "",
            "register_pending": register_status,
            "full": app.config.register.alert_detail == "full",
            "dsp_name": people.dsp.name,
        },
        high_importance=concern.critical,
    )
    remember_message(app, message.message_id, concern.reference, _ALERT_KIND)
    ledger.set_critical(item.source_key, concern.critical)
    ledger.mark_tried(item.source_key, "alert")
    try:
        app.send(message)
    except ConnectorError as exc:
        intake._park(item.source_key, exc)
        intake.result.problems.append(f"{concern.reference}: follow-up alert not sent: {exc}")
        return
    intake.step_done("alert_sent", item.source_key)
    chronology.alert_sent(
        app,
        concern.reference,
        f"followup-alert|{item.source_key}",
        (*message.to, *message.cc),
        urgent=concern.critical,
        what="Alert sent (new information)",
    )
    ledger.mark_step(item.source_key, "alerted")
    intake.result.alerts += 1
    log.info(
        "follow-up alert sent for %s%s",
        concern.reference,
        " (critical)" if concern.critical else "",
    )
    intake.step_done("alerted", item.source_key)


def chronology_row(app: App, item: FollowUp) -> dict[str, Any]:
    """The follow-up as the case record holds it: who, how it joined, and the message."""
    concern = item.concern
    parts = [item.how + "."]
    if concern.indicators:
        parts.append(f"Indicators: {concern.indicators_text}")
    if concern.critical:
        parts.append(concern.critical_reason)
    if item.subject:
        parts.append(f"Subject: {item.subject}")
    if concern.account:
        parts.append(concern.account)
    if concern.attachments:
        parts.append(f"Attachments: {concern.attachments_text}")
    parts.append(f"Original: {concern.link}")
    return {
        chronology.REFERENCE: concern.reference,
        chronology.WHEN: concern.recorded_at,
        chronology.EVENT: "Follow-up received",
        chronology.BY: item.sender or concern.reported_by,
        chronology.NOTE: "\n\n".join(p for p in parts if p),
        chronology.KEY: item.event_key,
    }


def _write(intake: Intake, items: Sequence[FollowUp]) -> None:
    app, ledger = intake.app, intake.ledger
    pending: list[tuple[FollowUp, ItemRow]] = []
    for item in items:
        row = ledger.item(item.source_key)
        if row is None or row.logged_at or row.state != ItemState.OPEN:
            continue
        pending.append((item, row))
    if not pending:
        return
    tried = [i.event_key for i, r in pending if r.log_tried]
    for item, _ in pending:
        ledger.mark_tried(item.source_key, "log")
    try:
        chronology.append_once(app, [chronology_row(app, i) for i, _ in pending], tried=tried)
    except (ConnectorError, InputError) as exc:
        for item, _ in pending:
            intake._park(item.source_key, exc, short=isinstance(exc, LockedError))
        intake.result.problems.append(f"chronology: {exc}")
        return
    for item, _ in pending:
        intake.step_done("row_written", item.source_key)
        ledger.mark_step(item.source_key, "logged")
        intake.result.followups += 1
        intake.result.events += 1  # its entry is a Chronology row
        intake.step_done("logged", item.source_key)
    log.info("chronology: %d follow-up(s) added", len(pending))


def _acknowledge(intake: Intake, item: FollowUp) -> None:
    app, ledger = intake.app, intake.ledger
    row = ledger.item(item.source_key)
    if row is None or row.acked_at or not row.alerted_at:
        return
    to = item.ack_to
    if to is None:
        return
    if not may_acknowledge(app, to, f"{item.reference} ({item.source_key})"):
        item.ack_to = None  # an external sender already acknowledged today: none due
        return
    message = app.compose(
        kind=_ACK_KIND,
        key=item.source_key,
        to=[to],
        subject=f"Your message has been added to {item.reference}",
        template="followup_ack",
        context={
            "reference": item.reference,
            "recorded_at": item.concern.recorded_at,
            "dsp_name": app.config.people.dsp.name,
            "dsp_email": app.config.people.dsp.email,
        },
    )
    remember_message(app, message.message_id, item.reference, _ACK_KIND)
    try:
        app.send(message)
    except ConnectorError as exc:
        intake._park(item.source_key, exc)
        return
    chronology.record(
        app,
        item.reference,
        f"followup-ack|{item.source_key}",
        "Acknowledgement sent",
        note="To the sender of the new information: added to the case",
    )
    ledger.mark_step(item.source_key, "acked")
    intake.result.acks += 1
    intake.step_done("acked", item.source_key)


def _finish(intake: Intake, item: FollowUp, mailbox: Mailbox | None) -> None:
    ledger = intake.ledger
    row = ledger.item(item.source_key)
    if row is None or row.state != ItemState.OPEN:
        return
    ack_due = item.ack_to is not None
    if not (row.alerted_at and row.logged_at and (row.acked_at or not ack_due)):
        intake.result.pending += 1
        return
    if item.mail_item_id is not None and (
        mailbox is None or not intake._mark_processed(item.mail_item_id, item.source_key)
    ):
        intake.result.pending += 1
        return
    ledger.finish(item.source_key, ItemState.DONE, note=f"follow-up to {item.reference}")
    intake.result.done += 1
    intake.step_done("done", item.source_key)
