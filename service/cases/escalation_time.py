"""How long a concern has waited, for escalation; who is copied, in words; is it critical.

``register.escalate_in = "working"`` counts only ``register.working_hours`` on working days
(weekends and England and Wales bank holidays do not count): a concern logged on Friday at
16:00 with a 4-hour threshold escalates on Monday at 12:00, not on Friday at 20:00 when nobody
reads it. Critical concerns are counted by ``register.escalate_critical_in``, clock hours by
default: they must not wait for Monday.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

from service.app import App
from service.compliance.duedates import is_working_day
from service.config import Config


def _window(config: Config) -> tuple[time, time]:
    start, end = config.register.working_hours.split("-")
    return time.fromisoformat(start), time.fromisoformat(end)


def counts_working(config: Config, critical: bool) -> bool:
    register = config.register
    return (register.escalate_critical_in if critical else register.escalate_in) == "working"


def waited_hours(config: Config, since: datetime, now: datetime, *, critical: bool) -> float:
    """Hours ``since`` → ``now`` as escalation counts them (clock, or working hours)."""
    if not counts_working(config, critical):
        return max((now - since).total_seconds(), 0.0) / 3600
    tz = config.organisation.tz
    start_at, end_at = _window(config)
    local_since, local_now = since.astimezone(tz), now.astimezone(tz)
    total = timedelta(0)
    day: date = local_since.date()
    while day <= local_now.date():
        if is_working_day(day):
            opens = datetime.combine(day, start_at, tz)
            closes = datetime.combine(day, end_at, tz)
            lo, hi = max(opens, local_since), min(closes, local_now)
            if hi > lo:
                total += hi - lo
        day += timedelta(days=1)
    return total.total_seconds() / 3600


def hours_text(hours: float, *, working: bool) -> str:
    """'5 hours', '3 days' or, counted in working time, '5 working hours'."""
    if working:
        whole = int(hours)
        return f"{whole} working hour{'s' if whole != 1 else ''}"
    if hours < 48:
        whole = int(hours)
        return f"{whole} hour{'s' if whole != 1 else ''}"
    return f"{int(hours // 24)} days"


def with_role(name: str, role: str) -> str:
    """'Alex Morgan (DSP)' — once: a name that already says its role is left as it is."""
    if re.search(rf"\b{re.escape(role)}\b", name, re.IGNORECASE):
        return name
    return f"{name} ({role})"


def copied_text(config: Config, cc: Sequence[str]) -> str:
    """The sentence naming who is copied, or '' when nobody is."""
    dsp = config.people.dsp
    if not cc:
        return ""
    if dsp.email in cc:
        return f"{with_role(dsp.name, 'DSP')} is copied."
    return f"{', '.join(cc)} {'is' if len(cc) == 1 else 'are'} copied."


_CRITICAL_TEXT = re.compile(r"^\s*(yes|suggested)", re.IGNORECASE)


def is_critical(app: App, reference: str, register_text: str) -> bool:
    """Critical as the first alert said (the ledger), or as the register's "Critical risk
    factor" column says (a ledger rebuilt, or the DSP's own marking)."""
    row = app.ledger.db.execute(
        "SELECT MAX(critical) FROM items WHERE reference = ?", (reference,)
    ).fetchone()
    return bool(row and row[0]) or bool(_CRITICAL_TEXT.match(register_text or ""))
