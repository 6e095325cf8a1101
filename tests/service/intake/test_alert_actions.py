"""What a DSP alert tells the DSP to do first, in both parts of the message.

An alert whose concern may involve immediate danger (the form's question answered yes, or the
words of the concern) opens with the one action that cannot wait: call 999. The reporter's
acknowledgement already said so; the DSP's alert used to leave it to the DSP to infer from
"Critical risk factor: Suggested – the wording suggests immediate danger".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.app import App
from service.intake import pipeline
from tests.conftest import Clock
from tests.service.cases.test_followups import REPORTER, first_concern, sent
from tests.service.cases.test_followups import app as app
from tests.service.intake.test_pipeline import add_forms, alerts, deliver, form_row, mail
from tests.service.intake.test_triage_alerts import GLORIFYING, full_detail_app

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


def paragraphs_ok(text: str) -> None:
    """Plain text laid out like the HTML: one blank line between blocks, never two."""
    assert "\n\n\n" not in text, text
    assert "`" not in text  # markdown quoting means nothing in a plain-text mail


def test_the_plain_text_alert_is_spaced_like_the_html(memory_app: App) -> None:
    deliver(memory_app, mail(GLORIFYING))
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    paragraphs_ok(alert.text)
    # The urgent reason and the "no learner detail" line are two paragraphs, as in the HTML.
    assert alert.high_importance
    assert "(suggested from its wording).\n\nThis e-mail holds no learner detail" in alert.text
    assert "Referral contacts" in alert.text
    assert "\n\nPlease change the concern's Status" in alert.text


def test_a_full_alert_puts_the_concern_above_the_signature(
    make_config: Callable[..., Any], clock: Clock
) -> None:
    """Text after "-- " is a signature: mail clients grey it out or cut it from replies. The
    full alert's account came after the summary's signature, so it read as one."""
    app = full_detail_app(make_config, clock)
    deliver(app, mail(GLORIFYING))
    pipeline.poll(app)
    [alert] = alerts(app)
    paragraphs_ok(alert.text)
    assert alert.text.count("\n-- \n") == 1
    signature = alert.text.index("\n-- \n")
    assert alert.text.index(GLORIFYING) < signature
    assert alert.text.index('The concern (alert_detail = "full")') < signature
    app.close()


def test_a_follow_up_alert_is_spaced_and_quotes_the_command_plainly(
    app: App,
    clock: Clock,
) -> None:
    _, ack = first_concern(app, clock)
    before = len(sent(app))
    deliver(app, mail("More.", subject=f"RE: {ack.subject}", message_id="<f2@example.org>"))
    pipeline.poll(app)
    [alert] = [m for m in sent(app)[before:] if "New information" in m.subject]
    paragraphs_ok(alert.text)
    assert '"prevent-service case PRV-2026-0001" prints the whole case' in alert.text
    assert "in the chronology.\n\nCase:" in alert.text
    # The command is one unit to copy: the HTML never breaks it inside the reference.
    assert (
        '<code style="white-space:nowrap;">prevent-service case PRV-2026-0001</code>' in alert.html
    )


def test_a_full_alert_does_not_claim_to_hold_no_learner_detail(
    make_config: Callable[..., Any], clock: Clock
) -> None:
    """alert_detail = "full" carries the account, so "This e-mail holds no learner detail"
    (inherited from the summary alert) told the DSP it was safe to forward when it was not."""
    app = full_detail_app(make_config, clock)
    deliver(app, mail(GLORIFYING))
    pipeline.poll(app)
    [alert] = alerts(app)
    for body in (alert.text, alert.html):
        assert "no learner detail" not in body
        assert "The concern itself is below" in body
        assert "keep this e-mail as safe as the register" in body
    app.close()


def test_a_summary_alert_still_says_it_holds_no_learner_detail(memory_app: App) -> None:
    deliver(memory_app, mail(GLORIFYING))
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    for body in (alert.text, alert.html):
        assert "This e-mail holds no learner detail: open the register" in body
        assert "The concern itself is below" not in body


def test_a_full_alert_keeps_the_line_breaks_of_the_account_and_indicators(
    make_config: Callable[..., Any], clock: Clock
) -> None:
    """Outlook's Word renderer ignores white-space: pre-wrap, and the indicators cell had no
    line breaks at all in HTML: each ran into one paragraph. Breaks are <br> now, escaped."""
    app = full_detail_app(make_config, clock)
    deliver(app, mail(f"Hi,\n\n{GLORIFYING}\n<b>Jordan</b>"))
    pipeline.poll(app)
    [alert] = alerts(app)
    assert "Hi,<br>\n<br>\nCasey told the group" in alert.html
    assert "&lt;b&gt;Jordan&lt;/b&gt;" in alert.html and "<b>Jordan</b>" not in alert.html
    assert "pre-wrap" not in alert.html
    # The indicators cell: what was suggested, then which words suggested it, on its own line.
    assert "<br>\nSuggested from: &#39;" in alert.html
    # In the text part the continuation lines sit under the value column, not at the margin.
    assert "\n                       Suggested from: '" in alert.text
    assert "Person of concern:     –" in alert.text  # not a dangling label
    app.close()


def test_a_quarantine_notice_says_who_clears_it_with_a_command_that_works(
    memory_app: App,
) -> None:
    """The DSP's notice gives the item as the mailbox names it; the admin's command takes that
    same name (status lists it as mail:…), so the notice can say what to run."""
    from service.admin.status import mark_quarantine_read, quarantine_waiting

    deliver(memory_app, b"\x00\x01 not an e-mail at all", item_id="odd-1")
    pipeline.poll(memory_app)
    [notice] = [m for m in alerts(memory_app) if "needs a person" in m.subject]
    for body in (notice.text, notice.html):
        assert "prevent-service status --quarantine-read odd-1" in body
        assert "tell your IT admin" in body
    assert [r.source_key for r in quarantine_waiting(memory_app)] == ["mail:odd-1"]
    assert mark_quarantine_read(memory_app, "odd-1") == 1
    assert quarantine_waiting(memory_app) == []
