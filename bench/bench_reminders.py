"""Reminder cycle time for a plan of 1,000 action rows and 500 staff (median over runs).

    /tmp/v/bin/python bench/bench_reminders.py [--runs 7] [--xlsx]

Prints, for the memory workbook (and with --xlsx a real .xlsx file through openpyxl):
- "first run": the cycle on a fresh ledger, where every item has something to send;
- "steady run": the same day again, where everything is already recorded (the daily norm);
- "dry run": planning only, nothing recorded.
The sender is in memory, so the figures are the service's own work (read, parse, plan, render,
record), not network time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.base import Workbook
from connectors.memory import MemorySender, MemoryWorkbook
from service.app import App
from service.compliance.reminders import run_cycle
from service.compliance.workbook import compliance_table_specs
from service.config import parse_config
from service.ledger import Ledger

TODAY = date(2026, 11, 25)
MONTHS = ["Jan", "Feb", "March", "April", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec"]
ROLES = {
    "Executive Director": ["ed@example.org"],
    "Operations Director": ["od@example.org"],
    "Training Managers": ["tm1@example.org", "tm2@example.org"],
    "WRAP specialists": ["wrap@example.org"],
    "All staff": ["all.staff@example.org"],
    **{f"Centre Lead {n}": [f"centre{n}@example.org"] for n in range(20)},
}


def plan_rows(n: int, rng: random.Random) -> list[tuple[object, ...]]:
    owners = list(ROLES)
    rows = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.5:
            due: object = TODAY + timedelta(days=rng.randint(-200, 200))
        elif kind < 0.8:
            due = f"{rng.choice(MONTHS)} {rng.choice([2026, 2027])}"
        elif kind < 0.9:
            due = rng.choice(["Sept 2026 on ongoing", "termly", "Immediate", "Jan 2027 onwards"])
        else:
            due = rng.choice(["TBC", "ongoing", "soon", "bi-annual"])
        owner = "; ".join(rng.sample(owners, rng.choice([1, 1, 2])))
        status = rng.choice(["Not started", "In progress", "In progress", "Complete"])
        rows.append((f"Objective {i % 40}", f"Action number {i}", owner, due, None, "", status))
    return rows


def staff_rows(n: int, rng: random.Random) -> list[tuple[object, ...]]:
    rows = []
    for i in range(n):
        manager = f"manager{i % 25}@example.org"
        start = TODAY - timedelta(days=rng.randint(1, 3000))
        last = None if rng.random() < 0.05 else TODAY - timedelta(days=rng.randint(0, 500))
        role = "DSP" if i < 3 else "Trainer"
        rows.append(
            (f"Person {i}", f"person{i}@example.org", role, manager, start, last, None, None)
        )
    return rows


def build_specs() -> list:  # type: ignore[type-arg]
    rng = random.Random(20261125)
    action, policy, training = compliance_table_specs(True, TODAY)
    return [
        action.__class__(action.sheet, action.table, action.columns, tuple(plan_rows(1000, rng))),
        policy,
        training.__class__(
            training.sheet, training.table, training.columns, tuple(staff_rows(500, rng))
        ),
    ]


def memory_workbook(specs: list) -> MemoryWorkbook:  # type: ignore[type-arg]
    wb = MemoryWorkbook(name="bench.xlsx")
    for spec in specs:
        wb.add_table(
            spec.table, [c.header for c in spec.columns], list(spec.rows), sheet=spec.sheet
        )
    return wb


def make_app(workbook: Workbook, ledger: Ledger) -> tuple[App, MemorySender]:
    config = parse_config(
        {
            "organisation": {"name": "Example Training Ltd"},
            "people": {
                "dsp": {"name": "Dana Example", "email": "dsp@example.org"},
                "admin_email": "admin@example.org",
            },
            "roles": ROLES,
            "intake": {"address": "safeguarding@example.org"},
            "register": {"workbook": {"backend": "memory"}},
            "sending": {"sender": {"backend": "memory"}},
            "compliance": {"workbook": {"backend": "memory"}, "plan_owner": "Executive Director"},
        }
    )
    now = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    sender = MemorySender()
    app = App(
        config, ledger=ledger, now=lambda: now, sender=sender, workbooks={"compliance": workbook}
    )
    return app, sender


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench(label: str, workbook_factory: Callable[[], Workbook], runs: int) -> None:
    first, steady, dry = [], [], []
    digests = entries = 0
    for _ in range(runs):
        workbook = workbook_factory()
        app, sender = make_app(workbook, Ledger(":memory:"))
        dry.append(timed(lambda app=app: run_cycle(app, TODAY, dry_run=True)))
        report = None

        def go(app: App = app) -> None:
            nonlocal report
            report = run_cycle(app, TODAY)

        first.append(timed(go))
        assert report is not None
        digests, entries = report.sent, report.entries
        steady.append(timed(lambda app=app: run_cycle(app, TODAY)))
        assert len(sender.sent) == digests  # the second run sent nothing
    print(f"{label}: 1,000 plan rows + 500 staff; first run {digests} digests, {entries} entries")
    for name, values in (("dry run", dry), ("first run", first), ("steady run", steady)):
        print(
            f"  {name:<10} median {statistics.median(values) * 1000:8.1f} ms"
            f"  (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f}, {runs} runs)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--xlsx", action="store_true", help="also through a real .xlsx file")
    args = parser.parse_args()
    specs = build_specs()
    bench("memory workbook", lambda: memory_workbook(specs), args.runs)
    if args.xlsx:
        from connectors.xlsx import XlsxWorkbook, create_workbook

        with tempfile.TemporaryDirectory() as tmp:
            counter = iter(range(10_000))

            def xlsx() -> Workbook:
                path = Path(tmp) / f"compliance-{next(counter)}.xlsx"
                create_workbook(path, specs)
                return XlsxWorkbook(path)

            bench("xlsx workbook", xlsx, args.runs)


if __name__ == "__main__":
    main()
