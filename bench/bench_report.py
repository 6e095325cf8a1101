"""Board report time: ``gather`` and the workbook write, on real .xlsx files (median of runs).

    /tmp/v/bin/python bench/bench_report.py [--runs 5] [--sizes 1000 10000]

For registers of 1,000 and 10,000 concern rows (the service's own columns, realistic text) and
a compliance workbook of 1,000 action plan rows and 500 staff (bench_reminders' builders),
both real .xlsx files read by the xlsx backend, prints:
- "gather": reading both workbooks and working out the figures for one academic year
  (a fresh XlsxWorkbook each run, as every ``report`` command starts cold);
- "write": the report workbook with its charts (``write_report_workbook``);
each as median (min–max) over the runs, and its peak Python memory (tracemalloc, in a
separate run so that tracing does not slow the timed ones). No assertions on time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_register import text
from bench.bench_reminders import ROLES, build_specs
from connectors.memory import MemorySender
from connectors.report_xlsx import write_report_workbook
from connectors.xlsx import XlsxWorkbook, create_workbook
from service.app import App
from service.cases.register import (
    RECORDED_AT,
    REFERENCE,
    REGISTER_COLUMNS,
    STATUS_CHOICES,
    register_table_spec,
)
from service.config import Config, parse_config
from service.ledger import Ledger
from service.reporting.report import BoardReport, Period, gather

T = TypeVar("T")
LONDON_TZ = "Europe/London"
PERIOD = Period(date(2025, 8, 1), date(2026, 7, 31))  # the yearly report's academic year
INDICATORS = (
    "More critical risk factors — Accessing extremist websites",
    "Vulnerability — Personal crisis",
    "Access to extremist influences — Use of closed network groups",
    "Experiences, behaviours and influences — Experience of peer rejection",
)
AREAS = ("Warwickshire", "Nuneaton centre", "Coventry", "Birmingham", "")


def concern_row(rng: random.Random, n: int, start: datetime, span_hours: int) -> tuple[Any, ...]:
    """One register row with every service column filled and some DSP columns."""
    recorded = start + timedelta(hours=rng.randrange(span_hours), minutes=rng.randrange(60))
    picked = rng.sample(INDICATORS, rng.choice([0, 1, 1, 2, 3]))
    lead = "Suggested from e-mail text (the DSP decides)" if rng.random() < 0.6 else "Reported"
    cells: dict[str, Any] = {
        "Reference": f"PRV-{recorded.year}-{n:05d}",
        "Recorded at": recorded,  # naive local, as the service writes it
        "Source": rng.choice(["E-mail", "Form"]),
        "Reported by": f"Staff Member {n % 97}",
        "Reporter email": f"staff{n % 97}@example.org",
        "Person of concern": f"Learner {n % 1013}",
        "Learner ref": f"L{n:06d}",
        "DOB or age": str(16 + n % 8),
        "Centre/area": rng.choice(AREAS),
        "Occurred at": (recorded - timedelta(days=1)).strftime("%Y-%m-%d %H:%M"),
        "Risk indicators": f"{lead}: " + "; ".join(picked) if picked else "",
        "Critical risk factor": "Yes" if picked and picked[0] == INDICATORS[0] else "No",
        "Summary": text(rng, 12),
        "Account": text(rng, 120),
        "Immediate action taken": text(rng, 20),
        "Link to original": f"https://example.org/mail/{n}",
        "Status": rng.choice(STATUS_CHOICES),
        "Decision and rationale": text(rng, 25),
        "Source key": f"mail:{n:08x}",
    }
    return tuple(cells.get(c.header) for c in REGISTER_COLUMNS)


def build_register(path: Path, rows: int) -> list[tuple[str, datetime]]:
    """The register file; returns (reference, recorded at) for a quarter of the rows, as the
    escalation check would have recorded them (time to acknowledge)."""
    rng = random.Random(rows)
    start = datetime(2024, 8, 1, 8, 0)  # two academic years: about half is in the period
    span = int((datetime(2026, 7, 31, 18) - start).total_seconds() // 3600)
    data = [concern_row(rng, n, start, span) for n in range(rows)]
    create_workbook(path, [register_table_spec(rows=tuple(data))])
    headers = [c.header for c in REGISTER_COLUMNS]
    ref, rec = headers.index(REFERENCE), headers.index(RECORDED_AT)
    return [(str(r[ref]), r[rec]) for r in data[::4]]


def make_config(folder: Path) -> Config:
    return parse_config(
        {
            "organisation": {"name": "Example Training Ltd", "timezone": LONDON_TZ},
            "people": {
                "dsp": {"name": "Dana Example", "email": "dsp@example.org"},
                "admin_email": "admin@example.org",
            },
            "roles": ROLES,
            "areas": {"Warwickshire": {"aliases": ["Nuneaton"]}, "Coventry": {}},
            "intake": {"address": "safeguarding@example.org"},
            "register": {"workbook": {"backend": "memory"}},
            "sending": {"sender": {"backend": "memory"}},
            "compliance": {"workbook": {"backend": "memory"}, "plan_owner": "Executive Director"},
            "state": {"path": str(folder / "state")},
        }
    )


class WholeTable:
    """The register as before read_columns: every read is a whole-table ``read_table`` (the
    baseline for the report's memory)."""

    def __init__(self, inner: XlsxWorkbook) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "read_columns":
            raise AttributeError(name)
        return getattr(self.inner, name)


def make_app(
    config: Config,
    register: Path,
    compliance: Path,
    acks: list[tuple[str, datetime]],
    *,
    whole: bool = False,
) -> App:
    """An App over fresh xlsx workbooks (nothing cached) and a ledger holding ``acks``."""
    tz = config.organisation.tz
    ledger = Ledger(":memory:")
    for reference, recorded in acks:
        at = recorded.replace(tzinfo=tz).astimezone(UTC)
        ledger.db.execute(
            "INSERT INTO concern_watch (reference, recorded_at, first_checked, left_new_at) "
            "VALUES (?, ?, ?, ?)",
            (reference, at.isoformat(), at.isoformat(), (at + timedelta(hours=3)).isoformat()),
        )
    return App(
        config,
        ledger=ledger,
        now=lambda: datetime(2026, 9, 1, 7, 0, tzinfo=UTC),
        sender=MemorySender(),
        workbooks={
            "register": WholeTable(XlsxWorkbook(register, tz=tz))  # type: ignore[dict-item]
            if whole
            else XlsxWorkbook(register, tz=tz),
            "compliance": XlsxWorkbook(compliance, tz=tz),
        },
    )


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def peak_mib(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:7.0f} ms ({min(xs) * 1000:.0f}–{max(xs) * 1000:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    print(
        "xlsx backend; compliance: 1,000 action plan rows, 500 staff; "
        f"period {PERIOD.start} to {PERIOD.end}; {args.runs} runs"
    )
    print(
        f"{'rows':>6} {'register':>9} {'counted':>8}  {'gather: median (min–max)':<26}"
        f" {'peak':>8}  {'write: median (min–max)':<26} {'peak':>8} {'report':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        compliance = folder / "compliance.xlsx"
        create_workbook(compliance, build_specs())
        config = make_config(folder)
        for size in args.sizes:
            register = folder / f"register-{size}.xlsx"
            acks = build_register(register, size)
            out = folder / f"report-{size}.xlsx"
            gathers: list[float] = []
            writes: list[float] = []
            reports: list[BoardReport] = []
            for _ in range(max(args.runs, 1)):
                app = make_app(config, register, compliance, acks)
                took, got = timed(partial(gather, app, PERIOD))
                gathers.append(took)
                reports.append(got)
                writes.append(timed(partial(write_report_workbook, got, out))[0])
                app.close()
            report = reports[-1]
            app = make_app(config, register, compliance, acks)
            gather_peak = peak_mib(partial(gather, app, PERIOD))
            app.close()
            write_peak = peak_mib(partial(write_report_workbook, report, out))
            app = make_app(config, register, compliance, acks, whole=True)
            whole_peak = peak_mib(partial(gather, app, PERIOD))
            app.close()
            whole_times = []
            for _ in range(max(args.runs, 1)):
                app = make_app(config, register, compliance, acks, whole=True)
                took, got = timed(partial(gather, app, PERIOD))
                assert got.concerns == report.concerns  # the same figures either way
                whole_times.append(took)
                app.close()
            print(
                f"{size:>6} {register.stat().st_size / 1024:>6.0f}KiB"
                f" {report.concerns.total:>8}  {fmt(gathers):<26} {gather_peak:>5.1f}MiB"
                f"  {fmt(writes):<26} {write_peak:>5.1f}MiB {out.stat().st_size / 1024:>5.0f}KiB"
            )
            print(
                f"{'':>6} gather reading the whole register table (before): "
                f"{fmt(whole_times)}, peak {whole_peak:5.1f}MiB; "
                f"columns only / whole: time "
                f"{statistics.median(gathers) / statistics.median(whole_times):.2f}x, "
                f"peak {gather_peak / whole_peak:.2f}x"
            )
            t = report.training_total
            print(
                f"{'':>6} figures: {t.staff} staff ({t.percent:g}% current), "
                f"{len(report.actions)} actions {report.rag_counts}, "
                f"{report.concerns.acknowledged} timed acknowledgements, "
                f"{report.concerns.unreadable_rows} unreadable rows"
            )


if __name__ == "__main__":
    main()
