"""The case record at size: one chronology append and one `case` look-up with a register of
10,000 concerns and a Chronology of 50,000 events, on the local xlsx backend and on Graph (the
local emulator: real msal/O365 and the real workbook code over HTTPS).

Prints the median and range of ``--runs`` runs (default 5) of:

- **append**: one service event queued, then ``chronology.flush`` (on xlsx: the locked
  read-modify-write of the file; on Graph: a session and ``rows/add``);
- **case**: ``prevent-service case PRV-…`` (``casefile.case_command``) on a fresh App, so
  nothing is cached: the case's register row with every column, the DSP's own included
  (locally found in the sheet's bytes, ``read_rows_where``; on Graph the table read whole),
  and the case's Chronology rows (``read_rows_matching``: locally found in the sheet's bytes
  too; on Graph the table read and filtered).

    PYTHONPATH=. python bench/bench_cases.py [--concerns 10000] [--events 50000] [--runs 5]
                                             [--latency 0.0] [--only xlsx|graph]

The emulator runs in this process and keeps the file with openpyxl, so Graph figures include
its own load/save of the workbook (SharePoint's Excel service does that work on its side).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.xlsx import create_workbook
from service.admin.setup import init_folder
from service.app import App
from service.cases import casefile, chronology
from service.cases.register import register_table_spec
from service.config import load_config
from tests.cli.test_e2e_graph import REGISTER, graphify, publish
from tests.connectors.harness_graph import SECRET, SECRET_ENV, SITE_HOST, SITE_PATH
from tests.graph_emulator import GraphEmulator

EVENTS = ("Reported", "Alert sent", "Acknowledgement sent", "Status changed", "Escalated")


def make_register(path: Path, concerns: int, events: int) -> str:
    """A register file with ``concerns`` rows and ``events`` chronology rows; a reference in
    the middle to look up."""
    spec = register_table_spec()
    headers = [c.header for c in spec.columns]
    start = datetime(2025, 9, 1, 9, 0)
    rows = []
    for n in range(1, concerns + 1):
        values: dict[str, Any] = {
            "Reference": f"PRV-2026-{n:05d}",
            "Recorded at": start + timedelta(hours=n),
            "Source": "E-mail",
            "Reported by": f"Staff {n % 97}",
            "Reporter email": f"staff{n % 97}@example.org",
            "Summary": f"Concern number {n}",
            "Account": "The learner said things that worried me. " * 6,
            "Status": "In progress" if n % 3 else "Closed",
            "Source key": f"mail:bench-{n}",
        }
        rows.append(tuple(values.get(h) for h in headers))
    chron = chronology.chronology_table_spec()
    chron_rows = []
    for n in range(events):
        reference = f"PRV-2026-{(n % concerns) + 1:05d}"
        chron_rows.append(
            (
                reference,
                start + timedelta(minutes=n),
                EVENTS[n % len(EVENTS)],
                "Service",
                "To DSP (dsp@example.org), deputy DSP (deputy.dsp@example.org)",
                f"{reference}|bench|{n}",
            )
        )
    specs = [
        type(spec)(sheet=spec.sheet, table=spec.table, columns=spec.columns, rows=tuple(rows)),
        type(chron)(
            sheet=chron.sheet, table=chron.table, columns=chron.columns, rows=tuple(chron_rows)
        ),
    ]
    create_workbook(path, specs)
    return f"PRV-2026-{concerns // 2:05d}"


def timed(runs: int, setup: Callable[[int], Any], op: Callable[[Any], Any]) -> list[float]:
    times = []
    for i in range(runs):
        state = setup(i)
        began = time.perf_counter()
        op(state)
        times.append(time.perf_counter() - began)
    return times


def show(label: str, times: list[float]) -> None:
    print(
        f"  {label}: median {statistics.median(times):.2f} s "
        f"(min {min(times):.2f}, max {max(times):.2f}, {len(times)} runs)"
    )


def measure(label: str, make_app: Callable[[], App], reference: str, runs: int) -> None:
    print(label)
    app = make_app()
    # The first flush pays the one-time table check (ensure_table); not measured.
    chronology.record(app, reference, "bench|warm-up", "Bench event")
    assert chronology.flush(app) is None

    def queue(i: int) -> App:
        chronology.record(app, reference, f"bench|{i}|{time.time_ns()}", "Bench event")
        return app

    def flush(a: App) -> None:
        problem = chronology.flush(a)
        assert problem is None, problem

    show("chronology append (1 event)", timed(runs, queue, flush))
    app.close()

    def fresh(_: int) -> App:
        return make_app()

    def look_up(a: App) -> None:
        out = io.StringIO()
        assert casefile.case_command(a, reference, out) == 0
        a.close()

    show(
        f"case {reference} (fresh App: the case's rows found in the register, then its events)",
        timed(runs, fresh, look_up),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concerns", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.0, help="emulated Graph round trip")
    parser.add_argument("--only", choices=("xlsx", "graph"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "svc"
        init_folder(folder, demo=False, today=date.today())
        register = folder / "workbooks" / "concern-register.xlsx"
        register.unlink()
        began = time.perf_counter()
        reference = make_register(register, args.concerns, args.events)
        print(
            f"register: {args.concerns:,} concerns, {args.events:,} chronology events, "
            f"{register.stat().st_size / 1e6:.1f} MB (made in {time.perf_counter() - began:.0f} s)"
        )
        config = folder / "config.toml"
        if args.only != "graph":
            measure("local xlsx", lambda: App(load_config(config)), reference, args.runs)
        if args.only != "xlsx":
            emu = GraphEmulator(latency=args.latency).start()
            try:
                publish(emu, folder)
                emu.put_file(SITE_HOST, SITE_PATH, REGISTER, register.read_bytes())
                graphify(config, emu)
                os.environ[SECRET_ENV] = SECRET
                label = f"Graph (emulator, {args.latency * 1000:.0f} ms added per request)"
                measure(label, lambda: App(load_config(config)), reference, args.runs)
            finally:
                emu.stop()


if __name__ == "__main__":
    main()
