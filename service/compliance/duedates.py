"""Understanding the due dates people write in the compliance workbook, and working days.

Managers type real dates and also text. The rules, each tested in
``tests/service/compliance/test_duedates.py``:

- A real date (``datetime``/``date`` from openpyxl, an Excel serial number from Graph) is that
  day; a time of day is ignored. A formula is read by the value Excel saved for it; a formula
  with no saved value (the file was saved by a program that does not calculate) is *not
  understood*, saying so, rather than read as its text.
- ``"15 October 2021"``, ``"15/10/2021"`` (UK order: day first), ``"2021-10-15"``,
  ``"October 15, 2021"``, ``"Oct 15th 2021"`` → that day.
- ``"October 2021"``, ``"Oct 2021"``, ``"Sept 2021"``, ``"Oct-21"``, ``"10/2021"``,
  ``"end of October 2021"`` → the month's due day: its last working day unless
  ``compliance.month_due`` says ``last_day`` or ``first_day``.
- ``"Immediate"`` (``immediately``, ``ASAP``) → the day the service first saw the row.
- A date plus an "ongoing" word (``"Sept 2021 on ongoing"``, ``"Sept 2021 onwards"``) →
  recurring from then. How often: a frequency word in the text (``termly``, ``monthly``,
  ``quarterly``, ``half-yearly``, ``annually``, ``every two years``), else the Recurrence column,
  else ``compliance.ongoing_recurrence`` (default annually: the plan is a yearly plan, reviewed
  with the policy). The Recurrence column, when filled in, wins over the text.
- ``"termly"`` alone → each term end (``compliance.term_ends``); ``"monthly"`` alone → each
  month's due day.
- ``"ongoing"`` alone, or ``"annually"`` alone, is no deadline: there is no day to count from.
  It is *not understood* (reported to the plan owner) unless the Recurrence column says termly or
  monthly, which need no start.
- Exactly one date among other words (``"Evaluate training June 2021"``) → that date.
- Anything else is *not understood*, with a reason: two dates, a month or day without a year,
  a year alone, hedges (``TBC``, ``approx``, ``?``, ``after``), ``weekly`` (not supported),
  ``bi-annual`` (ambiguous: twice a year or every two years?), ``early``/``mid`` a month.

Nothing here guesses silently: a parse either gives a date rule or a reason a person can act on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal

import holidays

from connectors.base import UnsavedFormula

MonthRule = Literal["last_working_day", "last_day", "first_day"]

EXCEL_EPOCH = date(1899, 12, 30)
MIN_YEAR, MAX_YEAR = 2000, 2100


class Recurrence(StrEnum):
    """How often an item falls due. Values are the workbook's drop-down labels."""

    ONE_OFF = "One-off"
    MONTHLY = "Monthly"
    QUARTERLY = "Quarterly"
    TERMLY = "Termly"
    HALF_YEARLY = "Half-yearly"
    ANNUALLY = "Annually"
    TWO_YEARLY = "Every 2 years"


RECURRENCE_MONTHS: dict[Recurrence, int] = {
    Recurrence.MONTHLY: 1,
    Recurrence.QUARTERLY: 3,
    Recurrence.HALF_YEARLY: 6,
    Recurrence.ANNUALLY: 12,
    Recurrence.TWO_YEARLY: 24,
}
# Recurrences that need no start: each term end / each month falls due on its own.
NEEDS_NO_START = (Recurrence.TERMLY, Recurrence.MONTHLY)


@dataclass(frozen=True)
class DueSpec:
    """What a due cell means. ``problem`` is set when it is not understood.

    ``due`` is a one-off due date or the first of a recurring series. ``month`` is set when the
    text named a month: each occurrence of a recurring series then uses the month rule again
    (the last working day of *that* September), not the same day number.
    """

    text: str
    due: date | None = None
    month: tuple[int, int] | None = None
    recurrence: Recurrence = Recurrence.ONE_OFF
    immediate: bool = False
    problem: str | None = None

    @property
    def understood(self) -> bool:
        return self.problem is None

    @property
    def recurring(self) -> bool:
        return self.recurrence is not Recurrence.ONE_OFF


UNSAVED_FORMULA = (
    "is a formula with no saved value; open and save the file in Excel, or type a date"
)


def not_understood(text: str, reason: str) -> DueSpec:
    return DueSpec(text=text, problem=reason)


# ---------------------------------------------------------------------------- calendar


@lru_cache(maxsize=64)
def _bank_holidays(year: int) -> frozenset[date]:
    """England and Wales bank holidays from the maintained ``holidays`` library."""
    return frozenset(holidays.country_holidays("GB", subdiv="ENG", years=year).keys())


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _bank_holidays(day.year)


def next_working_day(day: date) -> date:
    """``day`` itself if it is a working day, else the next one."""
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def previous_working_day(day: date) -> date:
    while not is_working_day(day):
        day -= timedelta(days=1)
    return day


def month_end(year: int, month: int) -> date:
    if month == 12:
        return date(year, 12, 31)
    return date(year, month + 1, 1) - timedelta(days=1)


def add_months(day: date, months: int) -> date:
    """Same day number ``months`` later, clamped to the month's end (29 Feb + 12 → 28 Feb)."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, month_end(year, month + 1).day))


class DueCalendar:
    """Turns a :class:`DueSpec` into concrete due dates (month rule, term ends, recurrence)."""

    def __init__(
        self,
        month_due: MonthRule = "last_working_day",
        term_ends: Iterable[str] = ("12-19", "03-31", "07-21"),
    ) -> None:
        self.month_due = month_due
        self.term_ends = tuple(sorted(_month_day(t) for t in term_ends))

    def month_due_date(self, year: int, month: int) -> date:
        if self.month_due == "first_day":
            return date(year, month, 1)
        last = month_end(year, month)
        if self.month_due == "last_day":
            return last
        return previous_working_day(last)

    def term_end_on_or_after(self, day: date) -> date:
        for year in (day.year, day.year + 1):
            for month, dom in self.term_ends:
                candidate = date(year, month, min(dom, month_end(year, month).day))
                if candidate >= day:
                    return candidate
        raise AssertionError("term_ends is never empty")  # pragma: no cover

    def first_due(self, spec: DueSpec, first_seen: date | None) -> date | None:
        """The first (or only) due date; ``None`` if the spec has none (termly, monthly)."""
        if spec.month is not None:
            return self.month_due_date(*spec.month)
        if spec.due is not None:
            return spec.due
        if spec.immediate:
            return first_seen
        return None

    def occurrence_on_or_after(
        self, spec: DueSpec, day: date, first_seen: date | None = None
    ) -> date | None:
        """The due date of a recurring item on or after ``day`` (``None`` if not understood)."""
        if not spec.understood:
            return None
        start = self.first_due(spec, first_seen)
        if not spec.recurring:
            return start
        if spec.recurrence is Recurrence.TERMLY:
            return self.term_end_on_or_after(max(day, start) if start else day)
        step = RECURRENCE_MONTHS[spec.recurrence]
        if start is None:  # monthly with no start: this month's due day, or next month's
            if spec.recurrence is not Recurrence.MONTHLY:
                return None
            this = self.month_due_date(day.year, day.month)
            if this >= day:
                return this
            nxt = add_months(date(day.year, day.month, 1), 1)
            return self.month_due_date(nxt.year, nxt.month)
        if start >= day:
            return start
        months_apart = (day.year - start.year) * 12 + day.month - start.month
        k = max(0, months_apart // step - 1)
        while True:
            candidate = self._nth(spec, start, k * step)
            if candidate >= day:
                return candidate
            k += 1

    def _nth(self, spec: DueSpec, start: date, months: int) -> date:
        if spec.month is not None:
            anchor = add_months(date(spec.month[0], spec.month[1], 1), months)
            return self.month_due_date(anchor.year, anchor.month)
        return add_months(start, months)


def _month_day(text: str) -> tuple[int, int]:
    month, _, dom = text.strip().partition("-")
    return int(month), int(dom)


# ---------------------------------------------------------------------------- parsing

_MONTHS: dict[str, int] = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3,
    "apr": 4, "april": 4, "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7,
    "aug": 8, "august": 8, "sep": 9, "sept": 9, "september": 9, "oct": 10, "october": 10,
    "nov": 11, "november": 11, "dec": 12, "december": 12,
}  # fmt: skip
_MONTH = r"(?P<mon>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_ORD = r"(?:st|nd|rd|th)?"

# Order matters: full dates first, so "15 October 2021" is not also read as "October 2021".
_DATE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("iso", re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b")),
    ("dmy", re.compile(r"\b(?P<d>\d{1,2})[/.](?P<m>\d{1,2})[/.](?P<y>\d{4}|\d{2})\b")),
    ("d_mon_y", re.compile(rf"\b(?P<d>\d{{1,2}}){_ORD}\s+(?:of\s+)?{_MONTH},?\s+(?P<y>\d{{4}})\b")),
    ("mon_d_y", re.compile(rf"\b{_MONTH}\s+(?P<d>\d{{1,2}}){_ORD}(?:,\s*|\s+)(?P<y>\d{{4}})\b")),
    ("mon_y", re.compile(rf"\b{_MONTH}\s*[-/'’]?\s*(?P<y>\d{{4}})\b")),
    ("mon_yy", re.compile(rf"\b{_MONTH}\s*[-'’]\s*(?P<y>\d{{2}})\b")),
    ("m_y", re.compile(r"\b(?P<m>\d{1,2})/(?P<y>\d{4})\b")),
)

_IMMEDIATE = re.compile(r"\b(immediate|immediately|asap|a\.s\.a\.p\.?|at once|straight away)\b")
_ONGOING = re.compile(
    r"\b(on-?\s?going|onwards?|continuous|continuing|continual|rolling|recurring)\b"
)
_FROM = re.compile(r"\b(from|starting|commencing)\b")
_FREQUENCIES: tuple[tuple[Recurrence, re.Pattern[str]], ...] = (
    (Recurrence.TERMLY, re.compile(r"\b(termly|(each|every|per|end of each|end of every) term)\b")),
    (Recurrence.MONTHLY, re.compile(r"\b(monthly|(each|every|per) month)\b")),
    (Recurrence.QUARTERLY, re.compile(r"\b(quarterly|(each|every|per) quarter)\b")),
    (
        Recurrence.HALF_YEARLY,
        re.compile(r"\b(half-?\s?yearly|six-?\s?monthly|twice (a|per|each) year|every 6 months)\b"),
    ),
    (
        Recurrence.TWO_YEARLY,
        re.compile(r"\b(biennial|biennially|every (two|2) years|two-?\s?yearly)\b"),
    ),
    (
        Recurrence.ANNUALLY,
        re.compile(r"\b(annual|annually|yearly|(each|every|per) year|per annum|once a year)\b"),
    ),
)
_UNSUPPORTED = (
    (re.compile(r"\bbi-?\s?annual(ly)?\b"), "'bi-annual' could mean twice a year or every two "
     "years: write 'half-yearly' or 'every 2 years'"),
    (re.compile(r"\b(weekly|daily|fortnightly|every week|each week|every day)\b"),
     "reminders more often than monthly are not supported: give a date or 'monthly'"),
    (re.compile(r"\b(tbc|tba|tbd|to be (confirmed|agreed|decided)|unknown|n/?a)\b"),
     "the date is not decided yet: write a date when it is"),
    (re.compile(r"\?|\b(approx|approximately|circa|about|around|maybe|possibly|roughly)\b"),
     "an approximate date cannot be a deadline: give a date or month"),
    (re.compile(r"\b(after|until|till|between|not before|no earlier than)\b"),
     "say when it is due (for example 'by October 2021'), not a window"),
    (re.compile(r"\b(early|mid|middle|start|beginning|first week|half term)\b"),
     "say which day (for example '15 October 2021') or just the month (its last working day)"),
)  # fmt: skip
_LONE_MONTH = re.compile(r"\b(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\b")
_DIGITS = re.compile(r"\d+")


def excel_serial_to_date(serial: float) -> date | None:
    """Excel's 1900 date system as Graph returns it: ``45678.0`` → 2025-01-20.

    Serials before 61 are in Excel's fictitious 1900 leap-year stretch; we do not accept
    them (no due date is in 1900)."""
    if not 61 <= serial < 2958466:
        return None
    return EXCEL_EPOCH + timedelta(days=int(serial))


def parse_recurrence(value: Any) -> Recurrence | str | None:
    """The Recurrence column: a :class:`Recurrence`, ``None`` if blank, or a problem text."""
    text = _clean(value)
    if not text:
        return None
    for member in Recurrence:
        if text == member.value.lower():
            return member
    if re.fullmatch(r"(one[- ]?off|once|none|no|single|not recurring)", text):
        return Recurrence.ONE_OFF
    found = {rec for rec, pattern in _FREQUENCIES if pattern.search(text)}
    if len(found) == 1:
        return found.pop()
    choices = ", ".join(m.value for m in Recurrence)
    return f"recurrence {str(value).strip()[:60]!r} is not one of: {choices}"


def parse_due(
    value: Any,
    *,
    recurrence: Recurrence | None = None,
    default_ongoing: Recurrence = Recurrence.ANNUALLY,
) -> DueSpec:
    """Read a due cell. ``recurrence`` is the Recurrence column, already parsed (it wins).

    Never raises for any cell value: the worst outcome is "not understood" with a reason.
    """
    shown = _shown(value)
    if isinstance(value, UnsavedFormula):
        return not_understood(shown, UNSAVED_FORMULA)
    if value is None or (isinstance(value, str) and not value.strip()):
        if recurrence in NEEDS_NO_START:
            return DueSpec(text=shown, recurrence=recurrence)
        return not_understood(shown, "no due date")
    if isinstance(value, bool):
        return not_understood(shown, "a yes/no value is not a date")
    if isinstance(value, datetime):
        return _dated(shown, value.date(), None, recurrence)
    if isinstance(value, date):
        return _dated(shown, value, None, recurrence)
    if isinstance(value, int | float):
        try:
            day = excel_serial_to_date(float(value))
        except (OverflowError, ValueError):
            day = None
        if day is None:
            return not_understood(shown, "a number that is not an Excel date")
        return _dated(shown, day, None, recurrence)
    if not isinstance(value, str):
        return not_understood(shown, f"a {type(value).__name__} value is not a date")
    return _parse_text(value, shown, recurrence, default_ongoing)


def _parse_text(
    raw: str, shown: str, column: Recurrence | None, default_ongoing: Recurrence
) -> DueSpec:
    text = _clean(raw)
    for pattern, reason in _UNSUPPORTED:
        if pattern.search(text):
            return not_understood(shown, reason)

    found: list[tuple[date | None, tuple[int, int] | None]] = []
    rest = text
    for kind, pattern in _DATE_PATTERNS:
        for match in pattern.finditer(rest):
            parsed = _date_from_match(kind, match)
            if isinstance(parsed, str):
                return not_understood(shown, parsed)
            found.append(parsed)
        rest = pattern.sub(" ", rest)
    distinct = list(dict.fromkeys(found))
    if len(distinct) > 1:
        return not_understood(shown, "more than one date: keep only the due date")
    frequencies = {rec for rec, pattern in _FREQUENCIES if pattern.search(rest)}
    if len(frequencies) > 1:
        return not_understood(shown, "more than one frequency: keep one")
    for _, pattern in _FREQUENCIES:
        rest = pattern.sub(" ", rest)  # "every 2 years" is not a stray number
    if _DIGITS.search(rest):
        leftover = _DIGITS.search(rest)
        assert leftover is not None
        lone = _LONE_MONTH.search(rest)
        if lone:
            return not_understood(shown, "a day and month without a year")
        return not_understood(shown, f"cannot read the number {leftover.group()!r} as a date")
    lone = _LONE_MONTH.search(rest)
    if lone and (not distinct or lone.group() != "may"):
        # "may" is also a verb; any other month name left over is a second date or no year.
        reason = "a month without a year" if not distinct else "more than one date"
        return not_understood(shown, reason)

    text_rec = frequencies.pop() if frequencies else None
    ongoing = bool(_ONGOING.search(rest))
    immediate = bool(_IMMEDIATE.search(rest))
    if _FROM.search(rest) and not ongoing and text_rec is None and column is None:
        return not_understood(
            shown, "'from' a date: add 'onwards' if it recurs, or give the date it is due by"
        )
    if column is not None:
        rec = column
    elif text_rec is not None:
        rec = text_rec
    elif ongoing and (distinct or immediate):
        rec = default_ongoing
    else:
        rec = Recurrence.ONE_OFF

    if distinct:
        day, month = distinct[0]
        return _dated(shown, day, month, rec)
    if immediate:
        return DueSpec(text=shown, recurrence=rec, immediate=True)
    if rec in NEEDS_NO_START and (text_rec is not None or column is not None):
        return DueSpec(text=shown, recurrence=rec)
    if ongoing or text_rec is not None:
        return not_understood(
            shown,
            "recurring with no date to count from: add a start "
            "(for example 'Sept 2026 onwards') or a due date",
        )
    return not_understood(shown, "no date found")


def _dated(
    shown: str, day: date | None, month: tuple[int, int] | None, rec: Recurrence | None
) -> DueSpec:
    year = month[0] if month else day.year if day else 0
    if not MIN_YEAR <= year <= MAX_YEAR:
        return not_understood(shown, f"the year {year} is out of range ({MIN_YEAR}–{MAX_YEAR})")
    return DueSpec(text=shown, due=day, month=month, recurrence=rec or Recurrence.ONE_OFF)


def _date_from_match(
    kind: str, match: re.Match[str]
) -> tuple[date | None, tuple[int, int] | None] | str:
    groups = match.groupdict()
    year = int(groups["y"])
    if len(groups["y"]) == 2:
        year += 2000
    month = _MONTHS[groups["mon"]] if groups.get("mon") else int(groups["m"])
    if not 1 <= month <= 12:
        return f"{match.group()!r} has no month {month}"
    if not MIN_YEAR <= year <= MAX_YEAR:
        return f"the year {year} is out of range ({MIN_YEAR}–{MAX_YEAR})"
    if groups.get("d") is None:
        return None, (year, month)
    try:
        return date(year, month, int(groups["d"])), None
    except ValueError:
        return f"{match.group()!r} is not a real date"


def _clean(value: Any) -> str:
    text = str(value) if value is not None else ""
    text = text.replace("\u2013", "-").replace("\u2014", "-").replace("\u00a0", " ")
    return " ".join(text.lower().split())


def _shown(value: Any) -> str:
    """The cell as a person would recognise it in a message (short)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = " ".join(str(value).split())
    return text if len(text) <= 80 else text[:77] + "…"
