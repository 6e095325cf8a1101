"""Intake over Microsoft Graph against the local emulator with an injected round-trip delay.

Prints: Graph requests per idle poll, requests per concern (mailbox + register + alert +
acknowledgement + move), the time from a message landing to its alert at the default poll
interval (expected wait + measured processing), and a burst of 50 messages.

    PYTHONPATH=. python bench/bench_graph.py [--latency 0.1] [--burst 50]

The emulator, the real msal and O365 and the real pipeline run in this process; only the
network delay is simulated (``latency`` seconds added to every request).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections import Counter
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from service.admin.setup import init_folder
from service.app import App
from service.config import load_config
from service.intake import pipeline
from service.intake.pipeline import poll
from tests.cli.test_e2e_graph import graphify, publish
from tests.connectors.harness_graph import (
    MAILBOX,
    SECRET,
    SECRET_ENV,
)
from tests.graph_emulator import GraphEmulator

BODY = (
    "During the session the learner said things that worried me about a group they have "
    "joined online. They have withdrawn from their usual friends. " * 4
)


def message(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Staff {n} <staff{n}@example.org>"
    msg["To"] = MAILBOX
    msg["Subject"] = f"Concern number {n}"
    msg["Message-ID"] = f"<bench-graph-{n}-{time.monotonic_ns()}@example.org>"
    msg.set_content(BODY)
    return msg.as_bytes()


class Steps:
    """Times of pipeline steps (the pipeline reports each step through ``step_done``)."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        original = pipeline.Intake.step_done

        def step_done(intake: Any, step: str, source_key: str) -> None:
            self.times.setdefault(step, []).append(time.perf_counter())
            original(intake, step, source_key)

        pipeline.Intake.step_done = step_done  # type: ignore[method-assign]

    def clear(self) -> None:
        self.times.clear()


def setup(emu: GraphEmulator, folder: Path) -> App:
    init_folder(folder, demo=False, today=date.today())
    publish(emu, folder)
    graphify(folder / "config.toml", emu)
    os.environ[SECRET_ENV] = SECRET
    return App(load_config(folder / "config.toml"))


def requests_since(emu: GraphEmulator, start: int) -> list[Any]:
    return list(emu.requests[start:])


def kinds(recorded: list[Any]) -> str:
    def kind(r: Any) -> str:
        path = r.path
        if "/oauth2/" in path or "openid" in path:
            return "token"
        if "/workbook/" in path:
            return "workbook:" + path.rsplit("/", 1)[-1].split("(")[0]
        if "/drive/" in path or path.startswith("/v1.0/sites"):
            return "file"
        return "mail:" + path.rsplit("/", 1)[-1][:12]

    counts = Counter(kind(r) for r in recorded)
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added per request")
    parser.add_argument("--burst", type=int, default=50)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    steps = Steps()

    emu = GraphEmulator(latency=args.latency).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            app = setup(emu, Path(tmp) / "svc")
            poll_seconds = app.config.schedule.poll_seconds
            poll(app)  # start-up: token, site and file lookups, first delta round

            # -- idle poll
            start = len(emu.requests)
            began = time.perf_counter()
            poll(app)
            idle_time = time.perf_counter() - began
            idle = requests_since(emu, start)
            print(f"latency per request: {args.latency * 1000:.0f} ms (emulated)")
            print(f"idle poll: {len(idle)} requests, {idle_time:.2f} s  [{kinds(idle)}]")

            # -- one concern (after a first one that pays the one-time costs: the sender's
            #    and the register's tokens and the register file lookup)
            emu.deliver(MAILBOX, message(-1))
            start = len(emu.requests)
            poll(app)
            first = requests_since(emu, start)
            print(f"first concern after start-up: {len(first)} requests  [{kinds(first)}]")
            emu.deliver(MAILBOX, message(0))
            steps.clear()
            start = len(emu.requests)
            began = time.perf_counter()
            result = poll(app)
            one_time = time.perf_counter() - began
            one = requests_since(emu, start)
            alerted = steps.times.get("alerted", [began])[0] - began
            extra = len(one) - len(idle)
            print(
                f"poll with 1 concern (steady state): {len(one)} requests ({extra} more than "
                f"idle), {one_time:.2f} s; alert sent {alerted:.2f} s into the poll  "
                f"[{kinds(one)}]"
            )
            print(f"  result: {result.summary()}")
            expected = poll_seconds / 2 + alerted
            worst = poll_seconds + alerted
            print(
                f"message landing -> alert at poll_seconds={poll_seconds}: expected "
                f"{expected:.1f} s (average wait {poll_seconds / 2:.1f} s + {alerted:.2f} s), "
                f"worst {worst:.1f} s"
            )

            # -- a burst
            for n in range(1, args.burst + 1):
                emu.deliver(MAILBOX, message(n))
            steps.clear()
            start = len(emu.requests)
            began = time.perf_counter()
            polls = 0
            while polls < 5:
                polls += 1
                result = poll(app)
                if result.pending == 0:
                    break
            burst_time = time.perf_counter() - began
            burst = requests_since(emu, start)
            alerts = steps.times.get("alerted", [])
            last_alert = (alerts[-1] - began) if alerts else float("nan")
            print(
                f"burst of {args.burst}: {polls} poll(s), {burst_time:.1f} s, {len(burst)} "
                f"requests ({len(burst) / args.burst:.1f} per concern); last alert at "
                f"{last_alert:.1f} s  [{kinds(burst)}]"
            )
            print(f"  result: {result.summary()}")
            app.close()
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
