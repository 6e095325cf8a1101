"""Intake throughput on the local backends (folder inbox → xlsx register → outbox).

Prints messages per second for a burst of N messages, and the time one intake cycle takes to
append to a register that already holds 1,000 and 10,000 rows.

    python bench/bench_intake.py [--messages 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from datetime import date
from email.message import EmailMessage
from pathlib import Path

from connectors.xlsx import XlsxWorkbook
from service.admin.setup import init_folder
from service.app import App
from service.cases.register import SERVICE_COLUMNS, SOURCE_KEY
from service.config import load_config
from service.intake.pipeline import poll

BODY = (
    "During the session the learner said things that worried me about a group they have "
    "joined online. They have withdrawn from their usual friends. " * 6
)


def message(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Staff {n} <staff{n}@example.org>"
    msg["To"] = "safeguarding@example.org"
    msg["Subject"] = f"Concern number {n}"
    msg["Message-ID"] = f"<bench-{n}-{time.monotonic_ns()}@example.org>"
    msg.set_content(BODY)
    return msg.as_bytes()


def fresh(folder: Path) -> App:
    init_folder(folder, demo=False, today=date.today())
    return App(load_config(folder / "config.toml"))


def drop(folder: Path, count: int, start: int = 0) -> None:
    settled = time.time() - 60  # the folder mailbox skips files younger than 2 s
    for n in range(start, start + count):
        path = folder / "inbox" / f"m{n:06d}.eml"
        path.write_bytes(message(n))
        os.utime(path, (settled, settled))


def burst(count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "svc"
        app = fresh(folder)
        drop(folder, count)
        started = time.perf_counter()
        result = poll(app)
        elapsed = time.perf_counter() - started
        assert result.done == count, result.summary()
        app.close()
        return count / elapsed


def prefill(app: App, rows: int) -> None:
    workbook = app.workbook("register")
    assert isinstance(workbook, XlsxWorkbook)
    filler = []
    for n in range(rows):
        row = {spec.header: f"existing text {n}" for spec, _ in SERVICE_COLUMNS}
        row["Reference"] = f"PRV-2025-{n:05d}"
        row[SOURCE_KEY] = f"mail:old-{n}"
        filler.append(row)
    workbook.append_rows("Concerns", filler)


def append_cycle(existing: int, new: int, repeat: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "svc"
        app = fresh(folder)
        prefill(app, existing)
        for r in range(repeat):
            drop(folder, new, start=r * new)
            started = time.perf_counter()
            result = poll(app)
            times.append(time.perf_counter() - started)
            assert result.logged == new, result.summary()
        size = (folder / "workbooks" / "concern-register.xlsx").stat().st_size
        app.close()
    print(f"  register file with {existing:,} rows: {size / 1e6:.1f} MB")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.INFO)

    rates = [burst(args.messages) for _ in range(args.repeat)]
    print(
        f"burst of {args.messages} messages into an empty register: "
        f"median {statistics.median(rates):.1f} msg/s (min {min(rates):.1f}, max {max(rates):.1f})"
    )
    for existing in (1_000, 10_000):
        for new in (1, 10):
            times = append_cycle(existing, new, args.repeat)
            print(
                f"cycle appending {new:>2} row(s) to {existing:>6,} existing: median "
                f"{statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f}, "
                f"max {max(times) * 1000:.0f})"
            )


if __name__ == "__main__":
    main()
