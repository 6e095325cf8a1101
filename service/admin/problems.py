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
