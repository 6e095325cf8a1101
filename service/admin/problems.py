"""What is wrong now, kept between runs so that ``status`` can say it without a log to read.

Each intake cycle records its problems (our errors' messages: content-free by design) with
when each was first seen and how many cycles in a row have had it; a cycle without it clears
it. ``advice`` turns a problem into the next step a person should take.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from service.app import App
from service.ledger import ItemState
from service.ledger import iso as _iso

_KEY = "intake.problems"  # kv: JSON list of {"what", "since", "count", "last"}
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    what: str
    since: str  # ISO UTC: first cycle in the current run of cycles that had it
    count: int  # cycles in a row
    last: str
    items: tuple[str, ...] = ()  # references it held back this cycle (one problem, many items)

    def describe(self) -> str:
        if not self.items:
            return self.what
        shown = ", ".join(self.items[:5]) + (", …" if len(self.items) > 5 else "")
        return f"{self.what} [{len(self.items)} item(s): {shown}]"


# "PRV-2026-0007: alert not sent: …" — the same fault for each item is one problem.
_ITEM = re.compile(r"^([A-Z][A-Z0-9]{0,9}-\d{4}-\d+|mail:\S+|form:\S+): ")


def _one_line(message: str) -> str:
    return " ".join(message.split())[:300]


def _same(message: str) -> str:
    """Problems compare without their numbers (a timeout's seconds, a retry count)."""
    return re.sub(r"\d+(\.\d+)?", "#", message)


def record_intake_problems(app: App, problems: list[str]) -> None:
    previous = {_same(p.what): p for p in intake_problems(app)}
    now = app.now().isoformat()
    grouped: dict[str, list[str]] = {}
    for problem in problems:
        line = _one_line(problem)
        match = _ITEM.match(line)
        items = grouped.setdefault(line[match.end() :] if match else line, [])
        if match:
            items.append(match.group(1))
    current: list[dict[str, object]] = []
    for what, items in grouped.items():
        before = previous.get(_same(what))
        current.append(
            {
                "what": what,
                "since": before.since if before else now,
                "count": (before.count if before else 0) + 1,
                "last": now,
                "items": items,
            }
        )
    if current:
        app.ledger.set(_KEY, json.dumps(current[:MAX_PROBLEMS]))
    elif previous:
        app.ledger.delete(_KEY)


def still_holding(app: App, fresh: list[str]) -> list[str]:
    """Last cycle's problems that still hold items back, as this cycle's problem lines.

    An item that failed waits out its retry back-off; a cycle in which every such item is
    waiting tried nothing, so it has not shown that the fault is gone. Without this it would
    count as good and ``status`` would say healthy while nothing gets through. A problem stays
    while an open item is waiting with that problem's error as its last error and no cycle has
    tried it again; the first attempt that works finishes the item or (a register or sender
    answering again) releases the others, and the problem is gone with them."""
    previous = intake_problems(app)
    if not previous:
        return []
    now = _iso(app.now())
    waiting = [
        row
        for row in app.ledger.items_in_state(ItemState.OPEN)
        if row.retry_at and row.retry_at > now and row.last_error
    ]
    if not waiting:
        return []
    seen = {_same(_what(_one_line(p))) for p in fresh}
    carried: list[str] = []
    for problem in previous:
        if _same(problem.what) in seen:
            continue  # tried again this cycle, and failed again: already a fresh problem
        held = [row for row in waiting if _holds(problem.what, row.last_error or "")]
        if not held:
            continue
        if problem.items:
            carried += [f"{row.reference or row.source_key}: {problem.what}" for row in held]
        else:
            carried.append(problem.what)
    return carried


def _what(line: str) -> str:
    match = _ITEM.match(line)
    return line[match.end() :] if match else line


def _holds(what: str, last_error: str) -> bool:
    """Whether an item's last error ("TransientError: …") is the fault a problem names
    ("register: …", "alert not sent: …"); both are cut to length, so compare the start."""
    message = _same(_one_line(last_error.split(": ", 1)[-1]))[:120]
    return bool(message) and message in _same(what)


def intake_problems(app: App) -> list[Problem]:
    raw = app.ledger.get(_KEY)
    if not raw:
        return []
    return [Problem(**{**item, "items": tuple(item.get("items", ()))}) for item in json.loads(raw)]


# (pattern, what to do) — first match wins; the messages come from service.errors' tree.
_ADVICE: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"environment variable (\w+) is not set"),
        "set {0} in the worker's environment (on Linux: a line {0}=… in "
        "/etc/prevent-service/secrets.env, then 'systemctl restart prevent-service'); it holds "
        "a secret, so it never goes in config.toml",
    ),
    (
        re.compile(r"^alert not sent"),
        "the DSP has not been alerted: check [sending] in config.toml and run 'prevent-service "
        "check --send-test'; until it works, tell the DSP to look at the register and mailbox",
    ),
    (
        re.compile(r"^ConfigError"),
        "fix that key in config.toml, run 'prevent-service check', then restart the worker",
    ),
    (
        re.compile(r"authenticat|login|password|credential|AADSTS|invalid_client", re.I),
        "the server refused the service's sign-in: check the account, its password or the "
        "app's secret/certificate, then run 'prevent-service check'",
    ),
    (
        re.compile(r"LockedError|open in Excel|locked", re.I),
        "close the workbook in Excel (or wait for whoever has it open); the rows are written "
        "as soon as it frees up",
    ),
    (
        re.compile(r"PermanentError|permission|denied|forbidden|not found", re.I),
        "a person has to fix this (the message says what); then run 'prevent-service check'",
    ),
    (
        re.compile(r"TransientError|timed out|timeout|connection|unreachable|throttl", re.I),
        "usually passes by itself (network, server busy); if it stays for an hour, run "
        "'prevent-service check' from the server",
    ),
]
_DEFAULT_ADVICE = "run 'prevent-service check': it tries each capability and says what to fix"


def advice(what: str) -> str:
    for pattern, text in _ADVICE:
        match = pattern.search(what)
        if match:
            return text.format(*match.groups())
    return _DEFAULT_ADVICE
