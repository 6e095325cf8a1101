"""Escalation of concerns still New, time-to-acknowledge, and the DSP's weekly digest."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from connectors.memory import MemoryWorkbook
from service.cases.escalation import (
    check,
    level_for,
    scheduled_weekly,
    time_to_acknowledge,
    weekly_digest,
)
from service.cases.register import REGISTER_COLUMNS, STATUS_CHOICES
from service.compliance.reminders import report_bounce
from tests.service.compliance.reminder_support import LONDON, make_app, make_config

HEADERS = [c.header for c in REGISTER_COLUMNS]
START = datetime(2026, 11, 23, 9, 0)  # Monday 09:00 London (GMT), as the register holds it
SECRET = "Learner Zed Example said something worrying"


def register(*rows: tuple[str, object, str]) -> MemoryWorkbook:
    wb = MemoryWorkbook(tz=LONDON, name="register.xlsx")
    data = []
    for reference, recorded, status in rows:
        row = dict.fromkeys(HEADERS)
        row.update(
            {
                "Reference": reference,
                "Recorded at": recorded,
                "Status": status,
                "Summary": SECRET,
                "Person of concern": "Zed Example",
                "Source key": f"mail:{reference}",
            }
        )
        data.append(list(row.values()))
    wb.add_table("Concerns", HEADERS, data, sheet="Register")
    return wb


def app_at(wb: MemoryWorkbook, when: datetime, **kw: object):  # type: ignore[no-untyped-def]
    app, clock, sender, _ = make_app(today=when.date(), register=wb, **kw)  # type: ignore[arg-type]
    clock.when = when.replace(tzinfo=LONDON).astimezone(UTC)
    return app, clock, sender


def at(clock, when: datetime) -> None:  # type: ignore[no-untyped-def]
    clock.when = when.replace(tzinfo=LONDON).astimezone(UTC)


def test_levels_are_one_and_two_times_the_threshold() -> None:
    assert level_for(timedelta(hours=3, minutes=59), 4) == 0
    assert level_for(timedelta(hours=4), 4) == 1
    assert level_for(timedelta(hours=7, minutes=59), 4) == 1
    assert level_for(timedelta(hours=8), 4) == 2
    assert level_for(timedelta(days=30), 4) == 2


def test_a_new_concern_escalates_once_per_level() -> None:
    wb = register(("PRV-2026-0001", START, "New"))
    app, clock, sender = app_at(wb, START + timedelta(hours=3))
    assert check(app).escalated == [] and sender.sent == []
    at(clock, START + timedelta(hours=4, minutes=1))
    assert check(app).escalated == [("PRV-2026-0001", 1)]
    first = sender.sent[-1]
    assert first.to == ("deputy@example.org", "ed@example.org")
    assert first.cc == ("dsp@example.org",)
    assert not first.high_importance
    # Tagged like every other mail about concerns, so one inbox rule or search finds them all.
    assert first.subject == "[Prevent] Concern PRV-2026-0001 not yet picked up (4 hours)"
    at(clock, START + timedelta(hours=6))
    assert check(app).escalated == []
    at(clock, START + timedelta(hours=8))
    assert check(app).escalated == [("PRV-2026-0001", 2)]
    assert sender.sent[-1].high_importance
    assert sender.sent[-1].subject.startswith("[Prevent] URGENT – Concern PRV-2026-0001")
    at(clock, START + timedelta(days=3))
    assert check(app).escalated == []
    assert len(sender.sent) == 2
    for message in sender.sent:  # references and times only
        for part in (message.text, message.html, message.subject):
            assert SECRET not in part and "Zed" not in part


def test_after_downtime_only_the_highest_level_is_sent() -> None:
    wb = register(("PRV-2026-0002", START, "New"))
    app, _clock, sender = app_at(wb, START + timedelta(hours=30))
    assert check(app).escalated == [("PRV-2026-0002", 2)]
    states = dict(app.ledger.db.execute("SELECT level, state FROM escalations").fetchall())
    assert states == {1: "superseded", 2: "sent"}
    assert len(sender.sent) == 1


def test_blank_status_counts_as_new_and_acknowledged_concerns_never_escalate() -> None:
    wb = register(
        ("PRV-2026-0003", START, ""),
        ("PRV-2026-0004", START, STATUS_CHOICES[1]),
    )
    app, _clock, _sender = app_at(wb, START + timedelta(hours=5))
    report = check(app)
    assert report.escalated == [("PRV-2026-0003", 1)]
    assert report.acknowledged == []  # first seen 5 hours on, already picked up: untimed


def test_time_to_acknowledge_is_recorded_when_status_first_leaves_new() -> None:
    wb = register(("PRV-2026-0005", START, "New"))
    app, clock, _sender = app_at(wb, START + timedelta(hours=1))
    check(app)
    assert time_to_acknowledge(app) == {}
    wb.tables["Concerns"].rows[0][HEADERS.index("Status")] = "Acknowledged"
    at(clock, START + timedelta(hours=2, minutes=15))
    assert check(app).acknowledged == ["PRV-2026-0005"]
    at(clock, START + timedelta(hours=5))
    wb.tables["Concerns"].rows[0][HEADERS.index("Status")] = "In progress"
    report = check(app)
    assert report.acknowledged == [] and report.escalated == []
    assert time_to_acknowledge(app) == {"PRV-2026-0005": timedelta(hours=2, minutes=15)}


def test_unreadable_recorded_time_is_not_guessed() -> None:
    wb = register(("PRV-2026-0006", "sometime", "New"), ("PRV-2026-0007", START, "New"))
    app, _clock, _sender = app_at(wb, START + timedelta(hours=5))
    report = check(app)
    assert report.unreadable == [2]
    assert report.escalated == [("PRV-2026-0007", 1)]


def test_graph_serial_times_are_read() -> None:
    serial = 46349 + 9 / 24  # 23 Nov 2026 09:00 as an Excel serial (Graph)
    wb = register(("PRV-2026-0008", serial, "New"))
    app, _clock, _sender = app_at(wb, START + timedelta(hours=4))
    assert check(app).escalated == [("PRV-2026-0008", 1)]


def test_weekly_digest_lists_open_concerns_by_age_without_learner_detail() -> None:
    wb = register(
        ("PRV-2026-0010", START - timedelta(days=40), "Monitoring"),
        ("PRV-2026-0011", START - timedelta(days=10), "Referred"),
        ("PRV-2026-0012", START - timedelta(days=3), "New"),
        ("PRV-2026-0013", START - timedelta(hours=2), "New"),
        ("PRV-2026-0014", START - timedelta(days=5), "Closed"),
        ("PRV-2026-0015", START - timedelta(days=5), "Closed – no further action"),
    )
    app, _clock, sender = app_at(wb, START)
    check(app)
    assert weekly_digest(app) is True
    digest = sender.sent[-1]
    assert digest.to == ("dsp@example.org",)
    # The week as people say it (its Monday), not its ISO key "2026-W48".
    assert digest.subject == "[Prevent] 4 open concerns – week of Mon 23 Nov 2026"
    assert "Open Prevent concerns – week of Mon 23 Nov 2026" in digest.text
    assert "W48" not in digest.text + digest.html
    assert "\n\n\n" not in digest.text  # one blank line between blocks, as in the HTML
    assert "Oldest first:\n\nOVER 4 WEEKS (1)" in digest.text
    assert " 0 days" not in digest.text and "under a day  New" in digest.text  # 0013, 2 h old
    text = digest.text
    order = [text.index(f"PRV-2026-00{n}") for n in (10, 11, 12, 13)]
    assert order == sorted(order)  # oldest first
    for title in ("OVER 4 WEEKS (1)", "1 TO 4 WEEKS (1)", "1 TO 7 DAYS (1)", "UNDER A DAY (1)"):
        assert title in text
    assert "PRV-2026-0014" not in text and "PRV-2026-0015" not in text
    assert "escalated, level 2" in text  # 0012 has been New for three days
    for part in (digest.text, digest.html):
        assert SECRET not in part and "Zed" not in part
    assert weekly_digest(app) is False  # once per week


def test_weekly_digest_with_full_detail_adds_the_summary() -> None:
    config = make_config().model_copy(
        update={
            "register": make_config().register.model_copy(update={"alert_detail": "full"}),
        }
    )
    wb = register(("PRV-2026-0020", START - timedelta(days=2), "In progress"))
    app, _clock, sender = app_at(wb, START, config=config)
    weekly_digest(app)
    assert SECRET in sender.sent[-1].text and SECRET in sender.sent[-1].html


def test_weekly_digest_reports_time_to_acknowledge_and_unreadable_rows() -> None:
    wb = register(("PRV-2026-0030", START, "New"), ("PRV-2026-0031", "??", "New"))
    app, clock, sender = app_at(wb, START + timedelta(minutes=30))
    check(app)
    wb.tables["Concerns"].rows[0][HEADERS.index("Status")] = "Acknowledged"
    at(clock, START + timedelta(hours=3))
    check(app)
    weekly_digest(app)
    text = sender.sent[-1].text
    assert "median 3 hours" in text
    assert "Register row(s) 3 have no readable" in text


def test_scheduled_weekly_waits_for_digest_day_and_time() -> None:
    wb = register()
    app, clock, sender = app_at(wb, datetime(2026, 11, 23, 7, 59))  # Monday, before 08:00
    assert scheduled_weekly(app) is False
    at(clock, datetime(2026, 11, 23, 8, 0))
    assert scheduled_weekly(app) is True
    assert "no concerns are open" in sender.sent[-1].text
    at(clock, datetime(2026, 11, 27, 12, 0))
    assert scheduled_weekly(app) is False  # already sent this week
    at(clock, datetime(2026, 12, 2, 12, 0))  # down on Monday: Wednesday catches up
    assert scheduled_weekly(app) is True
    assert len(sender.sent) == 2


def test_a_bounced_escalation_is_reported_to_the_admin() -> None:
    wb = register(("PRV-2026-0040", START, "New"))
    app, _clock, sender = app_at(wb, START + timedelta(hours=5))
    check(app)
    assert report_bounce(app, sender.sent[-1].message_id) is True
    assert sender.sent[-1].to == ("admin@example.org",)
    assert "concern escalation" in sender.sent[-1].text
    assert (
        date(2026, 11, 23).isoformat()
        in app.ledger.db.execute(
            "SELECT day FROM sent_messages WHERE kind = 'escalation'"
        ).fetchone()[0]
    )


def test_no_weekly_digest_from_a_register_that_could_not_be_read() -> None:
    unreadable = MemoryWorkbook(tz=LONDON, name="register.xlsx")  # no Concerns table (yet)
    app, clock, sender = app_at(unreadable, datetime(2026, 11, 23, 8, 0))

    assert scheduled_weekly(app) is False
    assert sender.sent == []  # not a "0 open concerns" digest

    unreadable.add_table("Concerns", HEADERS, [], sheet="Register")  # readable again
    at(clock, datetime(2026, 11, 23, 8, 15))
    assert scheduled_weekly(app) is True  # the next catch-up sends it
    assert len(sender.sent) == 1


def test_a_digest_missed_across_the_week_boundary_is_caught_up_once() -> None:
    # digest_day Friday: down from Thursday 19 to Tuesday 24 November, so Friday 20's digest
    # was missed. The restart sends it (not a week later), and Friday 27's goes as usual.
    base = make_config()
    config = base.model_copy(
        update={"schedule": base.schedule.model_copy(update={"digest_day": "fri"})}
    )
    app, clock, sender = app_at(register(), datetime(2026, 11, 13, 8, 0), config=config)
    assert scheduled_weekly(app) is True
    at(clock, datetime(2026, 11, 24, 10, 0))
    assert scheduled_weekly(app) is True  # Friday 20's, caught up
    at(clock, datetime(2026, 11, 25, 10, 0))
    assert scheduled_weekly(app) is False
    at(clock, datetime(2026, 11, 27, 8, 0))
    assert scheduled_weekly(app) is True
    assert len(sender.sent) == 3


def test_no_catch_up_digest_just_before_this_weeks() -> None:
    # Restarted on the digest day before its time: this week's digest is an hour away and
    # carries the same list; last week's missed one is not sent as well.
    app, clock, sender = app_at(register(), datetime(2026, 11, 16, 8, 0))
    assert scheduled_weekly(app) is True
    at(clock, datetime(2026, 11, 30, 7, 0))  # down all of the week of 23 November
    assert scheduled_weekly(app) is False
    at(clock, datetime(2026, 11, 30, 8, 0))
    assert scheduled_weekly(app) is True
    assert len(sender.sent) == 2


def test_a_concern_first_seen_long_after_it_left_new_gets_no_time_to_acknowledge() -> None:
    # A new or lost ledger (or the worker first started over an existing register): the check
    # never saw these concerns New, so "now minus Recorded at" would say the DSP took weeks.
    # One recorded since the last check (15 minutes) and already picked up is timed.
    wb = register(
        ("PRV-2026-0050", START - timedelta(days=30), "Closed"),
        ("PRV-2026-0051", START - timedelta(days=2), "Acknowledged"),
        ("PRV-2026-0052", START - timedelta(minutes=10), "Acknowledged"),
    )
    app, clock, _sender = app_at(wb, START)
    assert check(app).acknowledged == ["PRV-2026-0052"]
    at(clock, START + timedelta(minutes=15))
    assert check(app).acknowledged == []  # still not timed on the next check
    assert time_to_acknowledge(app) == {"PRV-2026-0052": timedelta(minutes=10)}


def test_a_concern_recorded_in_the_future_is_still_listed_in_the_digest() -> None:
    # "Recorded at" typed a day ahead (or written while the machine's clock ran fast): the
    # digest counts it open, so it must also list it, not leave the count and list apart.
    wb = register(
        ("PRV-2026-0060", START + timedelta(days=1), "New"),
        ("PRV-2026-0061", START - timedelta(days=2), "Acknowledged"),
    )
    app, _clock, sender = app_at(wb, START)
    assert weekly_digest(app) is True
    text = sender.sent[-1].text
    assert sender.sent[-1].subject.startswith("[Prevent] 2 open concerns")
    assert "PRV-2026-0060" in text and "PRV-2026-0061" in text
