"""Does the worker's memory stay flat? Runs the intake cycle in-process on the memory
backends and prints the process's resident set size (RSS) at the start, middle and end of:

- 10,000 idle cycles (nothing new in the mailbox), then
- 10,000 concerns (delivered ``--per-cycle`` at a time, each alerted, logged, acknowledged).

The memory backends stand in for Microsoft 365: what they keep is the tenant's side, so the
bench empties the sender's "sent" list and the mailbox's "processed" folder after each cycle
(a real worker holds neither). The register (a memory table) and the ledger (SQLite in a temp
folder) keep their rows, as on a real deployment; their growth is data, printed beside RSS.

    PYTHONPATH=. python bench/bench_rss.py [--idle 10000] [--concerns 10000] [--per-cycle 10]
"""

from __future__ import annotations

import argparse
import gc
import logging
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.memory import MemoryMailbox, MemorySender, MemoryWorkbook
from service.app import App
from service.cases.register import register_table_spec
from service.config import parse_config
from service.intake.pipeline import poll

BODIES = (
    "During the session the learner said things that worried me about a group they have "
    "joined online. They have withdrawn from their usual friends. ",
    "He has been accessing extremist websites and sharing posts in a closed group chat. ",
    "She missed two sessions this week and spoke about feeling isolated at home. ",
)


def rss_mb() -> float:
    """Current RSS from /proc (Linux); else the peak from getrusage."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 1e6
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def message(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Staff {n % 97} <staff{n % 97}@example.org>"
    msg["To"] = "safeguarding@example.org"
    msg["Subject"] = f"Concern about a learner ({n})"
    msg["Message-ID"] = f"<rss-{n}@example.org>"
    msg.set_content(BODIES[n % len(BODIES)] * 4)
    return msg.as_bytes()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 9, 7, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def make_app(folder: Path, clock: Clock) -> tuple[App, MemoryMailbox, MemorySender, MemoryWorkbook]:
    config = parse_config(
        {
            "organisation": {"name": "Example Training Ltd", "reference_prefix": "PRV"},
            "people": {
                "dsp": {"name": "Dana Example", "email": "dsp@example.org"},
                "admin_email": "admin@example.org",
            },
            "intake": {"address": "safeguarding@example.org", "mailbox": {"backend": "memory"}},
            "register": {"workbook": {"backend": "memory"}, "table": "Concerns"},
            "sending": {"sender": {"backend": "memory"}},
            "state": {"path": str(folder / "state")},
        }
    )
    mailbox, sender, register = MemoryMailbox(), MemorySender(), MemoryWorkbook()
    spec = register_table_spec()
    register.add_table(spec.table, [c.header for c in spec.columns], [])
    app = App(config, now=clock, mailbox=mailbox, sender=sender, workbooks={"register": register})
    return app, mailbox, sender, register


def report(label: str, started: float, extra: str = "") -> None:
    gc.collect()
    print(f"  {label:<28} RSS {rss_mb():7.1f} MB  ({time.perf_counter() - started:6.1f} s){extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--concerns", type=int, default=10_000)
    parser.add_argument("--per-cycle", type=int, default=10)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        clock = Clock()
        app, mailbox, sender, register = make_app(Path(tmp), clock)
        started = time.perf_counter()
        print(f"worker in-process on memory backends (Python {sys.version.split()[0]})")
        report("start", started)
        for n in range(args.idle):
            poll(app)
            clock.now += timedelta(seconds=5)
            if n + 1 in (args.idle // 2, args.idle):
                report(f"idle cycle {n + 1:,}", started)
        done = 0
        cycles = 0
        while done < args.concerns:
            batch = min(args.per_cycle, args.concerns - done)
            for k in range(batch):
                mailbox.deliver(message(done + k), received_at=clock.now)
            result = poll(app)
            assert result.logged == batch, result.summary()
            done += batch
            cycles += 1
            sender.sent.clear()  # the tenant's Sent Items, not the worker's memory
            mailbox.processed.clear()
            mailbox._yielded.clear()  # (the memory mailbox's cursor: ids already moved)
            clock.now += timedelta(seconds=5)
            half = args.concerns // 2
            if done - batch < half <= done or done == args.concerns:
                rows = len(register.read_table("Concerns").rows)
                report(f"concern {done:,}", started, f"  register rows {rows:,}")
        app.close()


if __name__ == "__main__":
    main()
