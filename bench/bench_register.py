"""How long does a locked, atomic append to the local .xlsx register take as it grows?

For registers that already hold 1,000 and 10,000 rows of ~30 realistic columns, prints the
median (min–max) over ``--runs`` of, side by side in the same run on the same file:

- "stream": the service's append (``XlsxWorkbook(streaming=True)``, connectors.xlsx_append),
  1 row and a burst of 10 rows (one call), once the process has seen the file; "first" is the
  first append of a fresh process (it reads and recompresses the sheet once);
- "openpyxl": the same 1-row append on the openpyxl path (``streaming=False``);
- "load+save": a plain ``openpyxl.load_workbook`` + ``save`` of the same file (the baseline);

and each as a ratio to load+save. No assertions on time.

    PYTHONPATH=. python bench/bench_register.py [--runs 5] [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl

from connectors.base import ColumnSpec, TableSpec
from connectors.xlsx import XlsxWorkbook, create_workbook

WORDS = [
    "learner",
    "said",
    "online",
    "video",
    "group",
    "friend",
    "worried",
    "change",
    "behaviour",
    "comments",
    "class",
    "teacher",
    "noticed",
    "phone",
    "shared",
    "posts",
    "extreme",
    "views",
    "isolated",
    "family",
    "support",
    "referral",
    "meeting",
    "centre",
    "manager",
    "spoke",
    "calm",
    "upset",
    "discussed",
    "explained",
    "asked",
    "later",
]

COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("Reference", width=16),
    ColumnSpec("Recorded at", kind="datetime"),
    ColumnSpec("Source"),
    ColumnSpec("Reported by"),
    ColumnSpec("Reporter email"),
    ColumnSpec("Person of concern"),
    ColumnSpec("Learner ref"),
    ColumnSpec("Date of birth or age"),
    ColumnSpec("Centre or area"),
    ColumnSpec("Occurred at", kind="datetime"),
    ColumnSpec("Indicators", kind="long_text"),
    ColumnSpec("Critical"),
    ColumnSpec("Summary", kind="long_text"),
    ColumnSpec("Account", kind="long_text"),
    ColumnSpec("Immediate action", kind="long_text"),
    ColumnSpec("Link"),
    ColumnSpec("Status", kind="choice", choices=("New", "Open", "Closed"), owner="person"),
    ColumnSpec("Risk level", kind="choice", choices=("Low", "Medium", "High"), owner="person"),
    ColumnSpec("Decision", owner="person"),
    ColumnSpec("Rationale", kind="long_text", owner="person"),
    ColumnSpec("Prevent referral", kind="date", owner="person"),
    ColumnSpec("Channel", kind="date", owner="person"),
    ColumnSpec("Police", kind="date", owner="person"),
    ColumnSpec("Social care", kind="date", owner="person"),
    ColumnSpec("Parent informed", owner="person"),
    ColumnSpec("Actions", kind="long_text", owner="person"),
    ColumnSpec("Outcome", kind="long_text", owner="person"),
    ColumnSpec("Closed", kind="date", owner="person"),
    ColumnSpec("Review", kind="date", owner="person"),
    ColumnSpec("Source key", kind="hidden"),
)


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def row(rng: random.Random, n: int) -> dict[str, Any]:
    when = datetime(2026, 1, 1, 9, 0) + timedelta(hours=n)
    return {
        "Reference": f"PRV-2026-{n:05d}",
        "Recorded at": when,
        "Source": rng.choice(["mail", "form"]),
        "Reported by": f"Staff Member {n % 97}",
        "Reporter email": f"staff{n % 97}@example.org",
        "Person of concern": f"Learner {n % 1013}",
        "Learner ref": f"L{n:06d}",
        "Date of birth or age": str(16 + n % 8),
        "Centre or area": rng.choice(["North", "South", "East", "West"]),
        "Occurred at": when - timedelta(days=1),
        "Indicators": "; ".join(rng.sample(WORDS, 3)),
        "Critical": rng.choice(["yes", "no"]),
        "Summary": text(rng, 12),
        "Account": text(rng, 120),
        "Immediate action": text(rng, 20),
        "Link": f"https://example.org/mail/{n}",
        "Status": "New",
        "Source key": f"mail:{n:08x}",
    }


def build(path: Path, rows: int) -> None:
    rng = random.Random(rows)
    spec = TableSpec(
        sheet="Register",
        table="Concerns",
        columns=COLUMNS,
        rows=tuple(tuple(row(rng, n).get(c.header) for c in COLUMNS) for n in range(rows)),
    )
    create_workbook(path, [spec])


def timed(wb: XlsxWorkbook, rows: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    wb.append_rows("Concerns", rows, key_column="Source key")
    return time.perf_counter() - start


def load_save(path: Path) -> float:
    start = time.perf_counter()
    book = openpyxl.load_workbook(path)
    book.save(path.with_name("baseline.xlsx"))
    return time.perf_counter() - start


def fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.3f}s ({min(xs):.3f}–{max(xs):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    rng = random.Random(7)
    print(f"medians (min–max) of {args.runs} runs; ratio = median / load+save median")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "concern-register.xlsx"
            build(path, size)
            kib = path.stat().st_size / 1024
            n = size
            baseline = [load_save(path) for _ in range(args.runs)]
            old = XlsxWorkbook(path, backups=3)
            olds = []
            for _ in range(args.runs):
                n += 1
                olds.append(timed(old, [row(rng, n)]))
            firsts, ones, tens = [], [], []
            for _ in range(args.runs):
                n += 1
                fresh = XlsxWorkbook(path, backups=3, streaming=True)  # a new process's view
                firsts.append(timed(fresh, [row(rng, n)]))
            wb = XlsxWorkbook(path, backups=3, streaming=True)
            timed(wb, [row(rng, n + 1)])
            n += 1
            for _ in range(args.runs):
                n += 1
                ones.append(timed(wb, [row(rng, n)]))
                burst = [row(rng, n + k + 1) for k in range(10)]
                n += 10
                tens.append(timed(wb, burst))
            assert wb._appender is not None and wb._appender.last_fallback is None
            base = statistics.median(baseline)
            print(f"{size:>7} rows, {kib:,.0f} KiB:")
            for label, xs in (
                ("load+save (baseline)", baseline),
                ("openpyxl path, 1 row", olds),
                ("stream, first append", firsts),
                ("stream, 1 row", ones),
                ("stream, 10 rows", tens),
            ):
                ratio = statistics.median(xs) / base
                print(f"    {label:<22} {fmt(xs)}  {ratio:6.3f}x")


if __name__ == "__main__":
    main()
