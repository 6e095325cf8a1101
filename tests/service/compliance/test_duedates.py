"""Due-date text → a date rule or "not understood"; working days and the calendar."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.compliance.duedates import (
    DueCalendar,
    Recurrence,
    add_months,
    excel_serial_to_date,
    is_working_day,
    next_working_day,
    parse_due,
    parse_recurrence,
)

CAL = DueCalendar()


def first(text: object, **kw: object) -> date | None:
    spec = parse_due(text, **kw)  # type: ignore[arg-type]
    assert spec.understood, spec.problem
    return CAL.first_due(spec, first_seen=date(2021, 3, 10))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("October 2021", date(2021, 10, 29)),  # Sun 31st → Fri 29th, last working day
        ("Oct 2021", date(2021, 10, 29)),
        ("december 2021", date(2021, 12, 31)),
        ("November 2021", date(2021, 11, 30)),
        ("Jan 2021", date(2021, 1, 29)),
        ("January 2021", date(2021, 1, 29)),
        ("Feb 2021", date(2021, 2, 26)),
        ("May 2021", date(2021, 5, 28)),  # Mon 31 May 2021 is the Spring bank holiday
        ("June 2021", date(2021, 6, 30)),
        ("August 2021", date(2021, 8, 31)),  # Mon 30 Aug is a bank holiday; 31st is a Tuesday
        ("Evaluate training and development activities June 2021", date(2021, 6, 30)),
        ("end of October 2021", date(2021, 10, 29)),
        ("Oct-21", date(2021, 10, 29)),
        ("10/2021", date(2021, 10, 29)),
        ("15/10/2021", date(2021, 10, 15)),  # UK order: day first
        ("1/2/2022", date(2022, 2, 1)),
        ("15.10.21", date(2021, 10, 15)),
        ("2021-10-15", date(2021, 10, 15)),
        ("15th October 2021", date(2021, 10, 15)),
        ("October 15, 2021", date(2021, 10, 15)),
        ("Oct 15th 2021", date(2021, 10, 15)),  # no comma: it has a year, not "without a year"
        ("October 1 2021", date(2021, 10, 1)),
        ("  by   15 Oct 2021 ", date(2021, 10, 15)),
        ("Immediate", date(2021, 3, 10)),  # the day the row was first seen
        ("immediately", date(2021, 3, 10)),
        ("ASAP", date(2021, 3, 10)),
        ("February 2024", date(2024, 2, 29)),  # leap year
        ("February 2023", date(2023, 2, 28)),
        ("29/02/2024", date(2024, 2, 29)),
        ("Staff may attend June 2021", date(2021, 6, 30)),  # "may" the verb is not a month
    ],
)
def test_text_to_first_due_date(text: str, expected: date) -> None:
    assert first(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2021, 10, 15, 0, 0), date(2021, 10, 15)),
        (datetime(2021, 10, 15, 23, 59), date(2021, 10, 15)),
        (date(2021, 10, 31), date(2021, 10, 31)),  # a real date on a Sunday stays that day
        (44484.0, date(2021, 10, 15)),  # Graph gives Excel serials
        (44484, date(2021, 10, 15)),
        (44484.75, date(2021, 10, 15)),  # a time of day is ignored
        (45351.0, date(2024, 2, 29)),
    ],
)
def test_real_dates_and_excel_serials(value: object, expected: date) -> None:
    assert first(value) == expected


def test_excel_serial_edges() -> None:
    assert excel_serial_to_date(61) == date(1900, 3, 1)
    assert excel_serial_to_date(60) is None  # Excel's fictitious 29 Feb 1900
    assert excel_serial_to_date(3_000_000) is None


@pytest.mark.parametrize(
    ("text", "recurrence", "month"),
    [
        ("Sept 2021 on ongoing", Recurrence.ANNUALLY, (2021, 9)),
        ("Sept 2021 onwards", Recurrence.ANNUALLY, (2021, 9)),
        ("September 2021 - ongoing", Recurrence.ANNUALLY, (2021, 9)),
        ("Sept 2021 onwards, termly", Recurrence.TERMLY, (2021, 9)),
        ("monthly from Jan 2022", Recurrence.MONTHLY, (2022, 1)),
        ("quarterly from April 2022", Recurrence.QUARTERLY, (2022, 4)),
        ("Sept 2021 then every 2 years", Recurrence.TWO_YEARLY, (2021, 9)),
        ("annually, October 2021", Recurrence.ANNUALLY, (2021, 10)),
    ],
)
def test_recurring_text(text: str, recurrence: Recurrence, month: tuple[int, int]) -> None:
    spec = parse_due(text)
    assert spec.understood, spec.problem
    assert spec.recurrence is recurrence
    assert spec.month == month


def test_ongoing_default_recurrence_is_configurable() -> None:
    spec = parse_due("Sept 2021 onwards", default_ongoing=Recurrence.TERMLY)
    assert spec.recurrence is Recurrence.TERMLY


def test_recurrence_column_wins_over_text() -> None:
    spec = parse_due("Sept 2021 onwards", recurrence=Recurrence.MONTHLY)
    assert spec.recurrence is Recurrence.MONTHLY
    one_off = parse_due("Sept 2021 onwards", recurrence=Recurrence.ONE_OFF)
    assert not one_off.recurring


def test_annual_occurrences_use_the_month_rule_each_year() -> None:
    spec = parse_due("Sept 2021 onwards")
    # Last working day of September: 2021 Thu 30th, 2022 Fri 30th, 2023 Fri 29th (30th Sat).
    assert CAL.occurrence_on_or_after(spec, date(2021, 1, 1)) == date(2021, 9, 30)
    assert CAL.occurrence_on_or_after(spec, date(2021, 10, 1)) == date(2022, 9, 30)
    assert CAL.occurrence_on_or_after(spec, date(2022, 10, 1)) == date(2023, 9, 29)
    assert CAL.occurrence_on_or_after(spec, date(2023, 9, 29)) == date(2023, 9, 29)


def test_annual_from_a_leap_day_clamps_to_28_february() -> None:
    spec = parse_due(date(2024, 2, 29), recurrence=Recurrence.ANNUALLY)
    assert CAL.occurrence_on_or_after(spec, date(2024, 3, 1)) == date(2025, 2, 28)
    assert CAL.occurrence_on_or_after(spec, date(2027, 3, 1)) == date(2028, 2, 29)
    assert add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)


def test_termly_is_the_next_term_end() -> None:
    spec = parse_due("termly")
    assert spec.understood and spec.recurrence is Recurrence.TERMLY
    assert CAL.occurrence_on_or_after(spec, date(2021, 10, 1)) == date(2021, 12, 19)
    assert CAL.occurrence_on_or_after(spec, date(2021, 12, 20)) == date(2022, 3, 31)
    assert CAL.occurrence_on_or_after(spec, date(2022, 4, 1)) == date(2022, 7, 21)
    assert CAL.occurrence_on_or_after(spec, date(2022, 7, 22)) == date(2022, 12, 19)
    own = DueCalendar(term_ends=["10-23", "02-12"])
    assert own.occurrence_on_or_after(spec, date(2022, 1, 1)) == date(2022, 2, 12)


def test_monthly_alone_is_each_month() -> None:
    spec = parse_due("monthly")
    assert CAL.occurrence_on_or_after(spec, date(2021, 5, 1)) == date(2021, 5, 28)
    assert CAL.occurrence_on_or_after(spec, date(2021, 5, 29)) == date(2021, 6, 30)


def test_month_rule_is_configurable() -> None:
    spec = parse_due("October 2021")
    assert DueCalendar("last_day").first_due(spec, None) == date(2021, 10, 31)
    assert DueCalendar("first_day").first_due(spec, None) == date(2021, 10, 1)


@pytest.mark.parametrize(
    ("text", "reason_part"),
    [
        ("ongoing", "no date to count from"),
        ("annually", "no date to count from"),
        ("", "no due date"),
        ("TBC", "not decided"),
        ("October 2021?", "approximate"),
        ("approx Oct 2021", "approximate"),
        ("bi-annual", "bi-annual"),
        ("weekly", "more often than monthly"),
        ("15 October", "without a year"),
        ("October", "without a year"),
        ("2021", "2021"),
        ("Q3 2021", "3"),
        ("June and July 2021", "more than one date"),
        ("Jan 2021 - March 2021", "more than one date"),
        ("31/02/2021", "not a real date"),
        ("13/13/2021", "no month 13"),
        ("October 1999", "out of range"),
        ("from Sept 2021", "onwards"),
        ("mid October 2021", "which day"),
        ("after October 2021", "not a window"),
        ("soon", "no date found"),
        ("Oct 21", "without a year"),
    ],
)
def test_not_understood_says_why(text: str, reason_part: str) -> None:
    spec = parse_due(text)
    assert not spec.understood
    assert spec.problem is not None and reason_part in spec.problem
    assert CAL.first_due(spec, date(2021, 1, 1)) is None


@pytest.mark.parametrize("value", [True, float("nan"), float("inf"), -5, 12.5, 10**400, b"x"])
def test_odd_cell_values_are_not_understood(value: object) -> None:
    assert not parse_due(value).understood


def test_recurrence_column_values() -> None:
    assert parse_recurrence(None) is None
    assert parse_recurrence("  ") is None
    assert parse_recurrence("Termly") is Recurrence.TERMLY
    assert parse_recurrence("annually") is Recurrence.ANNUALLY
    assert parse_recurrence("one-off") is Recurrence.ONE_OFF
    assert parse_recurrence("every year") is Recurrence.ANNUALLY
    problem = parse_recurrence("whenever")
    assert isinstance(problem, str) and not isinstance(problem, Recurrence)
    assert "whenever" in problem


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2021, 10, 29), True),  # Friday
        (date(2021, 10, 30), False),  # Saturday
        (date(2021, 10, 31), False),  # Sunday
        (date(2021, 12, 27), False),  # Christmas Day (substitute)
        (date(2021, 12, 28), False),  # Boxing Day (substitute)
        (date(2022, 6, 2), False),  # Platinum Jubilee bank holiday
        (date(2022, 6, 3), False),
        (date(2022, 9, 19), False),  # State funeral of Queen Elizabeth II
        (date(2023, 5, 8), False),  # Coronation bank holiday
        (date(2021, 3, 17), True),  # St Patrick's Day: a holiday in Northern Ireland only
        (date(2021, 8, 2), True),  # Scottish summer bank holiday: not in England
    ],
)
def test_england_and_wales_working_days(day: date, working: bool) -> None:
    assert is_working_day(day) is working


def test_next_working_day_skips_weekends_and_christmas() -> None:
    assert next_working_day(date(2021, 10, 31)) == date(2021, 11, 1)  # Sunday → Monday
    assert next_working_day(date(2021, 12, 24)) == date(2021, 12, 24)
    assert next_working_day(date(2021, 12, 25)) == date(2021, 12, 29)
    assert next_working_day(date(2022, 4, 15)) == date(2022, 4, 19)  # Good Friday → Tuesday


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=120),
        st.text(alphabet="0123456789/-. onwardsingtermlyOctSeptJanuaryImmediate?", max_size=40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(),
        st.datetimes(),
        st.dates(),
        st.none(),
        st.booleans(),
    ),
    st.sampled_from([None, *Recurrence]),
)
def test_no_cell_crashes_the_parser(value: object, recurrence: Recurrence | None) -> None:
    spec = parse_due(value, recurrence=recurrence)
    assert spec.understood or spec.problem
    due = CAL.occurrence_on_or_after(spec, date(2026, 1, 1), first_seen=date(2025, 6, 1))
    if spec.understood and not spec.recurring and not spec.immediate:
        assert due is not None
