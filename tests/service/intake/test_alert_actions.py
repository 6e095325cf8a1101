"""What a DSP alert tells the DSP to do first, in both parts of the message.

An alert whose concern may involve immediate danger (the form's question answered yes, or the
words of the concern) opens with the one action that cannot wait: call 999. The reporter's
acknowledgement already said so; the DSP's alert used to leave it to the DSP to infer from
"Critical risk factor: Suggested – the wording suggests immediate danger".
"""

from __future__ import annotations

from service.app import App
from service.intake import pipeline
from tests.conftest import Clock
from tests.service.cases.test_followups import REPORTER, first_concern, sent
from tests.service.cases.test_followups import app as app
from tests.service.intake.test_pipeline import add_forms, alerts, deliver, form_row, mail

DANGER = "Sam says he has a knife in his bag and will stab Jo after registration today."


def test_an_alert_about_immediate_danger_says_call_999_before_the_facts(memory_app: App) -> None:
    deliver(memory_app, mail(DANGER))
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    for body in (alert.text, alert.html):
        assert "call 999 first" in body
        # Above the facts table, where the eye lands first.
        assert body.index("call 999") < body.index("PRV-2026-0001", body.index("Reference"))
        assert "referral contacts at the end of this e-mail" in body
    assert "knife" not in alert.text  # still no concern text in a summary alert


def test_a_form_answer_of_immediate_danger_says_call_999(memory_app: App) -> None:
    add_forms(memory_app, [form_row(1, immediate_danger="Yes", account="Details in person.")])
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    assert "call 999 first" in alert.text and "call 999 first" in alert.html


def test_a_critical_alert_without_danger_does_not_cry_999(memory_app: App) -> None:
    deliver(memory_app, mail("Riley says the people in the videos have the right idea."))
    deliver(
        memory_app,
        mail("He is now in contact with extremist recruiters.", message_id="<m2@example.org>"),
    )
    pipeline.poll(memory_app)
    urgent = [a for a in alerts(memory_app) if a.high_importance]
    assert urgent, "the recruiters concern is critical"
    for alert in alerts(memory_app):
        assert "999" not in alert.text and "999" not in alert.html


def test_a_follow_up_naming_immediate_danger_says_call_999(app: App, clock: Clock) -> None:
    _, ack = first_concern(app, clock)
    before = len(sent(app))
    deliver(
        app,
        mail(DANGER, subject=f"RE: {ack.subject}", message_id="<f@example.org>", sender=REPORTER),
    )
    pipeline.poll(app)
    [alert] = [m for m in sent(app)[before:] if "New information" in m.subject]
    for body in (alert.text, alert.html):
        assert "call 999 first" in body
        # A follow-up alert lists no referral contacts, so it must not point to them.
        assert "at the end of this e-mail" not in body
