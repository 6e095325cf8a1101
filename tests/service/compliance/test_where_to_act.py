"""Reminders say where to act (the workbook, the course) and keep manager-only items away from
a mailbox everyone reads."""

from __future__ import annotations

from service.compliance.reminders import run_cycle
from tests.service.compliance.reminder_support import make_app, make_config
from tests.service.compliance.test_reminders import DEMO_DAY, ED, STAFF, TM

WORKBOOK = "https://trainingco.sharepoint.com/sites/Safeguarding/Compliance/Compliance.xlsx"
COURSES = {
    "prevent": "https://learning.trainingco.org.uk/prevent",
    "dsp": "https://learning.trainingco.org.uk/dsp-refresher",
    "induction": "https://learning.trainingco.org.uk/induction",
}


def digests(config_changes: dict[str, object]) -> dict[str, tuple[str, str]]:
    app, _clock, sender, _ = make_app(today=DEMO_DAY, config=make_config(**config_changes))
    run_cycle(app, DEMO_DAY)
    return {m.to[0]: (m.text, m.html) for m in sender.sent}


def test_digests_link_the_workbook_and_each_kind_of_course_in_both_parts() -> None:
    sent = digests({"workbook_link": WORKBOOK, "course_links": COURSES})

    for text, html in (sent[ED], sent[STAFF]):  # action plan and policy items
        assert f"compliance workbook ({WORKBOOK})" in text
        assert f'<a href="{WORKBOOK}"' in html
    for person, course in (
        ("jordan.lee@example.org", "prevent"),
        ("riley.evans@example.org", "induction"),
        ("deputy.dsp@example.org", "dsp"),
    ):
        text, html = sent[person]
        assert f"Open the course: {COURSES[course]}" in text, person
        assert f'<a href="{COURSES[course]}"' in html, person
        assert "reply to this e-mail with the date you completed it" in text
    # A manager overseeing someone's overdue training is not told to do the course.
    assert "Training: do the course" not in sent[TM][0]


def test_without_links_nothing_dangles() -> None:
    sent = digests({})
    text, html = sent["jordan.lee@example.org"]
    assert "Open the course" not in text and "<a href" not in html.split("<body", 1)[1]
    assert "the compliance workbook (ask plan.owner@example.org where it is)" in sent[ED][0]


def test_a_mailbox_everyone_reads_never_gets_manager_only_items() -> None:
    # Misconfigured so that escalations, team summaries and cells not understood would go to
    # "All staff": they go to the admin instead; All staff keeps the items it owns.
    app, _clock, _sender, _ = make_app(
        today=DEMO_DAY,
        config=make_config(escalate_to_role="All staff", plan_owner="All staff"),
    )
    report = run_cycle(app, DEMO_DAY)
    sections = {d.recipient: {e.section for e in d.entries} for d in report.digests}
    assert sections[STAFF] <= {"overdue", "today", "soon"}, sections[STAFF]
    assert {"escalated", "not_understood"} <= sections["admin@example.org"]
    problems = [e.why for d in report.digests for e in d.entries if e.section == "not_understood"]
    assert any("reaches everyone" in why for why in problems)
