"""Follow-ups join their case: threading or a quoted reference, from someone on the case."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connectors.base import OutboundMessage
from connectors.memory import MemoryMailbox, MemorySender, MemoryWorkbook
from service.app import App
from service.cases import chronology, escalation
from service.cases.register import register_table_spec
from service.config import Config
from service.intake import pipeline
from tests.conftest import Clock, make_memory_app
from tests.service.intake.test_pipeline import deliver, mail

REPORTER = "Jordan Lee <jordan.lee@example.org>"


@pytest.fixture
def app(make_config: Callable[..., Config], clock: Clock) -> Iterator[App]:
    """Memory backends, with the organisation's own domain configured."""
    app = make_memory_app(make_config({"organisation": {"domains": ["example.org"]}}), clock)
    yield app
    app.close()


def sent(app: App) -> list[OutboundMessage]:
    return list(app.sender().sent)  # type: ignore[attr-defined]


def first_concern(app: App, clock: Clock, **kw: Any) -> tuple[OutboundMessage, OutboundMessage]:
    """PRV-2026-0001 from REPORTER, logged; its (alert, acknowledgement)."""
    deliver(app, mail(message_id="<first@example.org>", sender=kw.get("sender", REPORTER)))
    pipeline.poll(app)
    clock.advance(minutes=5)
    [alert, ack] = sent(app)
    assert "New safeguarding concern PRV-2026-0001" in alert.subject
    assert "has been received" in ack.subject
    return alert, ack


def register_refs(app: App) -> list[str]:
    return [r["Reference"] for r in app.workbook("register").read_table("Concerns").rows]


def case_rows(app: App, reference: str = "PRV-2026-0001") -> list[dict[str, Any]]:
    rows = app.workbook("register").read_table(chronology.TABLE).rows
    return [r for r in rows if r["Reference"] == reference]


def follow_ups(app: App) -> list[dict[str, Any]]:
    return [r for r in case_rows(app) if r["Event"] == "Follow-up received"]


def new_mail(app: App, before: int) -> list[OutboundMessage]:
    return sent(app)[before:]


def assert_joined(app: App, before: int, sender: str, *, urgent: bool = False) -> None:
    assert register_refs(app) == ["PRV-2026-0001"]  # no new reference, no new row
    [row] = follow_ups(app)
    assert row["By"] == sender
    out = new_mail(app, before)
    [alert] = [m for m in out if "New information on PRV-2026-0001" in m.subject]
    assert alert.to == ("dsp@example.org",)
    assert ("URGENT" in alert.subject) is urgent and alert.high_importance is urgent
    [ack] = [m for m in out if "added to PRV-2026-0001" in m.subject]
    assert ack.to == (sender,)
    assert len(out) == 2
    events = [r["Event"] for r in case_rows(app)]
    assert events.count("Alert sent (new information)") == 1
    assert events.count("Acknowledgement sent") == 2  # the first concern's, and this one's


def test_a_reply_to_the_acknowledgement_joins_the_case(app: App, clock: Clock) -> None:
    _, ack = first_concern(app, clock)
    before = len(sent(app))
    deliver(
        app,
        mail(
            "He has now started sharing the videos with other learners.",
            subject=f"RE: {ack.subject}",
            message_id="<reply@example.org>",
            sender=REPORTER,
            headers={"In-Reply-To": ack.message_id, "References": ack.message_id},
        ),
    )

    result = pipeline.poll(app)
    pipeline.poll(app)  # a re-poll adds nothing

    assert result.ok and result.done == 1
    assert_joined(app, before, "jordan.lee@example.org")
    [row] = follow_ups(app)
    assert "sharing the videos" in row["Note"]  # the case record holds the new information
    assert "a reply to the service's mail about it, from the reporter" in row["Note"]
    # Summary alerts carry no learner detail; the acknowledgement never echoes it.
    assert all("videos" not in m.text for m in new_mail(app, before))
    assert app.mailbox().processed  # type: ignore[union-attr]
    assert app.ledger.db.execute("SELECT COUNT(reference) FROM items").fetchone()[0] == 1


def test_the_deputys_reply_to_the_alert_joins_the_case(app: App, clock: Clock) -> None:
    alert, _ = first_concern(app, clock)
    before = len(sent(app))
    deliver(
        app,
        mail(
            "I have spoken to the learner's tutor.",
            subject=f"RE: {alert.subject}",
            message_id="<deputy@example.org>",
            sender="Sam Patel <deputy.dsp@example.org>",
            headers={"In-Reply-To": alert.message_id},
        ),
    )

    pipeline.poll(app)

    assert register_refs(app) == ["PRV-2026-0001"]
    [row] = follow_ups(app)
    assert row["By"] == "deputy.dsp@example.org"
    assert "from the deputy DSP" in row["Note"]
    # The team gets the alert, never a reporter's acknowledgement of their own note.
    [alert] = new_mail(app, before)
    assert "New information on PRV-2026-0001" in alert.subject
    events = [r["Event"] for r in case_rows(app)]
    assert events.count("Acknowledgement sent") == 1  # the first concern's only


@pytest.mark.parametrize(
    "sender",
    ["Alex Morgan <dsp@example.org>", "Kim Shah <safeguarding.lead@example.org>"],
)
def test_the_safeguarding_teams_follow_up_gets_no_acknowledgement(
    make_config: Callable[..., Config], clock: Clock, sender: str
) -> None:
    config = make_config(
        {
            "organisation": {"domains": ["example.org"]},
            "roles": {"Designated Safeguarding Person": ["safeguarding.lead@example.org"]},
        }
    )
    app = make_memory_app(config, clock)
    try:
        alert, _ = first_concern(app, clock)
        before = len(sent(app))
        deliver(
            app,
            mail(
                "Spoke to the learner's tutor; a meeting is booked.",
                subject=f"RE: {alert.subject}",
                message_id="<team@example.org>",
                sender=sender,
                headers={"In-Reply-To": alert.message_id},
            ),
        )
        result = pipeline.poll(app)
        assert result.ok and result.done == 1 and result.acks == 0
        assert len(follow_ups(app)) == 1  # it joined the case and is in the chronology
        out = new_mail(app, before)
        assert [m.subject for m in out] == ["[Prevent] New information on PRV-2026-0001"]
        assert [r["Event"] for r in case_rows(app)].count("Acknowledgement sent") == 1
    finally:
        app.close()


def test_a_reply_all_from_an_internal_colleague_joins_the_case(app: App, clock: Clock) -> None:
    alert, _ = first_concern(app, clock)
    before = len(sent(app))
    deliver(
        app,
        mail(
            "I saw the same thing in the workshop yesterday.",
            subject="RE: [Prevent] New safeguarding concern PRV-2026-0001",
            message_id="<colleague@example.org>",
            sender="Pat Jones <pat.jones@example.org>",
            headers={"References": f"<other@example.org> {alert.message_id}"},
        ),
    )

    pipeline.poll(app)

    assert_joined(app, before, "pat.jones@example.org")


def test_a_critical_follow_up_is_urgent(app: App, clock: Clock) -> None:
    _, ack = first_concern(app, clock)
    before = len(sent(app))
    deliver(
        app,
        mail(
            "He is now in contact with extremist recruiters.",
            subject=f"RE: {ack.subject}",
            message_id="<urgent@example.org>",
            sender=REPORTER,
        ),
    )

    pipeline.poll(app)

    assert_joined(app, before, "jordan.lee@example.org", urgent=True)


def test_a_stranger_quoting_a_reference_starts_a_new_concern_that_says_so(
    app: App, clock: Clock
) -> None:
    first_concern(app, clock)
    # A display name is not an address: this is random@evil.test.
    deliver(
        app,
        mail(
            "More about this case.",
            subject="PRV-2026-0001 update",
            message_id="<spoof@evil.test>",
            sender='"dsp@example.org" <random@evil.test>',
        ),
    )

    pipeline.poll(app)

    assert register_refs(app) == ["PRV-2026-0001", "PRV-2026-0002"]
    assert follow_ups(app) == []
    [alert] = [m for m in sent(app) if "New safeguarding concern PRV-2026-0002" in m.subject]
    assert "quotes PRV-2026-0001 from random@evil.test, who is not on that case" in alert.text
    assert "PRV-2026-0001" in alert.html and "random@evil.test" in alert.html


def test_forged_threading_headers_from_a_stranger_do_not_join(app: App, clock: Clock) -> None:
    # Message-IDs are fixed by reference, so anyone can write the acknowledgement's.
    _, ack = first_concern(app, clock)
    deliver(
        app,
        mail(
            "Hello",
            subject="hello",
            message_id="<forged@evil.test>",
            sender="Someone <someone@elsewhere.test>",
            headers={"In-Reply-To": ack.message_id},
        ),
    )

    pipeline.poll(app)

    assert register_refs(app) == ["PRV-2026-0001", "PRV-2026-0002"]
    [alert] = [
        m for m in sent(app) if "PRV-2026-0002" in m.subject and "New safeguarding" in m.subject
    ]
    assert "quotes PRV-2026-0001 from someone@elsewhere.test" in alert.text


def test_a_forward_quoting_two_references_is_a_new_concern_naming_both(
    app: App, clock: Clock
) -> None:
    first_concern(app, clock)
    deliver(app, mail(message_id="<second@example.org>", sender="Kim <kim@example.org>"))
    pipeline.poll(app)
    deliver(
        app,
        mail(
            "Are these two the same learner?",
            subject="FW: PRV-2026-0001 and PRV-2026-0002",
            message_id="<fw@example.org>",
            sender="Alex Morgan <dsp@example.org>",
        ),
    )

    pipeline.poll(app)

    assert register_refs(app) == ["PRV-2026-0001", "PRV-2026-0002", "PRV-2026-0003"]
    assert (
        follow_ups(app) == []
        and [r for r in case_rows(app, "PRV-2026-0002") if r["Event"] == "Follow-up received"] == []
    )
    [alert] = [m for m in sent(app) if "New safeguarding concern PRV-2026-0003" in m.subject]
    assert "It quotes PRV-2026-0001 and PRV-2026-0002" in alert.text
    assert "more than one case" in alert.text


def test_threading_wins_over_a_second_reference_in_the_subject(app: App, clock: Clock) -> None:
    alert, _ = first_concern(app, clock)
    deliver(app, mail(message_id="<second@example.org>", sender="Kim <kim@example.org>"))
    pipeline.poll(app)
    before = len(sent(app))
    deliver(
        app,
        mail(
            "Linked to the other one.",
            subject="RE: PRV-2026-0001 – see also PRV-2026-0002",
            message_id="<both@example.org>",
            sender="Sam Patel <deputy.dsp@example.org>",
            headers={"In-Reply-To": alert.message_id},
        ),
    )

    pipeline.poll(app)

    assert register_refs(app) == ["PRV-2026-0001", "PRV-2026-0002"]
    assert_joined_count = [r["Event"] for r in case_rows(app)].count("Follow-up received")
    assert assert_joined_count == 1
    assert len(new_mail(app, before)) == 1  # the alert; the deputy is not acknowledged


def test_a_follow_up_while_the_register_is_locked_waits_for_its_entry(
    app: App, clock: Clock
) -> None:
    _, ack = first_concern(app, clock)
    register = app.workbook("register")
    assert isinstance(register, MemoryWorkbook)
    register.locked = True
    before = len(sent(app))
    deliver(
        app,
        mail(
            "More.",
            subject=f"RE: {ack.subject}",
            message_id="<locked@example.org>",
            sender=REPORTER,
        ),
    )

    result = pipeline.poll(app)

    # The alert does not wait on the register; it says the entry is pending.
    [alert] = [m for m in new_mail(app, before) if "New information" in m.subject]
    assert "PRV-2026-0001" in alert.subject
    assert "Pending" in alert.text
    processed = app.mailbox().processed  # type: ignore[union-attr]
    assert result.pending == 1 and len(processed) == 1  # the first concern's only
    register.locked = False
    clock.advance(minutes=30)
    pipeline.poll(app)
    pipeline.poll(app)
    assert len(follow_ups(app)) == 1
    assert len([m for m in sent(app) if "New information" in m.subject]) == 1
    assert len(processed) == 2


def test_a_duplicate_follow_up_is_added_once(app: App, clock: Clock) -> None:
    _, ack = first_concern(app, clock)
    reply = mail(
        "More.", subject=f"RE: {ack.subject}", message_id="<dup@example.org>", sender=REPORTER
    )
    deliver(app, reply, item_id="a")
    deliver(app, reply, item_id="b")

    result = pipeline.poll(app)

    assert result.duplicates == 1
    assert len(follow_ups(app)) == 1


def test_a_follow_up_is_neither_escalated_nor_counted_as_a_concern(app: App, clock: Clock) -> None:
    _, ack = first_concern(app, clock)
    deliver(
        app,
        mail("More.", subject=f"RE: {ack.subject}", message_id="<x@example.org>", sender=REPORTER),
    )
    pipeline.poll(app)
    clock.advance(hours=app.config.register.escalate_after_hours * 1.5)

    report = escalation.check(app)

    assert report.checked == 1
    assert [ref for ref, _ in report.escalated] == ["PRV-2026-0001"]


def test_a_full_detail_follow_up_alert_carries_the_text(
    make_config: Callable[..., Config], clock: Clock
) -> None:
    config = make_config({"register": {"alert_detail": "full"}, "intake": {"forms": None}})
    register = MemoryWorkbook()
    spec = register_table_spec()
    register.add_table(spec.table, [c.header for c in spec.columns], [])
    app = App(
        config,
        now=clock,
        mailbox=MemoryMailbox(),
        sender=MemorySender(),
        workbooks={"register": register},
    )
    _, ack = first_concern(app, clock)
    deliver(
        app,
        mail(
            "The videos again.",
            subject=f"RE: {ack.subject}",
            message_id="<full@example.org>",
            sender=REPORTER,
        ),
    )

    pipeline.poll(app)

    [alert] = [m for m in sent(app) if "New information" in m.subject]
    assert "The videos again." in alert.text and "The videos again." in alert.html
    app.close()


def test_a_form_answer_naming_a_reference_joins_the_case(app: App, clock: Clock) -> None:
    first_concern(app, clock)
    forms = app.workbook("forms")
    assert isinstance(forms, MemoryWorkbook)
    table = forms.read_table("Table1")
    answers = {h: "" for h in table.headers}
    account = next(h for h in table.headers if "describe" in h.lower() or "what" in h.lower())
    answers.update(
        {
            "ID": 1,
            "Completion time": clock.now.replace(tzinfo=None),
            "Email": "jordan.lee@example.org",
            "Name": "Jordan Lee",
            account: "Further to PRV-2026-0001: he was absent again today.",
        }
    )
    forms.append_rows("Table1", [answers])

    pipeline.poll(app)

    assert register_refs(app) == ["PRV-2026-0001"]
    [row] = follow_ups(app)
    assert "absent again" in row["Note"] and row["By"] == "jordan.lee@example.org"
