"""`status` during an outage, between retries: a cycle in which every pending item is waiting
out its retry back-off tried nothing, so it keeps the problem open (same wording, same "since",
one more cycle in a row) and is not a good cycle; the first attempt that works clears it.

The real pipeline, on memory and folder mailboxes, with a backend that fails until told to
stop; the clock is the tests' own and moves one poll interval at a time."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.folder import FolderMailbox
from service.admin.problems import intake_problems
from service.admin.status import STALE_POLLS, status_report
from service.app import App
from service.errors import TransientError
from service.intake import pipeline
from tests.conftest import Clock
from tests.service.intake.test_outage import outage
from tests.service.intake.test_pipeline import alerts, mail, register_rows


@pytest.fixture(params=["memory", "folder"])
def app(request: pytest.FixtureRequest, memory_app: App, tmp_path: Path) -> Iterator[App]:
    """The memory App, its mailbox a memory one or a real folder of .eml files."""
    if request.param == "folder":
        memory_app._mailbox = FolderMailbox(tmp_path / "inbox", settle_seconds=0)  # type: ignore[assignment]
    yield memory_app


def deliver(app: App, raw: bytes, name: str) -> None:
    mailbox: Any = app.mailbox()
    if isinstance(mailbox, FolderMailbox):
        (mailbox.path / f"{name}.eml").write_bytes(raw)
    else:
        mailbox.deliver(raw, item_id=name)


class DownRegister:
    """The register workbook, failing every write with a transient error while ``down``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = True

    def append_rows(self, *args: Any, **kwargs: Any) -> None:
        if self.down:
            raise TransientError("the register is not answering")
        self.inner.append_rows(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def cycle(app: App, clock: Clock) -> pipeline.CycleResult:
    clock.advance(seconds=app.config.schedule.poll_seconds)
    return pipeline.poll(app)


def problem_lines(app: App) -> list[str]:
    """The first problem in `status`, as printed: the heading and its three lines."""
    _healthy, lines = status_report(app)
    start = next(i for i, line in enumerate(lines) if line.startswith("problems in the last"))
    return lines[start : start + 4]


def waiting(app: App) -> bool:
    """Whether every open item is waiting out its back-off (the case this file is about)."""
    now = clock_iso(app)
    rows = app.ledger.items_in_state("open")
    return bool(rows) and all(r.retry_at and r.retry_at > now for r in rows)


def clock_iso(app: App) -> str:
    from service.ledger import iso

    return iso(app.now())


def test_alerts_backing_off_keep_the_problem_open_until_one_goes(app: App, clock: Clock) -> None:
    sender = outage(app)
    deliver(app, mail("First worry.", message_id="<a@example.org>"), "a")
    deliver(app, mail("Second worry.", message_id="<b@example.org>"), "b")
    first = pipeline.poll(app)
    assert not first.ok and first.alerts == 0
    [problem] = intake_problems(app)
    assert problem.what.startswith("alert not sent: the mail service is not answering")

    cycles = 1
    while cycles < STALE_POLLS + 2:  # more than the 5 intervals after which status turns
        result = cycle(app, clock)
        cycles += 1
        assert not result.ok, f"cycle {cycles} counted as good while alerts wait: {result}"
        [now] = intake_problems(app)
        assert (now.what, now.since, now.count) == (problem.what, problem.since, cycles)
        assert sorted(now.items) == ["PRV-2026-0001", "PRV-2026-0002"]
    assert waiting(app), "the test should have had cycles with every alert waiting"
    # Some of those cycles tried nothing (each alert waits up to 4 intervals): that is the point.
    assert len(sender.attempted) < 2 * cycles

    healthy, lines = status_report(app)
    assert not healthy and lines[-1] == "NOT HEALTHY"
    text = "\n".join(problem_lines(app))
    assert "! alert not sent: the mail service is not answering [2 item(s): " in text
    since = r"since \d\d/\d\d/\d{4} \d\d:\d\d \(.*\), "
    assert re.search(since + rf"{cycles} cycle\(s\) in a row", text)
    assert "what to do: the DSP has not been alerted" in text

    sender.up = True  # the first alert that goes clears it
    for _ in range(pipeline.SEND_RETRY_POLLS + 1):
        if cycle(app, clock).alerts:
            break
    assert len(alerts(app)) >= 1
    assert intake_problems(app) == []
    healthy, lines = status_report(app)
    assert healthy, lines
    cycle(app, clock)
    assert len(alerts(app)) == 2 and len(register_rows(app)) == 2


def test_a_row_backing_off_keeps_the_register_problem_open(app: App, clock: Clock) -> None:
    register = DownRegister(app.workbook("register"))
    app._workbooks["register"] = register  # type: ignore[assignment]
    deliver(app, mail(), "a")
    first = pipeline.poll(app)
    assert first.alerts == 1 and not first.ok
    # The row, and the case's chronology events (tried every cycle, so always fresh).
    [problem] = [p for p in intake_problems(app) if p.what.startswith("register: ")]
    assert problem.what == "register: the register is not answering"

    tried_nothing = 0
    for n in range(2, 9):  # the row's back-off grows: most of these cycles try nothing
        tried_nothing += waiting(app)
        assert not cycle(app, clock).ok
        [now] = [p for p in intake_problems(app) if p.what.startswith("register: ")]
        assert (now.what, now.since, now.count) == (problem.what, problem.since, n)
    assert tried_nothing >= 3
    healthy, lines = status_report(app)
    assert not healthy
    text = "\n".join(lines)
    assert "  ! register: the register is not answering\n    since " in text
    assert re.search(r"\), 8 cycle\(s\) in a row\n    what to do: ", text)

    register.down = False
    row = app.ledger.item_by_reference("PRV-2026-0001")
    assert row is not None and row.retry_at is not None
    clock.now = datetime.fromisoformat(row.retry_at)
    result = pipeline.poll(app)  # the row's retry: the register answers
    assert result.ok and result.done == 1
    assert intake_problems(app) == []
    assert status_report(app)[0]


def test_a_problem_no_item_waits_on_is_not_kept(app: App, clock: Clock) -> None:
    """Only a problem still holding an item back stays."""
    outage(app)
    deliver(app, mail(), "a")
    pipeline.poll(app)
    assert intake_problems(app)
    # A person deals with the item (say it was finished by hand): nothing waits on the fault.
    row = app.ledger.item_by_reference("PRV-2026-0001")
    assert row is not None and waiting(app)
    app.ledger.finish(row.source_key, "done", note="by hand")
    assert cycle(app, clock).ok
    assert intake_problems(app) == []
