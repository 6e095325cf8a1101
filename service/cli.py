"""``prevent-service``: a thin command line over the library.

Exit codes (for scripts and monitoring):
  0  done, all well
  1  done, but something needs attention (items pending, a check failed, unhealthy)
  2  usage error (bad arguments)
  3  configuration error (the message names the key)
  4  an unexpected error (run again with --debug for the traceback)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from service import __version__
from service.errors import ConfigError, PreventServiceError

if TYPE_CHECKING:
    from connectors.base import CheckResult
    from service.app import App

EXIT_OK, EXIT_ATTENTION, EXIT_USAGE, EXIT_CONFIG, EXIT_ERROR = 0, 1, 2, 3, 4
DEFAULT_CONFIG = "config.toml"

log = logging.getLogger("prevent_service")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prevent-service",
        description="Concern intake, register, alerts and reminders for the Prevent duty.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    config_help = f"config file (default: $PREVENT_SERVICE_CONFIG or ./{DEFAULT_CONFIG})"
    debug_help = "show tracebacks and debug logs"
    parser.add_argument("--config", metavar="PATH", help=config_help)
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # The global options are taken after the command too (`status --config PATH`); SUPPRESS
    # keeps one given before the command when it is not repeated after it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=config_help)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)

    p = sub.add_parser(
        "init", parents=[common], help="lay out a working folder: config, inbox, outbox, workbooks"
    )
    p.add_argument("dir", type=Path, help="folder to create (must be empty or new)")
    p.add_argument("--demo", action="store_true", help="add invented concerns and a demo plan")

    p = sub.add_parser(
        "check", parents=[common], help="check the config and every capability the service needs"
    )
    p.add_argument("--send-test", action="store_true", help="also send a test e-mail to the admin")

    sub.add_parser(
        "provision",
        parents=[common],
        help="make the configured folders and workbooks (Microsoft 365: SharePoint and the "
        "mailbox's Processed/Quarantine) where missing, never overwriting; then check",
    )

    sub.add_parser("poll", parents=[common], help="run one intake cycle, then exit")
    sub.add_parser(
        "run", parents=[common], help="run the worker: intake, reminders, escalation, digests"
    )
    p = sub.add_parser(
        "status",
        parents=[common],
        help="last cycle, current problems, pending and quarantined items",
    )
    p.add_argument(
        "--quarantine-read",
        metavar="KEY",
        help="record that a person has dealt with a quarantined item (its key, or 'all')",
    )

    p = sub.add_parser(
        "remind", parents=[common], help="run the reminder cycle (as if it were a given day)"
    )
    p.add_argument("--as-of", type=_iso_date, metavar="YYYY-MM-DD", help="the day to run as")
    p.add_argument("--dry-run", action="store_true", help="print what would be sent; send nothing")

    p = sub.add_parser(
        "plan", parents=[common], help="print the coming deadlines and anything not understood"
    )
    p.add_argument("--days", type=int, default=90, help="how far ahead (default 90)")

    p = sub.add_parser(
        "case", parents=[common], help="print one case: its register row and chronology"
    )
    p.add_argument("reference", help="the concern's reference, e.g. PRV-2026-0007")

    p = sub.add_parser(
        "report", parents=[common], help="the board / inspectors report (counts only): xlsx, e-mail"
    )
    p.add_argument(
        "--from",
        dest="start",
        type=_iso_date,
        metavar="YYYY-MM-DD",
        help="first day (default: 1 August of the current academic year)",
    )
    p.add_argument(
        "--to", dest="end", type=_iso_date, metavar="YYYY-MM-DD", help="last day (default: today)"
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="workbook to write (default: <report folder>/prevent-report-<from>-to-<to>.xlsx)",
    )
    p.add_argument(
        "--send", action="store_true", help="also e-mail it to [report] recipients (once)"
    )
    return parser


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.debug)
    if not args.command:
        parser.print_help(out)
        return EXIT_USAGE
    try:
        code = COMMANDS[args.command](args, out)
        out.flush()  # a reader that stopped (| head) shows up here, not at exit
        return code
    except BrokenPipeError:  # the reader (head, less) stopped reading: nothing of ours failed
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ATTENTION
    except ConfigError as exc:
        print(f"prevent-service: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except PreventServiceError as exc:
        if args.debug:
            raise
        print(f"prevent-service: {exc}", file=sys.stderr)
        return EXIT_ATTENTION
    except KeyboardInterrupt:
        return EXIT_ATTENTION
    except sqlite3.OperationalError as exc:  # "database or disk is full", "database is locked"
        if args.debug:
            raise
        print(
            f"prevent-service: the ledger could not be written ({exc}): free disk space under "
            "the state folder, or stop the other process using it; nothing is lost, the next "
            "run resumes where this one stopped",
            file=sys.stderr,
        )
        return EXIT_ATTENTION
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"prevent-service: unexpected {type(exc).__name__}; run again with --debug for details",
            file=sys.stderr,
        )
        return EXIT_ERROR


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # O365 logs bearer tokens at DEBUG; msal and urllib3 are chatty. Keep them quiet always.
    for noisy in ("O365", "msal", "urllib3", "apscheduler.executors.default"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("PREVENT_SERVICE_CONFIG") or DEFAULT_CONFIG)


def _app(args: argparse.Namespace, *, files_must_exist: bool = True) -> App:
    from service.app import App
    from service.config import check_files, load_config

    config = load_config(_config_path(args))
    if files_must_exist:
        check_files(config)
    return App(config)


# -- commands ----------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace, out: TextIO) -> int:
    from service.admin.setup import init_folder

    created = init_folder(args.dir, demo=args.demo, today=date.today())
    print(f"Created {created}.", file=out)
    config = _quote(str(created / "config.toml"))  # a path with spaces pastes as one
    program = _program()
    if args.demo:
        print(f"Next: {program} --config {config} poll", file=out)
    else:
        print(f"Next: fill in {config}, then {program} --config {config} check", file=out)
    return EXIT_OK


def _program() -> str:
    """This command as a person can run it again: the bare name where PATH finds this very
    program, else the path it was started by (``.venv/bin/prevent-service`` after the README's
    set-up, where the venv is not on PATH)."""
    invoked = Path(sys.argv[0])
    if not invoked.name.startswith("prevent-service"):  # python -m service.cli, tests
        return "prevent-service"
    found = shutil.which("prevent-service")
    if found and Path(found).resolve() == invoked.resolve():
        return "prevent-service"
    return _quote(str(invoked))


def _quote(path: str) -> str:
    """A path as the local shell takes it: '…' for POSIX shells, "…" for cmd and PowerShell."""
    return subprocess.list2cmdline([path]) if os.name == "nt" else shlex.quote(path)


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    from service.admin.checks import run_checks

    app = _app(args)
    try:
        results = run_checks(app, send_test=args.send_test)
    finally:
        app.close()
    return EXIT_OK if _print_results(results, out) == 0 else EXIT_ATTENTION


def _print_results(results: Sequence[CheckResult], out: TextIO) -> int:
    """One line per result (``ok``/``FAIL``, name, detail), then the counts; the failures."""
    width = max((len(r.name) for r in results), default=0)
    for result in results:
        mark = "ok  " if result.ok else "FAIL"
        print(f"{mark} {result.name.ljust(width)}  {result.detail}", file=out)
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} ok, {failed} failed", file=out)
    return failed


def cmd_provision(args: argparse.Namespace, out: TextIO) -> int:
    from service.admin.checks import run_checks
    from service.admin.provision import run_provision

    app = _app(args, files_must_exist=False)  # making missing files is the point
    try:
        print("provision:", file=out)
        made = _print_results(run_provision(app), out)
        print("check:", file=out)
        checked = _print_results(run_checks(app), out)
    finally:
        app.close()
    return EXIT_OK if made == 0 and checked == 0 else EXIT_ATTENTION


def cmd_poll(args: argparse.Namespace, out: TextIO) -> int:
    from service.intake.pipeline import poll

    app = _app(args)
    try:
        result = poll(app)
    finally:
        app.close()
    print(f"intake: {result.summary()}", file=out)
    for problem in result.problems:
        print(f"  problem: {problem}", file=out)
    return EXIT_OK if result.ok and result.pending == 0 else EXIT_ATTENTION


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from schedules.jobs import build_scheduler

    app = _app(args)
    stopped = threading.Event()
    scheduler = build_scheduler(lambda: app, app.config)
    failure: list[BaseException] = []

    def stop(signum: int, _frame: object) -> None:
        # Only note it: the scheduler is shut down from this thread between jobs. Shutting it
        # down here, inside a job that the signal interrupted, emptied the job store under
        # APScheduler's feet (IndexError/JobLookupError when it rescheduled that job).
        log.info("stopping on %s", signal.Signals(signum).name)
        stopped.set()

    def work() -> None:
        try:
            scheduler.start()  # blocks until shutdown; jobs run one at a time in this thread
        except BaseException as exc:
            failure.append(exc)
            stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if hasattr(signal, "SIGBREAK"):  # Windows: Ctrl-Break in the console window
        signal.signal(signal.SIGBREAK, stop)
    print(f"prevent-service {__version__}: worker started (Ctrl-C or SIGTERM stops it)", file=out)
    out.flush()
    worker = threading.Thread(target=work, name="scheduler", daemon=True)
    try:
        if not stopped.is_set():  # Ctrl-C before the scheduler started: do not start it
            worker.start()
            while not stopped.wait(0.5):  # a short wait: signal handlers run between waits
                pass
            while worker.is_alive() and not scheduler.running:  # still starting up
                time.sleep(0.05)
            if scheduler.running:
                # Waits for the job store lock that a round of jobs holds: the job running
                # now finishes first.
                scheduler.shutdown(wait=False)
            worker.join()
        if failure:
            raise failure[0]
    finally:
        app.close()
    print("worker stopped", file=out)
    return EXIT_OK


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    from service.admin.status import mark_quarantine_read, status_report

    app = _app(args)
    try:
        if args.quarantine_read:
            marked = mark_quarantine_read(app, args.quarantine_read)
            print(f"{marked} quarantined item(s) marked as read", file=out)
        healthy, lines = status_report(app)
    finally:
        app.close()
    for line in lines:
        print(line, file=out)
    return EXIT_OK if healthy else EXIT_ATTENTION


def cmd_remind(args: argparse.Namespace, out: TextIO) -> int:
    from service.compliance.reminders import remind_command

    app = _app(args)
    try:
        return remind_command(app, args.as_of, args.dry_run, out)
    finally:
        app.close()


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    from service.compliance.reminders import plan_command

    app = _app(args)
    try:
        return plan_command(app, args.days, out)
    finally:
        app.close()


def cmd_case(args: argparse.Namespace, out: TextIO) -> int:
    from service.cases.casefile import case_command

    app = _app(args)
    try:
        return case_command(app, args.reference, out)
    finally:
        app.close()


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from connectors.report_xlsx import write_report_workbook
    from service.reporting.report import report_command

    if args.start and args.end and args.end < args.start:
        print(
            f"prevent-service report: --to {args.end} is before --from {args.start}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    app = _app(args)
    try:
        today = app.local_now().date()
        if args.start and not args.end and args.start > today:
            print(f"prevent-service report: --from {args.start} is after today", file=sys.stderr)
            return EXIT_USAGE
        return report_command(
            app,
            write_report_workbook,
            out,
            start=args.start,
            end=args.end,
            path=args.out,
            send_it=args.send,
        )
    finally:
        app.close()


COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "init": cmd_init,
    "check": cmd_check,
    "provision": cmd_provision,
    "poll": cmd_poll,
    "run": cmd_run,
    "status": cmd_status,
    "remind": cmd_remind,
    "plan": cmd_plan,
    "case": cmd_case,
    "report": cmd_report,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
