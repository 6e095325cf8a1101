"""How long does a locked, atomic append to the local .xlsx register take as it grows?

For registers that already hold 1,000 and 10,000 rows of ~30 realistic columns, prints the
median (min–max) over ``--runs`` of, side by side in the same run on the same file:

- "stream": the service's append (``XlsxWorkbook(streaming=True)``, connectors.xlsx_append),
  1 row and a burst of 10 rows (one call), once the process has seen the file;
- "stream, fresh process": the first append of a new Python process (as a worker's first
  append after it starts: it reads the sheet once), each run its own process, timed around
  the ``append_rows`` call (its processor time, which other load on the machine changes less,
  and the whole process, with Python's start and the imports a worker does once, are printed
  beside it);
- "openpyxl": the same 1-row append on the openpyxl path (``streaming=False``);
- "load+save": a plain ``openpyxl.load_workbook`` + ``save`` of the same file (the baseline),
  in this process and, beside the fresh-process append, in fresh processes too;

and each as a ratio to load+save. No assertions on time.

    PYTHONPATH=. python bench/bench_register.py [--runs 5] [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
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


def child(mode: str, path: Path, n: int) -> None:
    """One fresh-process measurement (run by ``fresh``): prints JSON."""
    if mode == "first":
        wb = XlsxWorkbook(path, backups=3, streaming=True)  # as the service builds it
        start, cpu = time.perf_counter(), time.process_time()
        wb.append_rows("Concerns", [row(random.Random(n), n)], key_column="Source key")
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert wb._appender is not None
        fallback = wb._appender.last_fallback
    else:
        cpu = time.process_time()
        took = load_save(path)
        cpu = time.process_time() - cpu
        fallback = None
    print(json.dumps({"seconds": took, "cpu": cpu, "fallback": fallback}))


def fresh(mode: str, path: Path, n: int) -> dict[str, Any]:
    began = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path), str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    result["process"] = time.perf_counter() - began
    return result


def fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.3f}s ({min(xs):.3f}–{max(xs):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), int(args.child[2]))
        return
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
            firsts, cpus, processes, fresh_saves, ones, tens = [], [], [], [], [], []
            for _ in range(args.runs):
                n += 1
                got = fresh("first", path, n)
                assert got["fallback"] is None, got["fallback"]
                firsts.append(got["seconds"])
                processes.append(got["process"])
                cpus.append(got["cpu"])
                fresh_saves.append(fresh("loadsave", path, n)["seconds"])
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
                ("stream, 1 row", ones),
                ("stream, 10 rows", tens),
            ):
                ratio = statistics.median(xs) / base
                print(f"    {label:<30} {fmt(xs)}  {ratio:6.3f}x")
            print("    fresh processes (ratio = median / fresh load+save median):")
            fresh_base = statistics.median(fresh_saves)
            for label, xs in (
                ("load+save, fresh process", fresh_saves),
                ("stream, first append", firsts),
            ):
                ratio = statistics.median(xs) / fresh_base
                print(f"    {label:<30} {fmt(xs)}  {ratio:6.3f}x")
            print(f"    {'(its processor time)':<30} {fmt(cpus)}")
            print(f"    {'(its whole process)':<30} {fmt(processes)}")


if __name__ == "__main__":
    main()
