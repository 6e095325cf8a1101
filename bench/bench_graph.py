"""Graph intake against the local emulator with an injected round-trip delay, side by side with a
naive client on the same emulator in the same run.

    PYTHONPATH=. .venv/bin/python bench/bench_graph.py [--latency 0.1] [--runs 5] [--burst 20]

"ours" is the service as it is. "naive" is the same code with every saving switched off: one
request per step (no JSON batching, nothing riding along), no caches (a token per backend, site
and file looked up by path in each process, the Forms table read in full every cycle), a
workbook session per operation. "of which mailbox" counts the requests to the mailbox, which
Outlook's per-mailbox limit counts; the rest go to SharePoint/Excel. Each
figure is the median of ``--runs`` runs; the ratio is naive / ours (higher is better for ours).

Counted from the emulator's own request log: "round trips" are HTTP requests (a ``$batch`` is
one); "Graph-counted" also counts each request inside a batch, as Graph's throttling does.
The emulator, the real msal and O365 and the real pipeline run in this process; only the
network delay is simulated (``latency`` seconds added to every HTTP request).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from unittest import mock

from connectors import graph_auth, graph_batch
from connectors.graph_workbook import GraphWorkbook
from service.admin.setup import init_folder
from service.app import App
from service.config import load_config
from service.intake import pipeline
from service.intake.pipeline import poll
from tests.cli.test_e2e_graph import graphify, publish
from tests.connectors.harness_graph import MAILBOX, SECRET, SECRET_ENV
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


# ---------------------------------------------------------------------------- the naive client


def _sequential(http: Any, subs: Any) -> list[Any]:
    """One plain request per batched request (the client's own lone-request path)."""
    return [graph_batch._plain(http, sub) for sub in subs]


def _full_read(self: GraphWorkbook) -> str:
    return ""  # no cTag: the table is read in full every time, and nothing rides along


_original_from_config = GraphWorkbook.from_config.__func__  # type: ignore[attr-defined]


def _no_id_cache(cls: type, section: Any, config: Any, ledger: Any = None) -> GraphWorkbook:
    return _original_from_config(cls, section, config, None)  # type: ignore[no-any-return]


@contextmanager
def naive() -> Iterator[None]:
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(graph_batch, "run", _sequential))
        stack.enter_context(
            mock.patch.object(graph_auth, "shared_sign_in", lambda m365: graph_auth.SharedSignIn())
        )
        stack.enter_context(mock.patch.object(GraphWorkbook, "content_tag", _full_read))
        stack.enter_context(
            mock.patch.object(GraphWorkbook, "from_config", classmethod(_no_id_cache))
        )
        # a session per operation, each reading its header row: no cycle-wide session
        stack.enter_context(mock.patch.object(GraphWorkbook, "begin_cycle", lambda self: None))
        yield


@contextmanager
def ours() -> Iterator[None]:
    yield


MODES: dict[str, Callable[[], Any]] = {"ours": ours, "naive": naive}

# ---------------------------------------------------------------------------- measuring


class Alerts:
    """When each alert was recorded (the pipeline reports each step through ``step_done``)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        original = pipeline.Intake.step_done

        def step_done(intake: Any, step: str, source_key: str) -> None:
            if step == "alerted":
                self.times.append(time.perf_counter())
            original(intake, step, source_key)

        pipeline.Intake.step_done = step_done  # type: ignore[method-assign]


def is_token(r: Any) -> bool:
    return "/oauth2/" in r.path or "openid-configuration" in r.path


class Tenant:
    """A fresh emulator tenant with the service's folder set up against it."""

    def __init__(self, emu: GraphEmulator, latency: float) -> None:
        emu.reset()
        self.emu = emu
        self.tmp = tempfile.TemporaryDirectory()
        self.folder = Path(self.tmp.name) / "svc"
        init_folder(self.folder, demo=True, today=date.today())
        publish(emu, self.folder)
        for eml in (self.folder / "inbox").glob("*.eml"):
            eml.unlink()
        graphify(self.folder / "config.toml", emu)
        os.environ[SECRET_ENV] = SECRET
        emu.latency = latency

    def app(self) -> App:
        return App(load_config(self.folder / "config.toml"))

    def mark(self) -> int:
        return len(self.emu.requests)

    def since(self, mark: int) -> tuple[int, int, int]:
        """(round trips to Graph, Graph-counted requests, token requests) since ``mark``."""
        recorded = self.emu.requests[mark:]
        tokens = sum(1 for r in recorded if is_token(r))
        trips = sum(1 for r in recorded if r.batch is None and not is_token(r))
        counted = sum(1 for r in recorded if not is_token(r) and not r.path.endswith("/$batch"))
        return trips, counted, tokens

    def mailbox_counted(self, mark: int) -> int:
        """Requests to the mailbox since ``mark``: what Outlook's per-mailbox limit (10,000
        per 10 minutes) counts; the rest are SharePoint/Excel requests, limited apart."""
        return sum(1 for r in self.emu.requests[mark:] if "/users/" in r.path)

    def close(self) -> None:
        self.tmp.cleanup()


def one_run(emu: GraphEmulator, latency: float, burst: int, alerts: Alerts) -> dict[str, float]:
    tenant = Tenant(emu, latency)
    out: dict[str, float] = {}
    try:
        app = tenant.app()
        poll(app)  # start-up: the demo's form responses, ids, delta link
        poll(app)
        poll(app)  # warm: what rides along is known

        mark = tenant.mark()
        poll(app)
        out["idle round trips"], out["idle Graph-counted"], _ = tenant.since(mark)
        idle_mailbox = tenant.mailbox_counted(mark)

        app.close()
        fresh = tenant.app()  # a new process: nothing in memory, the ledger as left
        mark = tenant.mark()
        poll(fresh)
        trips, _counted, tokens = tenant.since(mark)
        out["fresh process: sign-in (discovery+token)"] = tokens
        out["fresh process: Graph round trips"] = trips
        app = fresh

        per_trips, per_counted, per_mailbox, alert_delay = [], [], [], []
        for n in range(3):  # steady state: one concern per poll
            emu.deliver(MAILBOX, message(n))
            alerts.times.clear()
            mark = tenant.mark()
            began = time.perf_counter()
            poll(app)
            trips, counted, _ = tenant.since(mark)
            per_trips.append(trips - out["idle round trips"])
            per_counted.append(counted - out["idle Graph-counted"])
            per_mailbox.append(tenant.mailbox_counted(mark) - idle_mailbox)
            alert_delay.append(alerts.times[0] - began if alerts.times else float("nan"))
        out["per concern round trips"] = statistics.median(per_trips)
        out["per concern Graph-counted"] = statistics.median(per_counted)
        out["  of which mailbox (Outlook limit)"] = statistics.median(per_mailbox)
        out["alert delay in a poll (s)"] = statistics.median(alert_delay)

        for n in range(burst):
            emu.deliver(MAILBOX, message(100 + n))
        alerts.times.clear()
        mark = tenant.mark()
        began = time.perf_counter()
        poll(app)
        ended = time.perf_counter()
        trips, counted, _ = tenant.since(mark)
        times = sorted(t - began for t in alerts.times)
        out[f"burst {burst}: first alert (s)"] = times[0] if times else float("nan")
        out[f"burst {burst}: last alert (s)"] = times[-1] if len(times) >= burst else float("nan")
        out[f"burst {burst}: whole poll (s)"] = ended - began
        out[f"burst {burst}: round trips"] = trips
        app.close()
    finally:
        tenant.close()
    return out


def p95_arrival_to_alert(poll_seconds: float, alert_delay: float, seed: int = 1) -> float:
    """Mail lands at a uniformly random moment of the poll interval, waits for the next poll,
    then takes the measured alert delay: the 95th percentile over 10,000 arrivals."""
    rng = random.Random(seed)
    samples = sorted(rng.uniform(0, poll_seconds) + alert_delay for _ in range(10_000))
    return samples[int(0.95 * len(samples))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added per request")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    alerts = Alerts()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in MODES}
    emu = GraphEmulator().start()
    try:
        for _ in range(args.runs):
            for name, mode in MODES.items():  # interleaved: drift in the machine hits both
                with mode():
                    results[name].append(one_run(emu, args.latency, args.burst, alerts))
    finally:
        emu.stop()

    default_poll = float(load_config_default_poll())
    print(
        f"Graph bench: {args.latency * 1000:.0f} ms per round trip (emulated), medians of "
        f"{args.runs} runs, burst of {args.burst}"
    )
    print(f"{'figure':<42} {'ours':>10} {'naive':>10} {'naive/ours':>11}")
    keys = list(results["ours"][0])
    medians = {
        name: {k: statistics.median(r[k] for r in runs) for k in keys}
        for name, runs in results.items()
    }
    for key in keys:
        a, b = medians["ours"][key], medians["naive"][key]
        ratio = f"{b / a:.1f}x" if a else ("n/a" if not b else "inf")
        print(f"{key:<42} {a:>10.2f} {b:>10.2f} {ratio:>11}")
    delay_ours = medians["ours"]["alert delay in a poll (s)"]
    delay_naive = medians["naive"]["alert delay in a poll (s)"]
    ours_p95 = p95_arrival_to_alert(default_poll, delay_ours)
    print(
        f"{'arrival -> alert p95 (s)':<42} {ours_p95:>10.2f} "
        f"{p95_arrival_to_alert(15.0, delay_naive):>10.2f} "
        f"{p95_arrival_to_alert(15.0, delay_naive) / ours_p95:>10.1f}x"
    )
    naive_at_default = p95_arrival_to_alert(default_poll, delay_naive)
    print(
        f"  (ours at poll_seconds={default_poll:.0f}, the default; naive at 15, the old default; "
        f"naive at {default_poll:.0f} s would be {naive_at_default:.2f})"
    )


def load_config_default_poll() -> int:
    from service.config import Schedule

    return int(Schedule().poll_seconds)


if __name__ == "__main__":
    main()
