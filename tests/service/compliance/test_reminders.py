"""The reminder cycle on the demo plan and on edge cases: exactly once, catch-up, working days."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, date, datetime, time

import pytest

from connectors.memory import MemoryWorkbook
from service.compliance.reminders import (
    digest_anchor,
    plan_command,
    remind_command,
    report_bounce,
    run_cycle,
    scheduled_cycle,
    steps_until,
)
from service.compliance.workbook import (
    ACTION_COLUMNS,
    ACTION_TABLE,
    TRAINING_COLUMNS,
    TRAINING_TABLE,
    compliance_table_specs,
)
from service.errors import TransientError
from tests.service.compliance.reminder_support import (
    LONDON,
    make_app,
    make_config,
    workbook_from_specs,
)

DEMO_DAY = date(2026, 11, 25)  # a Wednesday; the demo is laid out for this day
HEADERS = [c.header for c in ACTION_COLUMNS]

ED = "ed@example.org"
OD = "operations.director@example.org"
TM = "training.manager1@example.org"
STAFF = "all.staff@example.org"
PLAN_OWNER = "plan.owner@example.org"


def sent_entries(app, report) -> dict[str, list[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    """recipient → [(first words of the item, section)] of the digests sent by ``report``."""
    return {
        d.recipient: [(" ".join(e.title.split()[:3]), e.section) for e in d.entries]
        for d in report.digests
        if d.sent
    }


# ---------------------------------------------------------------------------- the demo


def test_demo_first_day_sends_one_digest_per_recipient_with_all_their_items() -> None:
    app, _clock, sender, _ = make_app(today=DEMO_DAY)
    report = run_cycle(app, DEMO_DAY)
    assert sent_entries(app, report) == {
        STAFF: [("Review safety reports", "soon"), ("Review section 1", "soon")],
        "casey.brown@example.org": [("Prevent training for", "overdue")],
        ED: [
            ("Review: Prevent (counter-terrorism)", "overdue"),
            ("Review Acceptable Use", "overdue"),
            ("Review Business Continuity", "soon"),
            ("Raise awareness amongst", "escalated"),
            ("Evaluate training and", "escalated"),
        ],
        "jordan.lee@example.org": [("Prevent training for", "soon")],
        OD: [
            ("Raise awareness amongst", "overdue"),
            ("Evaluate training and", "overdue"),
            ("Deploy an emergency", "today"),
            ("Amend Safeguarding policies", "today"),
        ],
        "riley.evans@example.org": [("Induction Prevent training", "soon")],
        "deputy.dsp@example.org": [("DSP training for", "soon")],
        TM: [
            ("Evaluate training and", "overdue"),
            ("Review safety reports", "soon"),
            ("Review classroom feedback", "soon"),
            ("Review section 1", "soon"),
            ("Prevent training for", "escalated"),
            ("1 in your", "team"),
        ],
    }
    assert len(sender.sent) == 8
    assert all(len(m.to) == 1 for m in sender.sent)
    # Completed rows (WRAP training, premises review) are silent.
    texts = "\n".join(m.text for m in sender.sent)
    assert "Key personnel to attend WRAP training" not in texts
    assert "Review premises, safety procedures" not in texts


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        # Casey was nudged yesterday (the demo day's catch-up sent overdue:2); overdue:3
        # falls today but waits until that nudge is overdue_every_days (7) old.
        (date(2026, 11, 26), {}),
        (
            date(2026, 11, 30),  # Monday: month-end due dates and a new week's team summary
            {
                STAFF: [("Review safety reports", "today")],
                ED: [("Review Business Continuity", "today")],
                TM: [("Review safety reports", "today"), ("1 in your", "team")],
            },
        ),
        (
            # A week after the demo day: overdue:1 of the items due then, and the next nudge
            # for everything already overdue on the demo day (a week after that catch-up).
            date(2026, 12, 2),
            {
                "casey.brown@example.org": [("Prevent training for", "overdue")],
                ED: [
                    ("Review: Prevent (counter-terrorism)", "overdue"),
                    ("Review Acceptable Use", "overdue"),
                    ("Raise awareness amongst", "escalated"),
                    ("Evaluate training and", "escalated"),
                ],
                "jordan.lee@example.org": [("Prevent training for", "today")],
                OD: [
                    ("Raise awareness amongst", "overdue"),
                    ("Evaluate training and", "overdue"),
                    ("Deploy an emergency", "overdue"),
                    ("Amend Safeguarding policies", "overdue"),
                ],
                TM: [
                    ("Evaluate training and", "overdue"),
                    ("Review classroom feedback", "today"),
                    ("Prevent training for", "escalated"),
                ],
            },
        ),
    ],
)
def test_demo_on_later_days_after_daily_runs(
    day: date, expected: dict[str, list[tuple[str, str]]]
) -> None:
    app, clock, _sender, _ = make_app(today=DEMO_DAY)
    current = DEMO_DAY
    report = run_cycle(app, current)
    while current < day:
        current = date.fromordinal(current.toordinal() + 1)
        clock.set_local(current)
        report = run_cycle(app, current)
    assert sent_entries(app, report) == expected


def test_overdue_nudges_stay_a_week_apart_after_the_catch_up() -> None:
    app, clock, _sender, _ = make_app(today=DEMO_DAY)
    days: dict[str, list[date]] = {}
    current = DEMO_DAY
    while current <= date(2026, 12, 31):
        clock.set_local(current)
        for digest in run_cycle(app, current).digests:
            for entry in digest.entries:
                if entry.section in ("overdue", "escalated") and entry.due and entry.due < DEMO_DAY:
                    days.setdefault(f"{digest.recipient} {entry.item_id}", []).append(current)
        current = date.fromordinal(current.toordinal() + 1)
    casey = next(v for k, v in days.items() if k.startswith("casey.brown@example.org"))
    assert casey[:3] == [DEMO_DAY, date(2026, 12, 2), date(2026, 12, 9)]
    for sent in days.values():
        gaps = [(b - a).days for a, b in itertools.pairwise(sent)]
        assert all(gap >= 7 for gap in gaps), (sent, gaps)


def test_a_reply_to_a_reminder_goes_to_the_plan_owner_not_the_safeguarding_mailbox() -> None:
    app, _clock, sender, _ = make_app(today=DEMO_DAY)
    run_cycle(app, DEMO_DAY)

    assert sender.sent
    owner = app.config.role_addresses("Plan owner")[0]
    assert {m.reply_to for m in sender.sent} == {owner}
    assert owner != app.config.intake.address


def test_running_twice_sends_nothing_new() -> None:
    app, _clock, sender, _ = make_app(today=DEMO_DAY)
    out = io.StringIO()
    assert remind_command(app, DEMO_DAY, False, out) == 0
    count = len(sender.sent)
    assert count == 8
    out = io.StringIO()
    assert remind_command(app, DEMO_DAY, False, out) == 0
    assert len(sender.sent) == count
    assert "sent 0 digest(s)" in out.getvalue()


def test_dry_run_prints_a_table_and_sends_and_records_nothing() -> None:
    app, _clock, sender, wb = make_app(today=DEMO_DAY)
    out = io.StringIO()
    assert remind_command(app, DEMO_DAY, True, out) == 0
    text = out.getvalue()
    assert text.splitlines()[0].split() == ["recipient", "item", "due", "why"]
    assert f"{OD}  Deploy an emergency incident response process" in text
    assert "due today" in text and "overdue 20 days; escalated" in text
    assert "would send 8 digest(s)" in text
    assert sender.sent == []
    assert app.ledger.db.execute("SELECT COUNT(*) FROM reminders").fetchone()[0] == 0
    assert all(not r["ID"] for r in wb.read_table(ACTION_TABLE).rows)  # no writes either
    # The real run afterwards still sends everything.
    assert run_cycle(app, DEMO_DAY).sent == 8


def test_catch_up_after_weeks_is_one_digest_each_with_the_latest_step() -> None:
    app, clock, sender, _ = make_app(today=DEMO_DAY)
    run_cycle(app, DEMO_DAY)
    gap_day = date(2026, 12, 24)  # four weeks of downtime
    clock.set_local(gap_day)
    before = len(sender.sent)
    report = run_cycle(app, gap_day)
    recipients = [m.to[0] for m in sender.sent[before:]]
    assert len(recipients) == len(set(recipients)) == 8  # one digest each, not a flood
    casey = next(d for d in report.digests if d.recipient == "casey.brown@example.org")
    assert [(e.step, e.section) for e in casey.entries] == [("overdue:7", "overdue")]
    states = dict(
        app.ledger.db.execute(
            "SELECT step, state FROM reminders WHERE recipient = ? AND item_id LIKE 'Training:%'",
            ("casey.brown@example.org",),
        ).fetchall()
    )
    assert states["overdue:2"] == "sent"  # the demo day
    assert {states[f"overdue:{k}"] for k in (3, 4, 5, 6)} == {"superseded"}
    assert states["overdue:7"] == "sent"
    # The item due on the demo day + 30 (Christmas Day) is "due tomorrow" on the 24th.
    staff = next(d for d in report.digests if d.recipient == STAFF)
    assert ("before:1", "soon") in [(e.step, e.section) for e in staff.entries]


def test_bank_holidays_and_weekends_send_nothing_and_move_to_the_next_working_day() -> None:
    app, clock, sender, _ = make_app(today=DEMO_DAY)
    run_cycle(app, DEMO_DAY)
    clock.set_local(date(2026, 12, 24))
    run_cycle(app, date(2026, 12, 24))
    before = len(sender.sent)
    for holiday in (date(2026, 12, 25), date(2026, 12, 26), date(2026, 12, 27), date(2026, 12, 28)):
        clock.set_local(holiday)
        report = run_cycle(app, holiday)
        assert not report.working_day and report.sent == 0
    assert len(sender.sent) == before
    clock.set_local(date(2026, 12, 29))
    report = run_cycle(app, date(2026, 12, 29))
    staff = next(d for d in report.digests if d.recipient == STAFF)
    section1 = next(e for e in staff.entries if e.title.startswith("Review section 1"))
    assert (section1.due, section1.step) == (date(2026, 12, 25), "due")


def one_item_workbook(
    due: object, *, owner: str = "Executive Director", **kw: object
) -> MemoryWorkbook:
    wb = workbook_from_specs(compliance_table_specs(False, DEMO_DAY))
    row = dict.fromkeys(HEADERS)
    row.update(Objective="Objective", Action="The action", Owner=owner, Due=due, **kw)
    wb.add_table(ACTION_TABLE, HEADERS, [list(row.values())], sheet="Action plan")
    return wb


def run_days(app, clock, days: list[date]) -> dict[date, list[str]]:  # type: ignore[no-untyped-def]
    out: dict[date, list[str]] = {}
    for day in days:
        clock.set_local(day)
        report = run_cycle(app, day)
        out[day] = [e.step for d in report.digests for e in d.entries]
    return out


def test_a_due_date_on_a_sunday() -> None:
    sunday = date(2026, 11, 29)
    app, clock, sender, _ = make_app(today=date(2026, 10, 1), workbook=one_item_workbook(sunday))
    days = [date(2026, 10, 30), date(2026, 11, 23), date(2026, 11, 27), date(2026, 11, 30)]
    assert run_days(app, clock, days) == {
        date(2026, 10, 30): ["before:30"],
        date(2026, 11, 23): ["before:7"],  # Sun 22nd → Mon 23rd
        date(2026, 11, 27): [],  # Fri: the 1-day step falls on Sat → Mon
        date(2026, 11, 30): ["due"],  # Mon: the day-before and the due day, latest only
    }
    states = dict(app.ledger.db.execute("SELECT step, state FROM reminders").fetchall())
    assert states == {
        "before:30": "sent",
        "before:7": "sent",
        "before:1": "superseded",
        "due": "sent",
    }
    assert "overdue 1 day" in sender.sent[-1].text


def test_overdue_nudges_then_escalation_after_the_configured_days() -> None:
    due = date(2026, 11, 2)  # Monday
    config = make_config(overdue_every_days=7, escalate_after_days_overdue=14)
    app, clock, sender, _ = make_app(
        today=due, workbook=one_item_workbook(due, owner="Operations Director"), config=config
    )
    days = [due, date(2026, 11, 9), date(2026, 11, 16), date(2026, 11, 23)]
    sent: dict[date, list[tuple[str, str]]] = {}
    for day in days:
        clock.set_local(day)
        report = run_cycle(app, day)
        sent[day] = [(d.recipient, e.step) for d in report.digests for e in d.entries]
    assert sent == {
        due: [(OD, "due")],
        date(2026, 11, 9): [(OD, "overdue:1")],
        date(2026, 11, 16): [(ED, "overdue:2"), (OD, "overdue:2")],
        date(2026, 11, 23): [(ED, "overdue:3"), (OD, "overdue:3")],
    }
    assert sender.sent[-2].high_importance  # the escalated copy to the Executive Director


def test_complete_rows_get_nothing() -> None:
    app, _clock, sender, _ = make_app(
        today=DEMO_DAY, workbook=one_item_workbook(DEMO_DAY, Status="Complete")
    )
    report = run_cycle(app, DEMO_DAY)
    assert report.items == 0 and report.sent == 0 and sender.sent == []


def test_not_understood_cells_are_reported_once_per_change_and_get_no_reminders() -> None:
    wb = one_item_workbook("sometime in the autumn", owner="Finance Director")
    app, clock, sender, _ = make_app(today=DEMO_DAY, workbook=wb)
    report = run_cycle(app, DEMO_DAY)
    assert [d.recipient for d in report.digests] == [PLAN_OWNER]
    entries = report.digests[0].entries
    assert {(e.section, e.where) for e in entries} == {
        ("not_understood", "Action plan row 2, column Due"),
        ("not_understood", "Action plan row 2, column Owner"),
    }
    text = sender.sent[0].text
    assert "sometime in the autumn" in text and "Finance Director" in text
    assert "unknown role" in text
    # Next day: nothing new.
    clock.set_local(date(2026, 11, 26))
    assert run_cycle(app, date(2026, 11, 26)).sent == 0
    # The cell changes but is still unreadable: reported again, the owner cell is not.
    row = wb.tables[ACTION_TABLE].rows[0]
    row[HEADERS.index("Due")] = "TBC"
    report = run_cycle(app, date(2026, 11, 26))
    assert [(e.where, e.title) for d in report.digests for e in d.entries] == [
        ("Action plan row 2, column Due", "TBC")
    ]
    # Fixed: now the item gets its reminders.
    row[HEADERS.index("Due")] = date(2026, 11, 26)
    row[HEADERS.index("Owner")] = "Executive Director"
    report = run_cycle(app, date(2026, 11, 26))
    assert [(d.recipient, e.step) for d in report.digests for e in d.entries] == [(ED, "due")]


def test_recurring_item_reminds_before_each_occurrence_and_a_weekend_one_on_monday() -> None:
    # Termly with a term end on Saturday 19 December 2026.
    app, clock, sender, _ = make_app(today=date(2026, 12, 1), workbook=one_item_workbook("termly"))
    got = run_days(
        app, clock, [date(2026, 12, 1), date(2026, 12, 14), date(2026, 12, 18), date(2026, 12, 21)]
    )
    assert got == {
        date(2026, 12, 1): ["before:30"],  # caught up: the 30-day step was on 19 November
        date(2026, 12, 14): ["before:7"],  # Sat 12th → Mon 14th
        date(2026, 12, 18): ["before:1"],
        date(2026, 12, 21): ["due"],  # Saturday's due day goes out on Monday
    }
    assert "recurring" in sender.sent[-1].text
    # No overdue nudges for a recurring item: the next term end takes over.
    clock.set_local(date(2027, 1, 4))
    assert run_cycle(app, date(2027, 1, 4)).sent == 0


def test_a_send_failure_is_retried_without_resending_the_others() -> None:
    app, _clock, sender, _ = make_app(today=DEMO_DAY)
    sender.fail_next = TransientError("SMTP 451 try later")
    report = run_cycle(app, DEMO_DAY)
    assert report.failed == 1 and report.sent == 7
    first_try = {m.to[0] for m in sender.sent}
    report = run_cycle(app, DEMO_DAY)
    assert report.sent == 1
    assert sender.sent[-1].to[0] not in first_try
    assert run_cycle(app, DEMO_DAY).sent == 0


def test_message_ids_are_stable_for_the_same_digest() -> None:
    app1, _, sender1, _ = make_app(today=DEMO_DAY)
    app2, _, sender2, _ = make_app(today=DEMO_DAY)
    run_cycle(app1, DEMO_DAY)
    run_cycle(app2, DEMO_DAY)
    assert [m.message_id for m in sender1.sent] == [m.message_id for m in sender2.sent]
    assert len({m.message_id for m in sender1.sent}) == 8


def test_bounce_of_a_reminder_is_reported_to_the_admin_once() -> None:
    app, _clock, sender, _ = make_app(today=DEMO_DAY)
    run_cycle(app, DEMO_DAY)
    digest = next(m for m in sender.sent if m.to == ("jordan.lee@example.org",))
    count = len(sender.sent)
    assert report_bounce(app, digest.message_id) is True
    assert len(sender.sent) == count + 1
    notice = sender.sent[-1]
    assert notice.to == ("admin@example.org",)
    assert "jordan.lee@example.org" in notice.text and digest.message_id in notice.text
    # Headed and tagged like the service's other notices to the admin.
    assert notice.subject == "[Prevent service] A reminder could not be delivered"
    assert "A reminder could not be delivered</td>" in notice.html  # the banner
    assert report_bounce(app, digest.message_id.strip("<>")) is True  # same, without <>
    assert len(sender.sent) == count + 1
    assert report_bounce(app, "<unknown@example.org>") is False


def test_scheduled_cycle_waits_for_send_time_and_runs_once_a_day() -> None:
    app, clock, _sender, _ = make_app(today=DEMO_DAY)
    clock.set_local(DEMO_DAY, time(7, 59))
    assert scheduled_cycle(app) is None
    clock.set_local(DEMO_DAY, time(8, 0))
    report = scheduled_cycle(app)
    assert report is not None and report.sent == 8
    clock.set_local(DEMO_DAY, time(15, 0))
    assert scheduled_cycle(app) is None  # today's cycle completed
    clock.set_local(date(2026, 11, 28), time(9, 0))  # Saturday
    assert scheduled_cycle(app) is None


def test_local_day_and_send_time_follow_bst_and_gmt() -> None:
    app, clock, _sender, _ = make_app(today=DEMO_DAY)
    # 07:30 UTC is 07:30 GMT on Friday 27 March 2026 (before send time) …
    clock.when = datetime(2026, 3, 27, 7, 30, tzinfo=UTC)
    assert scheduled_cycle(app) is None
    # … but 08:30 BST on Monday 30 March 2026, after the clocks went forward.
    clock.when = datetime(2026, 3, 30, 7, 30, tzinfo=UTC)
    report = scheduled_cycle(app)
    assert report is not None and report.day == date(2026, 3, 30)
    # 23:30 UTC on 30 June is already 1 July in London.
    clock.when = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)
    assert run_cycle(app).day == date(2026, 7, 1)
    # 07:30 UTC on Monday 26 October 2026 is 07:30 GMT (clocks went back): not yet.
    clock.when = datetime(2026, 10, 26, 7, 30, tzinfo=UTC)
    assert scheduled_cycle(app) is None
    clock.when = datetime(2026, 10, 26, 8, 0, tzinfo=UTC)
    assert scheduled_cycle(app) is not None
    assert LONDON.key == "Europe/London"


def test_plan_lists_the_next_90_days_and_what_is_not_understood() -> None:
    wb = workbook_from_specs(compliance_table_specs(True, DEMO_DAY))
    wb.tables[ACTION_TABLE].rows[0][HEADERS.index("Due")] = "ongoing"
    app, _clock, sender, _ = make_app(today=DEMO_DAY, workbook=wb)
    out = io.StringIO()
    assert plan_command(app, 90, out) == 1  # something needs attention
    text = out.getvalue()
    assert "2026-11-25  today" in text
    assert "2026-12-25  in 30d" in text
    assert "2022-01-04  overdue" in text  # the Prevent policy review
    assert "Not understood (1)" in text
    assert "Action plan  2    Due     ongoing" in text
    assert sender.sent == []
    assert all(not r["ID"] for r in wb.read_table(ACTION_TABLE).rows)  # plan never writes


def test_steps_and_digest_anchor() -> None:
    config = make_config()
    assert config.compliance is not None
    steps = steps_until(date(2026, 11, 30), date(2026, 12, 31), config.compliance, recurring=False)
    assert [s.name for s in steps] == [
        "before:30",
        "before:7",
        "before:1",
        "due",
        "overdue:1",
        "overdue:2",
        "overdue:3",
        "overdue:4",
    ]
    assert [s.escalated for s in steps[-4:]] == [False, True, True, True]
    assert digest_anchor(date(2026, 11, 25), "mon") == date(2026, 11, 23)
    assert digest_anchor(date(2026, 11, 23), "mon") == date(2026, 11, 23)
    assert digest_anchor(date(2026, 11, 23), "sun") == date(2026, 11, 22)


def test_html_and_text_parts_are_both_rendered() -> None:
    app, _clock, sender, _ = make_app(today=DEMO_DAY)
    run_cycle(app, DEMO_DAY)
    message = next(m for m in sender.sent if m.to == (TM,))
    for part in (message.html, message.text):
        assert "Evaluate training and development activities" in part
        assert "Casey Brown" in part
    assert "<table" in message.html and "style=" in message.html
    assert message.subject == (
        "Prevent compliance reminders: 1 overdue, 3 due soon, 1 escalated, 1 team summary"
    )
    email = message.to_email()
    assert email["Auto-Submitted"] == "auto-generated"


# ---------------------------------------------------------------------------- Last reminded


def _plan_rows(wb: MemoryWorkbook) -> list[dict[str, object]]:
    return [dict(r) for r in wb.read_table(ACTION_TABLE).rows]


def test_last_reminded_gets_the_day_for_the_rows_reminded_and_nothing_else() -> None:
    app, _clock, _sender, wb = make_app(today=DEMO_DAY)
    run_cycle(app, DEMO_DAY, dry_run=True)
    assert all(r["Last reminded"] is None for r in _plan_rows(wb))  # a dry run writes nothing

    report = run_cycle(app, DEMO_DAY)
    rows = _plan_rows(wb)

    reminded = {
        e.title for d in report.digests for e in d.entries if e.item_id.startswith("ActionPlan:")
    }
    marked = {r["Action"] for r in rows if r["Last reminded"] == DEMO_DAY}
    assert marked == reminded and len(marked) == 9
    assert all(r["Last reminded"] is None for r in rows if r["Action"] not in reminded)
    assert report.last_reminded_written == len(marked)
    # Only that column (and the IDs) changed.
    _app2, _c, _s, fresh = make_app(today=DEMO_DAY)
    untouched = [{k: v for k, v in r.items() if k not in ("Last reminded", "ID")} for r in rows]
    assert untouched == [
        {k: v for k, v in r.items() if k not in ("Last reminded", "ID")} for r in _plan_rows(fresh)
    ]


def test_last_reminded_waits_for_a_locked_file_without_holding_back_the_digests() -> None:
    app, clock, sender, wb = make_app(today=DEMO_DAY)
    wb.locked = True

    report = run_cycle(app, DEMO_DAY)

    assert report.sent == 8 and len(sender.sent) == 8
    assert report.last_reminded_written == 0
    assert all(r["Last reminded"] is None for r in _plan_rows(wb))

    wb.locked = False
    next_day = date(2026, 11, 26)
    clock.set_local(next_day)
    report = run_cycle(app, next_day)
    assert report.sent == 0  # nothing new to send; the cells are caught up all the same
    assert report.last_reminded_written == 9
    assert sum(r["Last reminded"] == DEMO_DAY for r in _plan_rows(wb)) == 9
    # Caught up: the next cycle writes nothing.
    assert run_cycle(app, next_day).last_reminded_written == 0


def test_last_reminded_moves_on_when_a_row_is_reminded_again() -> None:
    app, clock, _sender, wb = make_app(today=DEMO_DAY)
    run_cycle(app, DEMO_DAY)
    later = date(2026, 12, 2)
    clock.set_local(later)
    report = run_cycle(app, later)
    again = {
        e.title for d in report.digests for e in d.entries if e.item_id.startswith("ActionPlan:")
    }
    rows = {r["Action"]: r["Last reminded"] for r in _plan_rows(wb)}
    assert again and all(rows[title] == later for title in again)
    assert DEMO_DAY in rows.values()  # rows not reminded since keep their day


def test_one_digest_per_person_whatever_the_case_of_their_address() -> None:
    # [roles] has ed@example.org; the Training sheet has the same person as Outlook wrote it.
    wb = one_item_workbook(DEMO_DAY)
    row = dict.fromkeys(c.header for c in TRAINING_COLUMNS)
    row.update(
        {
            "Name": "Eddie Example",
            "Email": "Ed@Example.org",
            "Role": "Executive Director",
            "Last Prevent training": date(2025, 11, 25),
        }
    )
    wb.add_table(
        TRAINING_TABLE, [c.header for c in TRAINING_COLUMNS], [list(row.values())], sheet="Training"
    )
    app, _clock, sender, _ = make_app(today=DEMO_DAY, workbook=wb)
    report = run_cycle(app, DEMO_DAY)
    assert [(d.recipient, len(d.entries)) for d in report.digests] == [(ED, 2)]
    assert len(sender.sent) == 1


def _training_workbook(last: date) -> MemoryWorkbook:
    wb = workbook_from_specs(compliance_table_specs(False, DEMO_DAY))
    row = dict.fromkeys(c.header for c in TRAINING_COLUMNS)
    row.update(Name="Jo Example", Email="jo@example.org", Role="Trainer")
    row["Last Prevent training"] = last
    wb.add_table(
        TRAINING_TABLE, [c.header for c in TRAINING_COLUMNS], [list(row.values())], sheet="Training"
    )
    return wb


@pytest.mark.parametrize(
    ("warn_days", "expected"),
    [
        (60, {date(2026, 11, 26): ["before:60"], date(2026, 12, 29): ["before:30"]}),
        (14, {date(2026, 11, 26): [], date(2026, 12, 29): [], date(2027, 1, 11): ["before:14"]}),
    ],
)
def test_training_warn_days_sets_the_first_training_reminder(
    warn_days: int, expected: dict[date, list[str]]
) -> None:
    # Training expires Monday 25 January 2027: 60 days before is Thursday 26 November, 30 days
    # before is Saturday 26 December (Monday 28th is a bank holiday), 14 days before Monday 11.
    config = make_config(training_warn_days=warn_days)
    app, clock, _sender, _ = make_app(
        today=DEMO_DAY, workbook=_training_workbook(date(2026, 1, 25)), config=config
    )
    assert run_days(app, clock, list(expected)) == expected
