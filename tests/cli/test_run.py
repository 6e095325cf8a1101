"""The worker: ``prevent-service run`` takes mail as it arrives and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.helpers import ROOT, alerts_in, register_rows, run_cli


def wait_for(condition, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_the_worker_polls_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert run_cli("init", "--demo", str(demo)).returncode == 0
    config = demo / "config.toml"
    config.write_text(config.read_text().replace("poll_seconds = 15", "poll_seconds = 5"))
    worker = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "--config", str(config), "run"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        # The first poll runs at start: the demo's five concerns are alerted.
        assert wait_for(lambda: len(alerts_in(demo / "outbox")) == 5)
        # A message dropped while it runs is picked up by a later poll.
        source = ROOT / "config" / "demo" / "mail" / "01-concern-online-content.eml"
        new = source.read_bytes().replace(b"<demo-0001@example.org>", b"<late@example.org>")
        late = demo / "inbox" / "late.eml"
        late.write_bytes(new)
        os.utime(late, (time.time() - 60, time.time() - 60))
        assert wait_for(lambda: len(alerts_in(demo / "outbox")) == 6, timeout=30)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "worker stopped" in out
    assert len(register_rows(demo / "workbooks" / "concern-register.xlsx")) == 6
    assert "Traceback" not in err


def test_a_stop_that_lands_inside_a_job_waits_for_it_and_exits_cleanly(tmp_path: Path) -> None:
    """SIGINT/SIGTERM right after the first poll lands in the next start-up job (escalation,
    catch-up). The worker must finish that job and stop with exit 0 — shutting the scheduler
    down from inside the interrupted job made APScheduler fail rescheduling it (exit 4)."""
    demo = tmp_path / "demo"
    assert run_cli("init", "--demo", str(demo)).returncode == 0
    config = demo / "config.toml"
    assert run_cli("--config", str(config), "poll").returncode == 0
    for attempt, signum in enumerate([signal.SIGINT, signal.SIGTERM] * 4):
        worker = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "--config", str(config), "run"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout is not None and worker.stderr is not None
            assert "worker started" in worker.stdout.readline()
            for line in worker.stderr:
                if "intake cycle" in line:
                    break
            worker.send_signal(signum)
            out, err = worker.communicate(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
        assert worker.returncode == 0, f"attempt {attempt}: {err}"
        assert "worker stopped" in out
        assert "unexpected" not in err
