"""What the new register layout costs the local backend: reading a 10,000-row register (what
the escalation check and the report do) with the Retention review calculated column, against
the same register without it, and appending one row to each.

    PYTHONPATH=. python bench/bench_register_layout.py [--rows 10000] [--runs 5]

A formula column makes ``read_table`` take a second, streaming pass for the formulas' saved
values; this prints by how much (medians of ``--runs`` fresh reads, CPU time beside wall time:
the machine is shared).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from connectors.xlsx import XlsxWorkbook, create_workbook
from service.cases.register import RETENTION_REVIEW, register_table_spec


def rows(n: int) -> list[dict[str, object]]:
    start = datetime(2026, 9, 1, 9, 0)
    return [
        {
            "Reference": f"PRV-2026-{i:05d}",
            "Received at": start + timedelta(minutes=i),
            "Recorded at": start + timedelta(minutes=i, seconds=30),
            "Source": "E-mail",
            "Summary": f"Concern {i} about a learner in the Tuesday group",
            "Account": "The learner said something worrying in class. " * 8,
            "Status": "New",
            "Source key": f"mail:{i}",
        }
        for i in range(n)
    ]


def timed(fn: object, runs: int) -> tuple[float, float]:
    wall, cpu = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        fn()  # type: ignore[operator]
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    data = rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for label, with_formula in (("with Retention review formula", True), ("without", False)):
            spec = register_table_spec()
            if not with_formula:
                spec = replace(
                    spec,
                    columns=tuple(
                        replace(c, formula="") if c.header == RETENTION_REVIEW else c
                        for c in spec.columns
                    ),
                )
            path = Path(tmp) / f"{with_formula}.xlsx"
            create_workbook(path, [spec])
            XlsxWorkbook(path).append_rows("Concerns", data, key_column="Source key")
            read = timed(lambda p=path: XlsxWorkbook(p).read_table("Concerns"), args.runs)
            counter = iter(range(10**9))
            one = timed(
                lambda p=path, counter=counter: XlsxWorkbook(p).append_rows(
                    "Concerns", [{"Reference": "X", "Source key": f"new:{next(counter)}"}]
                ),
                args.runs,
            )
            results[label] = (read, one, path.stat().st_size)
        print(f"register of {args.rows:,} rows, medians of {args.runs} runs (wall / CPU seconds):")
        for label, (read, one, size) in results.items():
            print(
                f"  {label:32s} read_table {read[0]:6.2f} / {read[1]:6.2f}   "
                f"append 1 row {one[0]:6.2f} / {one[1]:6.2f}   file {size / 1e6:.1f} MB"
            )
        (r1, a1, _), (r0, a0, _) = results.values()
        print(
            f"  read ratio {r1[0] / r0[0]:.2f}x, append ratio {a1[0] / a0[0]:.2f}x (with / without)"
        )


if __name__ == "__main__":
    main()
