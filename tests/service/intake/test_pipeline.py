"""The intake cycle on in-memory backends: every guarantee of design.md flows 1–3."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest

from connectors.base import OutboundMessage
from service.app import App
from service.cases.register import SOURCE_KEY, STATUS, STATUS_NEW
from service.errors import TransientError
from service.intake import pipeline
from service.intake.forms import forms_table_spec
from service.ledger import ItemState
from tests.conftest import Clock


def mail(
    body: str = "I am worried about a learner who seems isolated.",
    *,
    subject: str = "Concern about a learner",
    sender: str = "Jordan Lee <jordan.lee@example.org>",
    message_id: str | None = "<m1@example.org>",
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "safeguarding@example.org"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 23 Nov 2026 09:12:00 +0000"
    if message_id:
        msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


def sent(app: App) -> list[OutboundMessage]:
    return list(app.sender().sent)  # type: ignore[attr-defined]


def alerts(app: App) -> list[OutboundMessage]:
    return [m for m in sent(app) if "dsp@example.org" in m.to]


def acks(app: App) -> list[OutboundMessage]:
    return [m for m in sent(app) if "has been received" in m.subject]


def register_rows(app: App) -> list[dict[str, Any]]:
    return list(app.workbook("register").read_table("Concerns").rows)


def deliver(app: App, raw: bytes, item_id: str | None = None) -> None:
    app.mailbox().deliver(raw, item_id=item_id)  # type: ignore[union-attr]


def test_an_emailed_concern_is_alerted_logged_acknowledged_and_moved(memory_app: App) -> None:
    deliver(memory_app, mail("Riley said violence is justified and the Leamington group is right."))

    result = pipeline.poll(memory_app)

    assert (result.new, result.done, result.alerts, result.logged, result.acks) == (1, 1, 1, 1, 1)
    [alert] = alerts(memory_app)
    assert alert.to == ("dsp@example.org",) and alert.cc == ("deputy.dsp@example.org",)
    assert "PRV-2026-0001" in alert.subject
    # Summary alerts carry no learner detail: not the account, not the subject line.
    assert "Riley" not in alert.text and "Riley" not in alert.html
    assert "Concern about a learner" not in alert.text
    assert "Prevent Officer" in alert.text  # the area's referral contacts
    [row] = register_rows(memory_app)
    assert row["Reference"] == "PRV-2026-0001"
    assert row[STATUS] == STATUS_NEW
    assert row[SOURCE_KEY].startswith("mail:")
    assert "Riley" in row["Account"]
    assert row["Reporter email"] == "jordan.lee@example.org"
    [ack] = acks(memory_app)
    assert ack.to == ("jordan.lee@example.org",)
    assert "PRV-2026-0001" in ack.text
    assert "Riley" not in ack.text and "Concern about a learner" not in ack.subject
    mailbox = memory_app.mailbox()
    assert len(mailbox.processed) == 1 and not mailbox.inbox  # type: ignore[union-attr]
    assert memory_app.ledger.counts_by_state() == {ItemState.DONE: 1}


def test_replies_go_to_a_person_except_a_reporters_reply_to_the_acknowledgement(
    memory_app: App,
) -> None:
    # Everything leaves from the safeguarding mailbox, and what lands there becomes a concern:
    # a reply-all between the DSP and the deputy must not come back as a new concern.
    deliver(memory_app, mail("Riley said violence is justified."))
    pipeline.poll(memory_app)

    [alert] = alerts(memory_app)
    [ack] = acks(memory_app)
    assert alert.reply_to == "dsp@example.org"
    assert alert.to_email()["Reply-To"] == "dsp@example.org"
    assert ack.reply_to is None  # the reporter's reply is a follow-up: it should come back
    assert ack.to_email()["Reply-To"] is None


def test_every_message_has_html_and_text_and_is_marked_auto_generated(memory_app: App) -> None:
    deliver(memory_app, mail())
    pipeline.poll(memory_app)
    for message in sent(memory_app):
        mime = message.to_email()
        assert mime["Auto-Submitted"] == "auto-generated"
        types = [part.get_content_type() for part in mime.walk()]
        assert "text/plain" in types and "text/html" in types


def test_a_second_cycle_does_nothing_new(memory_app: App) -> None:
    deliver(memory_app, mail())
    pipeline.poll(memory_app)
    result = pipeline.poll(memory_app)
    assert result.new == 0 and len(sent(memory_app)) == 2 and len(register_rows(memory_app)) == 1


def test_critical_risk_factor_sends_high_importance(memory_app: App) -> None:
    deliver(
        memory_app,
        mail(
            "He has been accessing extremist websites and is in contact with extremist recruiters."
        ),
    )
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    assert alert.high_importance
    assert alert.to_email()["Importance"] == "High"
    assert "URGENT" in alert.subject
    [row] = register_rows(memory_app)
    assert row["Critical risk factor"].startswith("Suggested")
    assert "Suggested" in row["Risk indicators"]


def test_an_ordinary_concern_is_normal_importance(memory_app: App) -> None:
    deliver(memory_app, mail("She missed two sessions this week; I think she is bored."))
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    assert not alert.high_importance and "Importance" not in alert.to_email()


def test_full_detail_alert_carries_the_account(
    make_config: Callable[..., Any], clock: Clock
) -> None:
    from connectors.memory import MemoryMailbox, MemorySender, MemoryWorkbook

    config = make_config(register={"alert_detail": "full"}, intake={"forms": None})
    register = MemoryWorkbook()
    from service.cases.register import register_table_spec

    spec = register_table_spec()
    register.add_table("Concerns", [c.header for c in spec.columns], [])
    app = App(
        config,
        now=clock,
        mailbox=MemoryMailbox(),
        sender=MemorySender(),
        workbooks={"register": register},
    )
    deliver(app, mail("The learner <b>Riley</b> said something worrying."))
    pipeline.poll(app)
    [alert] = alerts(app)
    assert "Riley" in alert.text
    assert "&lt;b&gt;Riley&lt;/b&gt;" in alert.html  # autoescaped, never live HTML
    app.close()


@pytest.mark.parametrize(
    ("headers", "sender"),
    [
        ({"Auto-Submitted": "auto-replied"}, "Jamie Fox <jamie.fox@example.org>"),
        ({"Precedence": "bulk"}, "News <news@example.org>"),
        ({"Auto-Submitted": "auto-generated"}, "Prevent <safeguarding@example.org>"),  # ours
    ],
)
def test_automatic_and_own_mail_never_becomes_a_concern(
    memory_app: App, headers: dict[str, str], sender: str
) -> None:
    deliver(memory_app, mail(headers=headers, sender=sender, subject="Automatic reply: away"))
    result = pipeline.poll(memory_app)
    assert result.ignored == 1 and not sent(memory_app) and not register_rows(memory_app)
    assert len(memory_app.mailbox().processed) == 1  # type: ignore[union-attr]


def test_a_bounce_is_not_a_concern_and_gets_no_acknowledgement(memory_app: App) -> None:
    bounce = (
        b"From: Mail Delivery System <MAILER-DAEMON@example.org>\r\n"
        b"To: safeguarding@example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b"Message-ID: <b1@example.org>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.org\r\n\r\n"
        b"Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        b"--r--\r\n"
    )
    deliver(memory_app, bounce)
    result = pipeline.poll(memory_app)
    assert result.ignored == 1 and not acks(memory_app) and not register_rows(memory_app)


def test_same_message_id_twice_is_one_concern(memory_app: App) -> None:
    deliver(memory_app, mail(message_id="<same@example.org>"), item_id="a")
    deliver(memory_app, mail(message_id="<same@example.org>"), item_id="b")
    result = pipeline.poll(memory_app)
    assert result.duplicates == 1 and len(alerts(memory_app)) == 1
    assert len(register_rows(memory_app)) == 1 and len(acks(memory_app)) == 1


def test_references_are_sequential_per_year(memory_app: App, clock: Clock) -> None:
    deliver(memory_app, mail(message_id="<1@example.org>"))
    deliver(memory_app, mail(message_id="<2@example.org>"))
    pipeline.poll(memory_app)
    clock.now = datetime(2027, 1, 1, 0, 30, tzinfo=UTC)
    deliver(memory_app, mail(message_id="<3@example.org>"))
    pipeline.poll(memory_app)
    refs = [r["Reference"] for r in register_rows(memory_app)]
    assert refs == ["PRV-2026-0001", "PRV-2026-0002", "PRV-2027-0001"]


def test_a_locked_register_does_not_hold_up_the_alert(memory_app: App, clock: Clock) -> None:
    register = memory_app.workbook("register")
    register.locked = True  # type: ignore[attr-defined]
    deliver(memory_app, mail())

    first = pipeline.poll(memory_app)

    [alert] = alerts(memory_app)
    assert "Pending" in alert.text
    assert not register_rows(memory_app)
    assert first.pending == 1 and not first.ok
    assert memory_app.mailbox().inbox  # type: ignore[union-attr]  # not moved: row still owed

    register.locked = False  # type: ignore[attr-defined]
    clock.advance(minutes=5)
    second = pipeline.poll(memory_app)

    assert second.logged == 1 and second.done == 1
    assert len(alerts(memory_app)) == 1  # no second alert
    assert len(register_rows(memory_app)) == 1
    assert len(acks(memory_app)) == 1


def test_an_unreadable_message_is_quarantined_and_the_dsp_told(memory_app: App) -> None:
    deliver(memory_app, b"\x00\x01\x02 not mail at all \xff" * 10)
    result = pipeline.poll(memory_app)
    assert result.quarantined == 1
    [notice] = sent(memory_app)
    assert notice.to == ("dsp@example.org",) and "needs a person" in notice.subject
    assert not register_rows(memory_app)
    assert len(memory_app.mailbox().quarantined) == 1  # type: ignore[union-attr]


def test_formula_text_is_kept_as_text(memory_app: App) -> None:
    deliver(memory_app, mail(subject='=HYPERLINK("http://example.org","x")'))
    pipeline.poll(memory_app)
    [row] = register_rows(memory_app)
    assert "HYPERLINK" in row["Summary"]


def test_a_reporter_quoting_their_reference_adds_to_the_case_not_a_new_row(
    memory_app: App,
) -> None:
    deliver(memory_app, mail(message_id="<1@example.org>"))
    pipeline.poll(memory_app)
    deliver(
        memory_app, mail(subject="RE: Your concern PRV-2026-0001", message_id="<2@example.org>")
    )
    pipeline.poll(memory_app)
    [row] = register_rows(memory_app)  # (tests/service/cases/test_followups.py: the rest)
    assert row["Reference"] == "PRV-2026-0001"


class FlakySender:
    """A sender whose first ``failures`` sends raise a transient error."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def send(self, message: OutboundMessage) -> None:
        if self.failures:
            self.failures -= 1
            raise TransientError("server busy", retry_after=1)
        self.inner.send(message)

    def close(self) -> None:
        pass


def test_a_failing_alert_is_retried_later_and_the_row_still_written(
    memory_app: App, clock: Clock
) -> None:
    inner = memory_app.sender()
    memory_app._sender = FlakySender(inner, failures=1)  # type: ignore[assignment]
    deliver(memory_app, mail())
    first = pipeline.poll(memory_app)
    assert first.alerts == 0 and first.logged == 1 and first.pending == 1
    # An alert that did not go is the cycle's problem, not an "ok" cycle (status, admin).
    assert not first.ok and "PRV-2026-0001" in first.problems[0]
    clock.advance(minutes=10)
    second = pipeline.poll(memory_app)
    assert second.alerts == 1 and second.done == 1 and second.ok
    assert len(register_rows(memory_app)) == 1


def test_a_quarantine_notice_that_cannot_be_sent_is_a_problem(
    memory_app: App, clock: Clock
) -> None:
    inner = memory_app.sender()
    memory_app._sender = FlakySender(inner, failures=1)  # type: ignore[assignment]
    deliver(memory_app, b"\x00\x01 not mail at all")
    first = pipeline.poll(memory_app)
    assert first.quarantined == 0 and not first.ok
    clock.advance(minutes=10)
    assert pipeline.poll(memory_app).quarantined == 1


# -- Forms ---------------------------------------------------------------------------------


def form_row(response_id: int, **answers: str) -> list[Any]:
    from service.config import DEFAULT_FORM_COLUMNS

    started = datetime(2026, 11, 23, 10, 0)
    return [
        response_id,
        started,
        started,
        answers.pop("email", "chris.tutor@example.org"),
        answers.pop("name", "Chris Tutor"),
        *(answers.get(f, "") for f in DEFAULT_FORM_COLUMNS),
    ]


def completed_at(row: list[Any], when: datetime) -> list[Any]:
    """``row`` with its Start and Completion times set to ``when`` (naive, local as Forms)."""
    return [row[0], when, when, *row[3:]]


def add_forms(app: App, rows: list[list[Any]], headers: list[str] | None = None) -> None:
    spec = forms_table_spec()
    forms = app.workbook("forms")
    forms.add_table("Table1", headers or [c.header for c in spec.columns], rows)  # type: ignore[attr-defined]


def test_form_responses_become_concerns_with_reported_indicators(memory_app: App) -> None:
    from service.indicators import form_choices

    critical = next(c for c in form_choices() if "recruiters" in c.lower())
    add_forms(
        memory_app,
        [
            form_row(
                1,
                person_of_concern="Avery Quinn",
                account="Avery asked about joining.",
                indicators=f"{critical};",
                area="Coventry",
            ),
            form_row(
                2, email="anonymous", name="", account="Something else.", person_of_concern="Drew"
            ),
        ],
    )
    result = pipeline.poll(memory_app)
    assert result.new == 2 and result.logged == 2 and result.done == 2
    rows = register_rows(memory_app)
    assert rows[0]["Person of concern"] == "Avery Quinn"
    assert rows[0]["Risk indicators"].startswith("Reported")
    assert rows[0]["Critical risk factor"] == "Yes"
    assert rows[1]["Reported by"] == "anonymous"
    first_alert = alerts(memory_app)[0]
    assert first_alert.high_importance and "Avery" not in first_alert.text
    assert "Coventry Prevent Officer" in first_alert.text
    assert "Prevent Officer, " not in first_alert.text  # only the matching area's contacts
    assert [a.to for a in acks(memory_app)] == [("chris.tutor@example.org",)]  # anonymous: none
    assert pipeline.poll(memory_app).new == 0


def test_a_renamed_form_question_is_a_clear_error_and_nothing_is_lost(
    memory_app: App,
) -> None:
    spec = forms_table_spec()
    headers = [c.header for c in spec.columns]
    headers[headers.index("Centre or area")] = "Which centre?"
    add_forms(memory_app, [form_row(1, account="x")], headers=headers)
    result = pipeline.poll(memory_app)
    assert not result.ok
    assert "'Centre or area'" in result.problems[0] and "area" in result.problems[0]
    assert not sent(memory_app) and memory_app.ledger.counts_by_state() == {}


# -- crash and resume -------------------------------------------------------------------------


class Crash(BaseException):
    """Stands in for the process dying (BaseException: nothing catches it on the way up)."""


STEPS = pipeline.STEPS


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_resumes_with_one_row_and_one_alert(
    memory_app: App, clock: Clock, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    deliver(memory_app, mail())

    def crash(self: pipeline.Intake, name: str, key: str) -> None:
        if name == step:
            raise Crash(name)

    monkeypatch.setattr(pipeline.Intake, "step_done", crash)
    with pytest.raises(Crash):
        pipeline.poll(memory_app)
    monkeypatch.undo()
    clock.advance(minutes=1)
    pipeline.poll(memory_app)
    clock.advance(hours=2)
    pipeline.poll(memory_app)

    assert len(alerts(memory_app)) == 1
    assert len(register_rows(memory_app)) == 1
    assert len(acks(memory_app)) == 1
    assert memory_app.ledger.counts_by_state() == {ItemState.DONE: 1}
    assert memory_app.ledger.item_by_reference("PRV-2026-0001") is not None


def test_references_never_repeat_one_the_register_already_shows(memory_app: App) -> None:
    """A new or restored ledger must not hand out PRV-2026-0001 again."""
    from service.cases.register import REGISTER_COLUMNS

    register = memory_app.workbook("register")
    register.append_rows(  # type: ignore[union-attr]
        "Concerns",
        [{"Reference": "PRV-2026-0041", "Source key": "mail:old"}],
    )
    assert len(REGISTER_COLUMNS) > 2
    deliver(memory_app, mail())
    pipeline.poll(memory_app)
    assert register_rows(memory_app)[-1]["Reference"] == "PRV-2026-0042"


def test_a_cycle_that_keeps_failing_emails_the_admin_once_a_day(
    memory_app: App, clock: Clock
) -> None:
    add_forms(memory_app, [form_row(1, account="x")], headers=["ID", "Something else"])
    for _ in range(5):
        assert not pipeline.poll(memory_app).ok
        clock.advance(minutes=1)
    notices = [m for m in sent(memory_app) if m.to == ("it-admin@example.org",)]
    assert len(notices) == 1 and "keeps failing" in notices[0].subject
    clock.advance(days=1)
    pipeline.poll(memory_app)
    assert len([m for m in sent(memory_app) if m.to == ("it-admin@example.org",)]) == 2


def test_a_person_sending_as_the_shared_mailbox_is_heard(memory_app: App) -> None:
    """A DSP forwarding a concern from the shared mailbox into it is not loop mail."""
    deliver(memory_app, mail(sender="Safeguarding <safeguarding@example.org>", subject="FW: x"))
    result = pipeline.poll(memory_app)
    assert result.ignored == 0 and len(register_rows(memory_app)) == 1
    assert not acks(memory_app)  # never acknowledge our own address


def test_our_own_alert_coming_back_is_ignored(memory_app: App) -> None:
    deliver(memory_app, mail())
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    deliver(memory_app, alert.to_email().as_bytes(), item_id="bounced-back")
    result = pipeline.poll(memory_app)
    assert result.ignored == 1 and len(register_rows(memory_app)) == 1


def test_immediate_danger_on_the_form_makes_the_alert_urgent_and_says_why(
    memory_app: App,
) -> None:
    add_forms(memory_app, [form_row(1, account="x", immediate_danger="Yes")])
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    assert alert.high_importance
    assert "immediate danger" in alert.text and "immediate danger" in alert.html


def test_no_danger_answer_is_not_called_danger(memory_app: App) -> None:
    add_forms(memory_app, [form_row(1, account="x", immediate_danger="No")])
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    assert not alert.high_importance and "immediate danger" not in alert.text


def test_only_new_form_responses_are_taken_on_later_cycles(memory_app: App) -> None:
    add_forms(memory_app, [form_row(1, account="first")])
    assert pipeline.poll(memory_app).new == 1
    forms = memory_app.workbook("forms")
    forms.append_rows(
        "Table1",
        [dict(zip(forms.read_table("Table1").headers, form_row(2, account="second"), strict=True))],
    )
    second = pipeline.poll(memory_app)
    assert second.new == 1 and second.logged == 1
    assert [r["Account"] for r in register_rows(memory_app)] == ["first", "second"]


def app_starting_after(start_after_id: int, make_config: Callable[..., Any], clock: Clock) -> App:
    """An App on memory backends whose forms config says ``start_after_id``."""
    from connectors.memory import MemoryMailbox, MemorySender, MemoryWorkbook
    from service.cases.register import register_table_spec

    register = MemoryWorkbook()
    register.add_table("Concerns", [c.header for c in register_table_spec().columns], [])
    return App(
        make_config(intake={"forms": {"start_after_id": start_after_id}}),
        now=clock,
        mailbox=MemoryMailbox(),
        sender=MemorySender(),
        workbooks={"register": register, "forms": MemoryWorkbook()},
    )


def test_responses_from_before_the_service_can_be_left_out(
    make_config: Callable[..., Any], clock: Clock
) -> None:
    app = app_starting_after(2, make_config, clock)
    add_forms(app, [form_row(n, account=f"answer {n}") for n in (1, 2, 3)])
    assert pipeline.poll(app).new == 1
    assert [r["Account"] for r in register_rows(app)] == ["answer 3"]
    app.close()


def same_workbooks_new_ledger(app: App, make_config: Callable[..., Any], clock: Clock) -> App:
    """The service on another server, or after its state folder was lost: the same mailbox,
    sender and workbooks, an empty ledger."""
    config = make_config(state={"path": str(app.config.state.path) + "-rebuilt"})
    return App(
        config,
        now=clock,
        mailbox=app.mailbox(),
        sender=app.sender(),
        workbooks={"register": app.workbook("register"), "forms": app.workbook("forms")},
    )


def add_form_responses(app: App, *ids: int) -> None:
    forms = app.workbook("forms")
    headers = forms.read_table("Table1").headers
    rows = [dict(zip(headers, form_row(n, account=f"answer {n}"), strict=True)) for n in ids]
    forms.append_rows("Table1", rows)


def test_a_new_ledger_does_not_take_in_form_responses_the_register_holds(
    memory_app: App, make_config: Callable[..., Any], clock: Clock
) -> None:
    add_forms(memory_app, [form_row(1, account="answer 1"), form_row(2, account="answer 2")])
    assert pipeline.poll(memory_app).alerts == 2
    rebuilt = same_workbooks_new_ledger(memory_app, make_config, clock)
    add_form_responses(rebuilt, 3)

    result = pipeline.poll(rebuilt)

    assert (result.new, result.alerts, result.logged) == (1, 1, 1)
    assert [r["Account"] for r in register_rows(rebuilt)] == ["answer 1", "answer 2", "answer 3"]
    assert len(alerts(rebuilt)) == 3  # two from before, one new: no second alert for 1 and 2
    assert register_rows(rebuilt)[-1]["Reference"].endswith("-0003")
    for key in ("form:1", "form:2"):
        row = rebuilt.ledger.item(key)
        assert row is not None and row.state == ItemState.DONE
    assert pipeline.poll(rebuilt).new == 0
    rebuilt.ledger.close()


def test_a_ledger_restored_from_an_old_backup_repeats_no_reference_and_no_alert(
    memory_app: App, make_config: Callable[..., Any], clock: Clock
) -> None:
    """The backup knows response 1; responses 2 and a mail came after it. Restored, the
    ledger must not alert response 2 again nor give the next concern a reference in use."""
    import sqlite3
    from pathlib import Path

    add_forms(memory_app, [form_row(1, account="answer 1")])
    pipeline.poll(memory_app)
    backup = Path(str(memory_app.config.state.path) + "-rebuilt") / "ledger.sqlite3"
    backup.parent.mkdir()
    with sqlite3.connect(backup) as copy:
        memory_app.ledger.db.backup(copy)
    copy.close()
    clock.advance(minutes=5)
    add_form_responses(memory_app, 2)
    deliver(memory_app, mail(message_id="<m2@example.org>"))
    pipeline.poll(memory_app)
    assert [r["Reference"] for r in register_rows(memory_app)][-1].endswith("-0003")

    restored = same_workbooks_new_ledger(memory_app, make_config, clock)
    clock.advance(minutes=5)
    deliver(restored, mail(message_id="<m3@example.org>"))
    result = pipeline.poll(restored)

    assert (result.alerts, result.logged) == (1, 1)
    references = [r["Reference"] for r in register_rows(restored)]
    assert len(references) == 4 and len(set(references)) == 4, references
    assert len(alerts(restored)) == 4  # one per concern: none for response 2 again
    restored.ledger.close()


def test_the_register_is_only_asked_about_responses_the_ledger_does_not_know(
    memory_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    register = memory_app.workbook("register")
    asked: list[list[str]] = []
    real = register.find_rows

    def counting(table: str, column: str, values: Any) -> dict[str, int]:
        if column == SOURCE_KEY:
            asked.append(list(values))
        return real(table, column, values)

    monkeypatch.setattr(register, "find_rows", counting)
    add_forms(memory_app, [form_row(1, account="answer 1")])
    pipeline.poll(memory_app)  # a ledger just opened (new, or restored): looked up
    pipeline.poll(memory_app)  # nothing new: no look-up
    add_form_responses(memory_app, 2, 3)
    pipeline.poll(memory_app)  # above the highest ID this open ledger took: surely new

    assert asked == [["form:1"]]
    assert len(register_rows(memory_app)) == 3


def test_a_new_ledger_that_cannot_read_the_register_takes_responses_in_rather_than_lose_them(
    memory_app: App, make_config: Callable[..., Any], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_forms(memory_app, [form_row(1, account="answer 1")])
    rebuilt = same_workbooks_new_ledger(memory_app, make_config, clock)

    def unreachable(*_: Any) -> dict[str, int]:
        raise TransientError("the register could not be reached")

    monkeypatch.setattr(rebuilt.workbook("register"), "find_rows", unreachable)
    result = pipeline.poll(rebuilt)

    assert (result.new, result.alerts) == (1, 1)
    rebuilt.ledger.close()


def replace_form(app: App, rows: list[list[Any]]) -> None:
    """The Forms workbook now holds another form's responses (numbered from 1 again)."""
    spec = forms_table_spec()
    app.workbook("forms").add_table("Table1", [c.header for c in spec.columns], rows)  # type: ignore[attr-defined]


def test_a_replaced_form_whose_numbering_begins_again_loses_no_concern(
    memory_app: App, clock: Clock
) -> None:
    add_forms(memory_app, [form_row(1, account="last year")])
    assert pipeline.poll(memory_app).alerts == 1
    clock.advance(days=60)
    new_year = datetime(2027, 1, 22, 9, 30)  # a new form: its first response is ID 1 again
    replace_form(memory_app, [completed_at(form_row(1, account="this year"), new_year)])

    result = pipeline.poll(memory_app)

    assert (result.new, result.alerts, result.logged) == (1, 1, 1)
    rows = register_rows(memory_app)
    assert [r["Account"] for r in rows] == ["last year", "this year"]
    assert rows[1][SOURCE_KEY] == "form:1:2027-01-22T09:30"
    assert pipeline.poll(memory_app).new == 0  # and taken once


def test_a_response_deleted_after_its_alert_does_not_stay_pending_for_ever(
    memory_app: App,
) -> None:
    add_forms(memory_app, [form_row(1, account="deleted later")])
    memory_app.workbook("register").locked = True  # type: ignore[attr-defined]
    first = pipeline.poll(memory_app)
    assert (first.alerts, first.logged) == (1, 0)  # alerted; the row waits for the register
    memory_app.workbook("register").locked = False  # type: ignore[attr-defined]
    replace_form(memory_app, [])  # the DSP deleted the response in Forms

    second = pipeline.poll(memory_app)

    assert any("deleted from the form after the alert" in p for p in second.problems)
    assert any("add its register row by hand" in p for p in second.problems)
    assert memory_app.ledger.counts_by_state() == {ItemState.DONE: 1}
    third = pipeline.poll(memory_app)
    assert third.ok and not third.problems
    assert len(alerts(memory_app)) == 1


def test_a_response_read_with_its_time_a_few_hours_off_is_still_the_same_one(
    memory_app: App,
) -> None:
    row = form_row(1, account="once")
    add_forms(memory_app, [row])
    pipeline.poll(memory_app)
    # e.g. a later version reads Forms' times in another zone: the same response, not a new one
    replace_form(memory_app, [completed_at(row, row[2] + timedelta(hours=5))])

    assert pipeline.poll(memory_app).new == 0
    assert len(register_rows(memory_app)) == 1


def test_start_after_id_never_skips_a_response_completed_after_the_first_cycle(
    make_config: Callable[..., Any], clock: Clock
) -> None:
    app = app_starting_after(40, make_config, clock)  # 40 handled by hand
    before = clock.now.replace(tzinfo=None) - timedelta(days=3)
    add_forms(app, [completed_at(form_row(n, account=f"old {n}"), before) for n in (39, 40)])
    assert pipeline.poll(app).new == 0  # answered before the service: left out, as configured
    clock.advance(days=200)
    later = clock.now.replace(tzinfo=None)
    replace_form(app, [completed_at(form_row(1, account="new form"), later)])

    result = pipeline.poll(app)

    assert (result.new, result.alerts) == (1, 1)
    assert [r["Account"] for r in register_rows(app)] == ["new form"]
    app.close()


@pytest.mark.parametrize(("days", "warned"), [(12, True), (90, False)])
def test_the_admin_is_warned_weeks_before_the_certificate_expires(
    memory_app: App, clock: Clock, days: int, warned: bool
) -> None:
    from datetime import timedelta

    expires = clock.now + timedelta(days=days, hours=1)
    memory_app.mailbox().credential_expires_at = lambda: expires  # type: ignore[union-attr]
    for _ in range(3):  # many polls in a day: one warning
        pipeline.poll(memory_app)
        clock.advance(minutes=20)
    notices = [m for m in sent(memory_app) if "certificate expires" in m.subject]
    assert len(notices) == (1 if warned else 0)
    if warned:
        assert f"in {days} days" in notices[0].subject and notices[0].high_importance


@pytest.mark.parametrize(
    "answer",
    [
        "chris.tutor@example.org\r\nBcc: someone@example.net",
        "chris.tutor@example.org, someone@example.net",
        "Chris Tutor <chris.tutor@example.org>; someone@example.net",
    ],
)
def test_a_form_email_answer_that_is_not_one_address_gets_no_acknowledgement(
    memory_app: App, answer: str
) -> None:
    """The answer is typed text: it must never add headers or recipients to mail we send."""
    add_forms(memory_app, [form_row(1, email=answer, account="x")])
    result = pipeline.poll(memory_app)
    assert result.done == 1 and len(alerts(memory_app)) == 1
    assert acks(memory_app) == []
    for message in sent(memory_app):
        message.to_email()  # every message we sent is well formed
