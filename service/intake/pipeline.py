"""The intake cycle: every new e-mail and Forms response becomes one logged, alerted concern.

For each item: parse → reference → DSP alert → register row → acknowledgement → mark processed.
Each step is recorded in the ledger as it happens, so a crash anywhere resumes with no lost
item, no second row and no second alert:

- the alert is sent with a Message-ID fixed by the reference, and marked ``alerted`` after;
  a resend after a crash uses the same Message-ID (senders that can check send it once);
- a register append is marked ``log_tried`` first; if it was tried before, the register's
  ``Source key`` column is read back before appending again;
- the source is marked processed (moved to ``Processed``) only after the alert and the row.

The alert never waits on the register: a locked or unreachable register leaves the row
pending (written on a later cycle) while the alert goes out now saying so.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from weakref import WeakKeyDictionary, WeakSet

from connectors.base import InboundItem, Mailbox, OutboundMessage, WaitingMailbox
from service.admin.problems import record_intake_problems, still_holding
from service.app import App
from service.cases import chronology, followups, form_updates, register
from service.cases.areas import contacts_for, suggested_area_cell
from service.config import EMAIL_RE
from service.errors import (
    ConnectorError,
    InputError,
    LockedError,
    PermanentError,
    PreventServiceError,
    TransientError,
)
from service.indicators import assess, from_form_answer
from service.intake.external import is_external, may_acknowledge
from service.intake.forms import FormResponse, free_text, new_responses
from service.intake.mailparse import ParsedMail, classify, parse_message
from service.intake.original import original_link
from service.ledger import ItemRow, ItemState, Ledger
from service.ledger import iso as _iso
from service.model import Concern

log = logging.getLogger("prevent_service.intake")

# The points at which ``Intake.step_done`` is called, in order, for each item.
STEPS = (
    "seen",
    "reference",
    "alert_sent",
    "alerted",
    "row_written",
    "logged",
    "acked",
    "processed",
    "done",
)

MAX_CELL = 32_000  # Excel holds 32,767 characters in a cell; leave room for the marker
GIVE_UP_NOTICE_AFTER = 5  # attempts before the admin is told an item keeps failing
# An item still owing its alert or acknowledgement waits at most this many poll intervals
# between attempts (not the back-off's hour): when the service is back, the DSP hears soon.
SEND_RETRY_POLLS = 4

# What the register has confirmed for an open ledger: the (prefix, year) counters checked
# against it, and that Forms IDs above the ledger's highest are new. A ledger is restored
# from a backup only while the service is stopped, so once per open ledger catches that.
_SEEDED: WeakKeyDictionary[Ledger, set[tuple[str, int]]] = WeakKeyDictionary()
_FORMS_VOUCHED: WeakSet[Ledger] = WeakSet()
_FIRST_CYCLE = "intake.first_cycle_at"  # kv: when this ledger's first intake cycle ran (UTC)
# A Forms item's ledger ``message_id`` holds its completion time, so that a response reusing an
# ID (a replaced form) is told apart from the one taken before. Further apart than this: another
# response (generous, so that a change in how times are read can never re-take old ones).
_STAMP = "forms-completed:"
_SAME_RESPONSE_WITHIN = timedelta(hours=36)


def _completed_stamp(response: FormResponse) -> str | None:
    if response.completed_at is None:
        return None
    return _STAMP + response.completed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _another_response(recorded: str | None, stamp: str) -> bool:
    if not (recorded and recorded.startswith(_STAMP)):
        return False  # taken before completion times were recorded, or none: assume the same
    before = datetime.fromisoformat(recorded.removeprefix(_STAMP))
    now = datetime.fromisoformat(stamp.removeprefix(_STAMP))
    return abs(now - before) > _SAME_RESPONSE_WITHIN


@dataclass
class CycleResult:
    """What one intake cycle did (counts only: safe to log and print)."""

    new: int = 0
    done: int = 0
    pending: int = 0
    ignored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    alerts: int = 0  # DSP alerts sent (a follow-up's included)
    logged: int = 0  # concerns written to the register (one row each)
    followups: int = 0  # messages joined to an existing case (a Chronology row, no register row)
    acks: int = 0  # acknowledgements sent
    events: int = 0  # Chronology rows written (a follow-up's included)
    problems: list[str] = field(default_factory=list)
    skipped: bool = False  # another process held the intake lock
    waiting: int = 0  # items the mailbox left for the next poll (a file still being written)
    waiting_why: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        parts = [
            f"{name}={getattr(self, name)}"
            for name in (
                "new",
                "logged",
                "followups",
                "alerts",
                "acks",
                "events",
                "pending",
                "done",
                "ignored",
                "duplicates",
                "quarantined",
            )
        ]
        if self.skipped:
            return "skipped: another intake cycle is running"
        if self.waiting:
            parts.append(f"waiting={self.waiting} ({self.waiting_why}: taken on the next poll)")
        return " ".join(parts) + (f" problems={len(self.problems)}" if self.problems else "")


@dataclass
class Work:
    """An item in flight this cycle: its ledger key and, once built, its concern.
    (Its ledger row is read afresh at each step, never kept: steps change it.)"""

    source_key: str
    concern: Concern | None = None
    mail_item_id: str | None = None
    ack_to: str | None = None


def poll(app: App) -> CycleResult:
    """Run one intake cycle and record it as a run."""
    result = CycleResult()
    with app.ledger.exclusive("intake") as mine:
        if not mine:
            # Another process (the worker, or a second poll) is in a cycle right now.
            log.info("another intake cycle is running; this one skipped")
            result.skipped = True
            return result
        run_id = app.ledger.start_run("intake")
        if app.ledger.get(_FIRST_CYCLE) is None:
            app.ledger.set(_FIRST_CYCLE, app.now().astimezone(UTC).isoformat())
        started = time.monotonic()
        try:
            with app.cycle():  # a Graph register: one workbook session for the whole cycle
                Intake(app, result).run()
                written, problem = chronology.flush_counted(app)
            result.events += written
            if problem:
                result.problems.append(problem)
        except PreventServiceError as exc:
            result.problems.append(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug: recorded (class only) as a failed cycle, then raised
            result.problems.append(f"unexpected {type(exc).__name__} (run with --debug)")
            raise
        finally:
            # Items waiting out a back-off have not shown their fault is gone: not a good cycle.
            result.problems += still_holding(app, result.problems)
            app.ledger.finish_run(run_id, result.ok, result.summary())
            record_intake_problems(app, result.problems)  # for `status`
            if not result.ok:
                _tell_admin_if_failing(app, result)
        _warn_if_credential_expires(app)
        log.log(
            logging.INFO if result.ok else logging.WARNING,
            "intake cycle %s in %.2fs: %s%s",
            "ok" if result.ok else "with problems",
            time.monotonic() - started,
            result.summary(),
            "".join(f"; problem: {_content_free(p)}" for p in result.problems[:3]),
        )
    return result


FAILING_CYCLES_BEFORE_NOTICE = 3
CREDENTIAL_WARN_DAYS = 30


def _warn_if_credential_expires(app: App) -> None:
    """A certificate nearing expiry is told to the admin weeks ahead, once a day."""
    today = app.local_now().date().isoformat()
    if app.ledger.get("credential.checked") == today:
        return
    app.ledger.set("credential.checked", today)
    try:
        mailbox = app.mailbox()
    except PreventServiceError:
        return  # the cycle has reported why the mailbox cannot be built
    expires_at = getattr(mailbox, "credential_expires_at", None)
    expires = expires_at() if expires_at else None
    if expires is None:
        return
    days = (expires - app.now()).days
    if days >= CREDENTIAL_WARN_DAYS:
        return
    app.tell_admin(
        kind="credential",
        key=today,
        subject=f"The app's certificate expires in {max(days, 0)} days",
        what="The Microsoft 365 app certificate",
        problem=(
            f"It expires on {expires:%d %B %Y}. Make a new certificate, upload its public "
            "part to the app registration and point m365.certificate_path at it "
            "(docs/microsoft-365.md). After it expires the service can read and send nothing."
        ),
        high_importance=True,
    )


def _tell_admin_if_failing(app: App, result: CycleResult) -> None:
    """Alive, or loud: a cycle that keeps failing (expired secret, revoked permission, a
    workbook locked for hours) e-mails the admin — on the 3rd failure in a row, then daily."""
    failures = app.ledger.consecutive_failures("intake")
    if failures < FAILING_CYCLES_BEFORE_NOTICE:
        return
    today = app.local_now().date().isoformat()
    if app.ledger.get("intake.failing_notice") == today:
        return
    if not app.tell_admin(
        kind="failing",
        key=f"intake:{today}",
        subject="The intake cycle keeps failing",
        what="The intake cycle",
        problem="; ".join(_content_free(p) for p in result.problems[:3]),
        attempts=failures,
    ):
        return
    app.ledger.set("intake.failing_notice", today)


class Intake:
    def __init__(self, app: App, result: CycleResult) -> None:
        self.app = app
        self.ledger = app.ledger
        self.config = app.config
        self.result = result
        self.work: list[Work] = []
        self.follow_ups: list[followups.FollowUp] = []  # new information on existing cases
        self.cases = followups.Cases(app)
        self._seed_tried: set[tuple[str, int]] = set()
        self._moved: dict[str, Exception | None] = {}  # outcomes of moves done several at once

    # Called after every recorded step; a seam for crash tests (they kill the process here).
    def step_done(self, step: str, source_key: str) -> None:
        pass

    # -- the cycle ----------------------------------------------------------------------

    def run(self) -> None:
        mailbox = self.app.mailbox()
        if mailbox is not None:
            self._collect_mail(mailbox)
        if self.config.intake.forms is not None:
            self._collect_forms()
        if self.work:
            self._send_alerts()
            self._write_register()
            self._send_acks()
            self._finish(mailbox)
        followups.process(self, self.follow_ups, mailbox)

    # -- collecting ---------------------------------------------------------------------

    def _collect_mail(self, mailbox: Mailbox) -> None:
        resumed: set[str] = set()
        for row in self.ledger.open_items(now=self.app.now()):
            if row.source != "mail":
                continue
            item_id = row.source_key.removeprefix("mail:")
            resumed.add(row.source_key)
            try:
                item = mailbox.fetch(item_id)
            except InputError as exc:
                # The message is gone from the mailbox (a person moved or deleted it).
                self.result.problems.append(f"{row.reference or row.source_key}: {exc}")
                self._park(row.source_key, exc, waiting_on=None)
                continue
            except ConnectorError as exc:
                self._park(row.source_key, exc)
                continue
            self._take_mail(item, existing=row)
        try:
            for item in mailbox.fetch_new():
                key = f"mail:{item.item_id}"
                if key in resumed:
                    continue
                seen = self.ledger.item(key)
                if seen is not None and seen.state == ItemState.QUARANTINED:
                    # A person put it back in the intake folder (a raised size limit, a
                    # mended file): take it again; still unreadable, it goes back aside.
                    self.ledger.reopen_quarantined(key)
                    seen = self.ledger.item(key)
                elif seen is not None and seen.state in ItemState.FINAL:
                    # A replay (delta resync, UIDVALIDITY change, the same file dropped
                    # twice): already handled; make sure it leaves the intake folder.
                    self._mark_processed(item.item_id, key)
                    continue
                if seen is not None and seen.retry_at and seen.retry_at > _iso(self.app.now()):
                    continue  # parked; its time has not come
                self._take_mail(item, existing=seen)
                resumed.add(key)  # two files with the same bytes are one item, taken once
        except TransientError as exc:
            self.result.problems.append(f"mailbox: {exc}")
        if isinstance(mailbox, WaitingMailbox):
            self.result.waiting, self.result.waiting_why = mailbox.waiting()

    def _take_mail(self, item: InboundItem, *, existing: ItemRow | None) -> None:
        key = f"mail:{item.item_id}"
        if item.problem is not None:
            self._quarantine(item.item_id, key, item.problem)
            return
        max_bytes = self.config.intake.max_message_bytes
        if len(item.raw) > max_bytes:
            self._quarantine(
                item.item_id,
                key,
                f"message is {len(item.raw):,} bytes, over "
                f"intake.max_message_bytes ({max_bytes:,})",
            )
            return
        try:
            parsed = parse_message(item.raw)
        except InputError as exc:
            self._quarantine(item.item_id, key, f"could not be read as e-mail: {exc}")
            return
        identity = mail_identity(parsed.message_id, item.raw)
        if existing is None:
            if not self.ledger.claim_item(key, "mail", identity):
                existing = self.ledger.item(key)
            else:
                self.result.new += 1
                self.step_done("seen", key)
            existing = existing or self.ledger.item(key)
        assert existing is not None
        kind = classify(parsed, self._own_addresses())
        if kind is not None:
            self._ignore(item.item_id, key, kind, parsed)
            return
        if existing.reference is None:
            earlier = self.ledger.earlier_with_message_id(identity, key)
            if earlier is not None:
                # Final only once it has left the intake folder: a failed move parks it and
                # the next cycle tries again (nothing re-reads a finished item's mail).
                if self._mark_processed(item.item_id, key):
                    same = "Message-ID" if parsed.message_id else "bytes"
                    self.ledger.finish(key, ItemState.DUPLICATE, note=f"same {same} as {earlier}")
                    self.result.duplicates += 1
                    log.info("duplicate of %s ignored", earlier)
                return
        decision = self.cases.decide(
            sender=parsed.from_address,
            thread_ids=parsed.references,
            text=parsed.subject,
            row=existing,
        )
        if decision.case:
            followups.join(self.app, key, decision.case)
            concern = self._concern_from_mail(parsed, item, key, decision.case)
            self.follow_ups.append(
                followups.follow_up(
                    concern,
                    decision,
                    sender=parsed.from_address,
                    subject=parsed.subject,
                    mail_item_id=item.item_id,
                )
            )
            return
        reference = self._reference(key)
        concern = replace(
            self._concern_from_mail(parsed, item, key, reference), case_note=decision.note
        )
        self.work.append(
            Work(
                source_key=key,
                concern=concern,
                mail_item_id=item.item_id,
                ack_to=self._ack_address(parsed.from_address),
            )
        )

    def _collect_forms(self) -> None:
        forms = self.config.intake.forms
        assert forms is not None
        where = _where(forms.workbook, forms.table)
        try:
            table = self.app.workbook("forms").read_table(forms.table)
            responses = new_responses(
                table, forms.columns, tz=self.config.organisation.tz, where=where
            )
        except (InputError, ConnectorError) as exc:
            # Nothing is lost: the responses stay in the workbook until this is fixed.
            self.result.problems.append(f"forms: {exc}")
            return
        now_iso = _iso(self.app.now())
        self._settle_deleted_responses({r.response_id for r in responses})
        form_updates.notice(self, responses)
        responses = [r for r in responses if self._after_start(r, forms.start_after_id)]
        logged = self._forms_already_logged(responses)
        for response in responses:
            key = f"form:{response.response_id}"
            if key in logged:
                continue
            stamp = _completed_stamp(response)
            row = self.ledger.item(key)
            if row is not None and stamp is not None and _another_response(row.message_id, stamp):
                # The same ID, a different response: the form was replaced (a new year's form)
                # or its responses deleted and numbering began again. Never skip it as done.
                key = f"form:{response.response_id}:{stamp.removeprefix(_STAMP)[:16]}"
                row = self.ledger.item(key)
                log.warning(
                    "forms: response %d reuses an ID taken before; taken in as %s",
                    response.response_id,
                    key,
                )
            if row is not None and (row.state in ItemState.FINAL or (row.retry_at or "") > now_iso):
                continue
            if row is None:
                self.ledger.claim_item(key, "form", stamp)
                self.result.new += 1
                self.step_done("seen", key)
            # An answer naming an existing reference, from someone on that case: a follow-up.
            decision = self.cases.decide(
                sender=response.email,
                text="\n".join(response.answers.values()),
                row=self.ledger.item(key),
            )
            if decision.case:
                followups.join(self.app, key, decision.case)
                concern = self._concern_from_form(response, key, decision.case)
                self.follow_ups.append(
                    followups.follow_up(concern, decision, sender=response.email, subject="")
                )
                continue
            reference = self._reference(key)
            self.work.append(
                Work(
                    source_key=key,
                    concern=replace(
                        self._concern_from_form(response, key, reference), case_note=decision.note
                    ),
                    ack_to=self._ack_address(response.email),
                )
            )

    def _settle_deleted_responses(self, present: set[int]) -> None:
        """A response deleted from the form after its alert went, before its row or
        acknowledgement: nothing is left to build them from, and it would stay pending for
        ever. Close it, and say so once (the DSP has the alert; the row can be added by hand)."""
        for row in self.ledger.items_in_state(ItemState.OPEN):
            if row.source != "form" or not row.alerted_at:
                continue
            response_id = int(row.source_key.split(":")[1])
            if response_id in present:
                continue
            note = "the response was deleted from the form after the alert, before it was done"
            self.ledger.finish(row.source_key, ItemState.DONE, note=note)
            self.result.problems.append(
                f"{row.reference or row.source_key}: {note}; the DSP has the alert"
                + ("" if row.logged_at else "; add its register row by hand if it is needed")
            )

    def _after_start(self, response: FormResponse, start_after_id: int) -> bool:
        """``intake.forms.start_after_id`` leaves out responses handled by hand before the
        service was set up, never one completed after its first cycle (a replaced form whose
        numbering began again under an old setting would otherwise be skipped in silence)."""
        if response.response_id > start_after_id:
            return True
        first = self.ledger.get(_FIRST_CYCLE)
        completed = response.completed_at
        if first is None or completed is None:
            return False
        return completed.astimezone(UTC) > datetime.fromisoformat(first)

    def _forms_already_logged(self, responses: Sequence[FormResponse]) -> set[str]:
        """Keys of responses that the register holds but this ledger does not know.

        The ledger is the Forms watermark. A ledger that is lost, restored from an old backup
        or new on another server would take every earlier response in again: a second alert
        and a second row for each. So a response this ledger does not know is looked up in the
        register's Source key column first (one read, and only then). Until that look-up has
        succeeded once with this open ledger, an ID above the highest it has taken proves
        nothing: a restored ledger never saw the ones taken after its backup. After it, the
        ledger vouches for IDs above its highest (a ledger is only restored while the service
        is stopped, so the worker pays once, not every cycle). Found ones are recorded as done.
        If the register cannot be read, they go ahead: a repeated alert is safer than a lost
        one."""
        highest = self.ledger.highest_form_id() if self.ledger in _FORMS_VOUCHED else None
        doubtful = [
            f"form:{r.response_id}"
            for r in responses
            if (highest is None or r.response_id <= highest)
            and self.ledger.item(f"form:{r.response_id}") is None
        ]
        if not doubtful:
            _FORMS_VOUCHED.add(self.ledger)
            return set()
        try:
            found = self.app.workbook("register").find_rows(
                self.config.register.table, register.SOURCE_KEY, doubtful
            )
        except (ConnectorError, InputError) as exc:
            log.warning(
                "forms: could not check %d response(s) against the register: %s", len(doubtful), exc
            )
            return set()
        _FORMS_VOUCHED.add(self.ledger)
        for key in found:
            self.ledger.claim_item(key, "form", None)
            self.ledger.finish(key, ItemState.DONE, note="already in the register (ledger rebuilt)")
        if found:
            log.warning(
                "forms: %d response(s) already in the register but not in the ledger were not "
                "taken in again (a new or restored ledger)",
                len(found),
            )
        return set(found)

    # -- building concerns --------------------------------------------------------------

    def _reference(self, key: str) -> str:
        row = self.ledger.item(key)
        if row is not None and row.reference:
            return row.reference
        seen = datetime.fromisoformat(row.first_seen) if row is not None else self.app.now()
        year = seen.astimezone(self.config.organisation.tz).year
        prefix = self.config.organisation.reference_prefix
        seeded = _SEEDED.setdefault(self.ledger, set())
        if (prefix, year) not in seeded and (prefix, year) not in self._seed_tried:
            # Not only when the ledger has no counter for the year: a ledger restored from an
            # old backup has one, behind the references already handed out.
            self._seed_tried.add((prefix, year))
            if self._seed_sequence_from_register(prefix, year):
                seeded.add((prefix, year))
        reference = self.ledger.assign_reference(key, prefix, year)
        self.step_done("reference", key)
        return reference

    def _seed_sequence_from_register(self, prefix: str, year: int) -> bool:
        """Never reuse a reference the register shows (a ledger restored from an old backup,
        or a new server, must not repeat numbers). False if the register could not be read."""
        pattern = re.compile(rf"^{re.escape(prefix)}-{year}-(\d+)$")
        try:
            table = self.app.workbook("register").read_table(self.config.register.table)
        except (ConnectorError, InputError) as exc:
            log.warning("could not read the register to seed %s-%d: %s", prefix, year, exc)
            return False
        numbers = [
            int(m.group(1))
            for r in table.rows
            if (m := pattern.match(str(r.get(register.REFERENCE) or "").strip()))
        ]
        self.ledger.ensure_sequence_at_least(prefix, year, max(numbers, default=0))
        return True

    def _recorded_at(self, key: str) -> datetime:
        row = self.ledger.item(key)
        seen = datetime.fromisoformat(row.first_seen) if row else self.app.now()
        # The register shows local wall-clock time, as people read it.
        return seen.astimezone(self.config.organisation.tz).replace(tzinfo=None)

    def _concern_from_mail(
        self, parsed: ParsedMail, item: InboundItem, key: str, reference: str
    ) -> Concern:
        text = parsed.text
        notes = []
        if parsed.text_truncated or len(text) > MAX_CELL:
            text = text[:MAX_CELL]
            notes.append("account truncated to fit Excel; the full text is in the original")
        account = text
        if len(parsed.text) > MAX_CELL or parsed.text_truncated:
            account += "\n[… truncated – see the original message]"
        triage = assess(f"{parsed.subject}\n\n{parsed.text}")
        summary = parsed.subject or "(no subject)"
        return Concern(
            source_key=key,
            source="E-mail",
            reference=reference,
            recorded_at=self._recorded_at(key),
            reported_by=parsed.from_name or (parsed.from_address or "unknown sender"),
            reporter_email=parsed.from_address,
            summary=summary[:500],
            account=account,
            indicators=tuple(triage.indicators),
            indicators_suggested=True,
            suggestions=tuple(triage.suggestions),
            danger_signs=tuple(triage.danger),
            set_aside=tuple(triage.set_aside),
            # The Date header is when the mail was sent, not when anything happened:
            # "Occurred at" is left for the reporter's or the DSP's own words.
            received_at=item.received_at or self._recorded_at(key),
            area=suggested_area_cell(f"{parsed.subject}\n{parsed.text}", self.config.areas),
            attachments=tuple(a.filename for a in parsed.attachments),
            link=original_link(self.config, item),  # where the DSP can open it once processed
            message_id=parsed.message_id,
            notes=tuple(notes),
            reporter_external=is_external(self.config, parsed.from_address),
        )

    def _concern_from_form(self, response: FormResponse, key: str, reference: str) -> Concern:
        answers = response.answers
        indicators, unknown = from_form_answer(answers.get("indicators"))
        triage = assess(free_text(answers, unknown))  # typed words count as in an e-mail
        account = answers.get("account", "")
        return Concern(
            source_key=key,
            source="Form",
            reference=reference,
            recorded_at=self._recorded_at(key),
            reported_by=response.name
            or ("anonymous" if response.email is None else response.email),
            reporter_email=response.email,
            summary=_first_line(account, 120) or "(form response)",
            account=account[:MAX_CELL],
            indicators=tuple(indicators),
            indicators_suggested=False,
            unknown_indicators=tuple(unknown),
            suggestions=tuple(triage.suggestions),
            danger_signs=tuple(triage.danger),
            set_aside=tuple(triage.set_aside),
            person_of_concern=answers.get("person_of_concern", ""),
            learner_ref=answers.get("learner_ref", ""),
            dob_or_age=answers.get("dob_or_age", ""),
            area=answers.get("area", ""),
            occurred_at=answers.get("occurred_at", ""),
            immediate_action=answers.get("immediate_action", ""),
            immediate_danger=answers.get("immediate_danger", ""),
            others_told=answers.get("others_told", ""),
            link=f"Forms response ID {response.response_id} (row {response.row_number})",
            reporter_external=is_external(self.config, response.email),
            received_at=response.completed_at or self._recorded_at(key),
        )

    # -- steps --------------------------------------------------------------------------

    def _send_alerts(self) -> None:
        register_status = self._register_status()
        todo = []
        for work in self.work:
            row = self.ledger.item(work.source_key)
            if row is None or row.alerted_at or work.concern is None:
                continue
            concern = work.concern
            self.ledger.set_critical(concern.source_key, concern.critical)
            chronology.reported(self.app, concern)
            todo.append((concern, self._alert_message(concern, register_status)))
            self.ledger.mark_tried(concern.source_key, "alert")
        # A sender that can, sends several per round trip; others send each as it comes up.
        sent = self.app.sending([message for _, message in todo])
        for (concern, message), error in zip(todo, sent, strict=True):
            if error is not None:
                self._park(concern.source_key, error, waiting_on="sender")
                # The DSP has not heard: the cycle is not "ok" (status, the admin's notice).
                self.result.problems.append(f"{concern.reference}: alert not sent: {error}")
                continue
            self.step_done("alert_sent", concern.source_key)
            # Queued before the step is marked: a crash between them resends (same
            # Message-ID) and queues again, a no-op; never a step without its event.
            recipients = (*message.to, *message.cc)
            chronology.alert_sent(
                self.app, concern.reference, "alert", recipients, urgent=concern.critical
            )
            self.ledger.mark_step(concern.source_key, "alerted")
            self.result.alerts += 1
            log.info(
                "alert sent for %s%s", concern.reference, " (critical)" if concern.critical else ""
            )
            self.step_done("alerted", concern.source_key)

    def _alert_message(self, concern: Concern, register_status: str | None) -> OutboundMessage:
        people = self.config.people
        to = [people.dsp.email]
        cc = people.deputy_cc
        detail = self.config.register.alert_detail
        urgent = "URGENT – " if concern.critical else ""
        return self.app.compose(
            kind="alert",
            key=concern.reference,
            to=to,
            cc=cc,
            subject=f"[Prevent] {urgent}New safeguarding concern {concern.reference}"
            + (" (external sender)" if concern.reporter_external else ""),  # seen in the inbox
            template="alert_full" if detail == "full" else "alert_summary",
            context={
                "concern": concern,
                "recorded_at": concern.recorded_at,
                "register_link": self.config.register.link or "",
                "register_pending": register_status,
                "contacts": self._contacts_for(concern.area),
                "dsp_name": people.dsp.name,
            },
            high_importance=concern.critical,
        )

    def _register_status(self) -> str | None:
        """Why the register cannot be written now, if we can tell cheaply; else None."""
        try:
            return self.app.workbook("register").writable()
        except ConnectorError as exc:
            return str(exc)

    def _write_register(self) -> None:
        pending = []
        for work in self.work:
            row = self.ledger.item(work.source_key)
            if row is None or row.logged_at or work.concern is None or row.state != ItemState.OPEN:
                continue
            pending.append((work, row))
        if not pending:
            return
        workbook = self.app.workbook("register")
        table = self.config.register.table
        try:
            retried = [w.concern.source_key for w, r in pending if r.log_tried and w.concern]
            present = workbook.find_rows(table, register.SOURCE_KEY, retried) if retried else {}
            for key in present:
                self.ledger.mark_step(key, "logged")
                self.step_done("logged", key)
            to_add = [w for w, _ in pending if w.concern and w.concern.source_key not in present]
            if to_add:
                for work in to_add:
                    self.ledger.mark_tried(work.source_key, "log")
                rows = [register.register_row(w.concern) for w in to_add if w.concern]
                workbook.append_rows(table, rows, key_column=register.SOURCE_KEY)
                for work in to_add:
                    self.step_done("row_written", work.source_key)
                    self.ledger.mark_step(work.source_key, "logged")
                    self.result.logged += 1
                    self.step_done("logged", work.source_key)
                log.info("register: %d row(s) appended", len(to_add))
                self.ledger.release("register")  # it answers: rows parked behind it go next
        except (ConnectorError, InputError) as exc:
            # The alert has gone (or will); the row stays pending for a later cycle.
            for work, _ in pending:
                self._park(
                    work.source_key, exc, short=isinstance(exc, LockedError), waiting_on="register"
                )
            self.result.problems.append(f"register: {exc}")

    def _send_acks(self) -> None:
        todo = []
        for work in self.work:
            row = self.ledger.item(work.source_key)
            if row is None or row.acked_at or not row.alerted_at or work.concern is None:
                continue
            if work.ack_to is None:
                continue
            concern = work.concern
            if not may_acknowledge(self.app, work.ack_to, concern.reference):
                work.ack_to = None  # none due: the item finishes without one
                continue
            todo.append((concern, self._ack_message(concern, work.ack_to)))
        # A sender that can, sends several per round trip; others send each as it comes up.
        sent = self.app.sending([message for _, message in todo])
        for (concern, _message), error in zip(todo, sent, strict=True):
            if error is not None:
                self._park(concern.source_key, error, waiting_on="sender")
                continue
            chronology.record(
                self.app, concern.reference, "ack", "Acknowledgement sent", note="To the reporter"
            )
            self.ledger.mark_step(concern.source_key, "acked")
            self.result.acks += 1
            self.step_done("acked", concern.source_key)

    def _ack_message(self, concern: Concern, ack_to: str) -> OutboundMessage:
        return self.app.compose(
            kind="ack",
            key=concern.reference,
            to=[ack_to],
            subject=f"Your safeguarding concern has been received – {concern.reference}",
            template="acknowledgement",
            context={
                "reference": concern.reference,
                "recorded_at": concern.recorded_at,
                "dsp_name": self.config.people.dsp.name,
                "dsp_email": self.config.people.dsp.email,
                "via_form": concern.source == "Form",
            },
        )

    def _finish(self, mailbox: Mailbox | None) -> None:
        ready = []
        for work in self.work:
            row = self.ledger.item(work.source_key)
            if row is None or row.state != ItemState.OPEN:
                continue
            ack_due = work.ack_to is not None
            if not (row.alerted_at and row.logged_at and (row.acked_at or not ack_due)):
                self.result.pending += 1
                continue
            ready.append(work)
        # A mailbox that can move several per round trip does so now; _mark_processed then
        # takes each outcome in turn.
        many = getattr(mailbox, "mark_processed_many", None)
        ids = [w.mail_item_id for w in ready if w.mail_item_id is not None]
        if many is not None and len(ids) > 1:
            try:
                self._moved = many(ids)
            except ConnectorError:
                self._moved = {}  # one by one below, each parked on its own error
        for work in ready:
            key = work.source_key
            if work.mail_item_id is not None and (
                mailbox is None or not self._mark_processed(work.mail_item_id, key)
            ):
                self.result.pending += 1
                continue
            self.ledger.finish(key, ItemState.DONE)
            self.result.done += 1
            self.step_done("done", key)

    # -- side paths ---------------------------------------------------------------------

    def _mark_processed(self, item_id: str, key: str) -> bool:
        mailbox = self.app.mailbox()
        assert mailbox is not None
        try:
            if item_id in self._moved:
                outcome = self._moved.pop(item_id)
                if outcome is not None:
                    raise outcome
            else:
                mailbox.mark_processed(item_id)
        except InputError:
            # Gone from the mailbox (a person moved or deleted it): nothing left to move.
            log.warning("%s was no longer in the mailbox to move", key.split(":", 1)[0])
        except ConnectorError as exc:
            self._park(key, exc)
            return False
        self.step_done("processed", key)
        return True

    def _ignore(self, item_id: str, key: str, kind: str, parsed: ParsedMail) -> None:
        if kind == "bounce" and parsed.bounce_of:
            self._report_bounce(parsed.bounce_of)
        if self._mark_processed(item_id, key):
            self.ledger.finish(key, ItemState.IGNORED, note=kind)
            self.result.ignored += 1
            log.info("ignored %s (%s)", key.split(":", 1)[0], kind)

    def _report_bounce(self, message_ids: Iterable[str]) -> None:
        try:
            from service.compliance.reminders import report_bounce
        except ImportError:  # reminders not installed in this build
            return
        for message_id in message_ids:
            try:
                report_bounce(self.app, message_id)
            except ConnectorError as exc:
                self.result.problems.append(f"bounce report: {exc}")

    def _quarantine(self, item_id: str, key: str, reason: str) -> None:
        """Unreadable: move it aside and tell the DSP that something needs a human."""
        if self.ledger.item(key) is None:
            self.ledger.claim_item(key, "mail", None)
            self.result.new += 1
        row = self.ledger.item(key)
        mailbox = self.app.mailbox()
        assert mailbox is not None and row is not None
        if row.alerted_at is None:
            people = self.config.people
            message = self.app.compose(
                kind="quarantine",
                key=key,
                to=[people.dsp.email],
                cc=people.deputy_cc,
                subject="[Prevent] A message to the safeguarding mailbox needs a person to read it",
                template="quarantine_notice",
                context={
                    "reason": reason,
                    "received_at": self.app.local_now(),
                    "mailbox": self._mailbox_label(),
                    "item_id": item_id,
                },
                high_importance=True,
            )
            try:
                self.app.send(message)
            except ConnectorError as exc:
                self._park(key, exc, waiting_on="sender")
                self.result.problems.append(f"quarantine notice not sent: {exc}")
                return
            self.ledger.mark_step(key, "alerted")
        try:
            mailbox.quarantine(item_id, reason)
        except InputError:
            log.warning("a quarantined item was no longer in the mailbox to move")
        except ConnectorError as exc:
            self._park(key, exc)
            return
        self.ledger.finish(key, ItemState.QUARANTINED, note=_content_free(reason))
        self.result.quarantined += 1
        log.warning("quarantined %s: %s", key, _content_free(reason))

    def _park(
        self, key: str, exc: Exception, *, short: bool = False, waiting_on: str | None = "mailbox"
    ) -> None:
        """Put an item aside with back-off; tell the admin once if it keeps failing.

        ``waiting_on`` names the service that failed ('sender', 'register', 'mailbox'; None
        when a person must act): the sender's and the register's next success releases the
        item (``Ledger.release``)."""
        if self.ledger.item(key) is None:
            return
        if isinstance(exc, PermanentError):
            waiting_on = None  # a person must fix it: another success does not mean it is
        poll_seconds = self.config.schedule.poll_seconds
        hint = getattr(exc, "retry_after", None)
        row = self.ledger.item(key)
        attempts = (row.attempts if row else 0) + 1
        delay = poll_seconds if short else min(poll_seconds * 2 ** min(attempts, 12), 3600)
        if waiting_on == "sender" or (row is not None and row.alerted_at is None):
            delay = min(delay, poll_seconds * SEND_RETRY_POLLS)
        if hint:
            delay = max(delay, float(hint))
        message = f"{type(exc).__name__}: {_content_free(str(exc))}"
        retry_at = self.app.now() + timedelta(seconds=delay)
        attempts = self.ledger.park(key, message, retry_at, waiting_on=waiting_on)
        log.warning(
            "%s parked (attempt %d): %s", (row.reference if row else None) or key, attempts, message
        )
        if attempts == GIVE_UP_NOTICE_AFTER or (isinstance(exc, PermanentError) and attempts == 1):
            self._tell_admin(key, row.reference if row else None, message, attempts)

    def _tell_admin(self, key: str, reference: str | None, message: str, attempts: int) -> None:
        self.app.tell_admin(
            kind="problem",
            key=f"{key}:{attempts}",
            subject=f"{reference or 'An intake item'} keeps failing",
            what=reference or key,
            problem=message,
            attempts=attempts,
        )

    # -- helpers ------------------------------------------------------------------------

    def _own_addresses(self) -> set[str]:
        own = {self.config.intake.address.lower()}
        mailbox = self.config.intake.mailbox
        address = getattr(mailbox, "address", None) or getattr(mailbox, "username", None)
        if isinstance(address, str) and "@" in address:
            own.add(address.lower())
        sender = self.config.sending.sender
        sender_address = getattr(sender, "address", None)
        if isinstance(sender_address, str):
            own.add(sender_address.lower())
        return own

    def _ack_address(self, address: str | None) -> str | None:
        # One plain address only: a typed Forms answer must never add recipients or headers.
        address = (address or "").strip()
        if not EMAIL_RE.match(address):
            return None
        if address.lower() in self._own_addresses():
            return None
        return address

    def _mailbox_label(self) -> str:
        mailbox = self.config.intake.mailbox
        if mailbox is None:
            return "mailbox"
        if mailbox.backend == "imap":
            return f"{mailbox.username} (IMAP {mailbox.folder})"
        return getattr(mailbox, "address", None) or (
            "the intake folder" if mailbox.backend == "folder" else "the mailbox"
        )

    def _contacts_for(self, area_text: str) -> list[dict[str, object]]:
        """The referral contacts of the concern's area; all areas when it is not known."""
        return contacts_for(area_text, self.config.areas)


def mail_identity(message_id: str | None, raw: bytes) -> str:
    """What makes two mails the same message: the Message-ID, else the bytes' SHA-256 (a copy
    of a message without one, e.g. from a restored folder, is still recognised)."""
    return message_id or "sha256:" + hashlib.sha256(raw).hexdigest()


def _where(section: object, table: str) -> str:
    path = getattr(section, "path", None)
    return f"{path} (table {table})" if path else f"table {table}"


def _first_line(text: str, limit: int) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _content_free(message: str) -> str:
    """Error text for the ledger and logs: one line, bounded."""
    return " ".join(message.split())[:300]
