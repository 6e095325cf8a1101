"""Kill -9 the real process at each pipeline step, rerun: one row and one alert per item."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from service.intake import pipeline
from tests.cli.helpers import ROOT, alerts_in, outbox_messages, register_rows, run_cli

STEPS = (*pipeline.STEPS, "chronology:appended")

# Runs the real CLI, but SIGKILLs itself right after the given step of the first item.
KILLER = """
import os, signal, sys
from service.intake import pipeline
from service.cli import main
from service.cases import chronology
step = sys.argv[1]
def step_done(self, name, key):
    if name == step:
        os.kill(os.getpid(), signal.SIGKILL)
def chronology_step(name):
    if "chronology:" + name == step:
        os.kill(os.getpid(), signal.SIGKILL)
pipeline.Intake.step_done = step_done
chronology.step_done = chronology_step
sys.exit(main(sys.argv[2:]))
"""


def kill_at_then_poll_twice(step: str, config: str) -> str:
    """A poll SIGKILLed right after ``step``, then two ordinary polls: their logs, joined."""
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, step, "--config", config, "poll"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    logs = killed.stderr
    for _ in range(2):
        result = run_cli("--config", config, "poll")
        assert result.returncode in (0, 1), result.stderr
        logs += result.stderr
    return logs


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_kill_at_each_step_then_rerun(tmp_path: Path, step: str) -> None:
    demo = tmp_path / "demo"
    assert run_cli("init", "--demo", str(demo)).returncode == 0
    config = str(demo / "config.toml")

    logs = kill_at_then_poll_twice(step, config)
    # Each alert was sent once: counted as the pipeline sends, not as the outbox keeps them
    # (the outbox would hide a second send of the same Message-ID; SMTP would not).
    assert logs.count("alert sent for") == 5, logs
    # Parked items wait for their retry time; a third poll after it must finish everything.
    rows = register_rows(demo / "workbooks" / "concern-register.xlsx")
    keys = [r["Source key"] for r in rows]
    assert len(keys) == len(set(keys)) == 5
    alerts = alerts_in(demo / "outbox")
    references = [str(a["Subject"]).rsplit(" ", 1)[-1] for a in alerts]
    assert len(references) == len(set(references)) == 5
    status = run_cli("--config", config, "status")
    assert "open 0" in status.stdout, status.stdout
    # The chronology has each event once: reported, alerted, acknowledged (if one was due).
    events = register_rows(demo / "workbooks" / "concern-register.xlsx", "Chronology")
    event_keys = [e["Service key"] for e in events]
    assert len(event_keys) == len(set(event_keys)), event_keys
    for reference in references:
        mine = [e["Event"] for e in events if e["Reference"] == reference]
        assert mine[:2] == ["Reported", "Alert sent"], (reference, mine)
        assert mine[2:] in ([], ["Acknowledgement sent"]), (reference, mine)


def drop_reply_to_first_ack(demo: Path) -> str:
    """A reporter's reply to their acknowledgement, dropped into the inbox; its case."""
    acks = [m for m in outbox_messages(demo / "outbox") if "has been received" in str(m["Subject"])]
    ack = sorted(acks, key=lambda m: str(m["Subject"]))[0]
    reference = str(ack["Subject"]).rsplit(" ", 1)[-1]
    reply = EmailMessage()
    reply["From"] = str(ack["To"])
    reply["To"] = str(ack["From"])
    reply["Subject"] = f"RE: {ack['Subject']}"
    reply["Message-ID"] = "<reply-to-ack@example.org>"
    reply["In-Reply-To"] = str(ack["Message-ID"])
    reply["Date"] = "Tue, 24 Nov 2026 10:00:00 +0000"
    reply.set_content("One more thing: it happened again this morning.")
    path = demo / "inbox" / "reply.eml"
    path.write_bytes(reply.as_bytes())
    settled = time.time() - 60
    os.utime(path, (settled, settled))
    return reference


@pytest.mark.slow
@pytest.mark.parametrize("step", [s for s in STEPS if s != "reference"])  # it gets none
def test_kill_at_each_step_of_a_follow_up_then_rerun(tmp_path: Path, step: str) -> None:
    demo = tmp_path / "demo"
    assert run_cli("init", "--demo", str(demo)).returncode == 0
    config = str(demo / "config.toml")
    assert run_cli("--config", config, "poll").returncode == 0
    reference = drop_reply_to_first_ack(demo)

    logs = kill_at_then_poll_twice(step, config)

    assert logs.count("follow-up alert sent for") == 1, logs
    register = demo / "workbooks" / "concern-register.xlsx"
    assert len(register_rows(register)) == 5  # no new row, no new reference
    events = register_rows(register, "Chronology")
    keys = [e["Service key"] for e in events]
    assert len(keys) == len(set(keys)), keys
    mine = [e["Event"] for e in events if e["Reference"] == reference]
    assert mine.count("Follow-up received") == 1, mine
    assert mine.count("Alert sent (new information)") == 1, mine
    assert mine.count("Acknowledgement sent") == 2, mine
    added = [m for m in outbox_messages(demo / "outbox") if "added to" in str(m["Subject"])]
    assert len(added) == 1
    assert not (demo / "inbox" / "reply.eml").exists()  # moved to processed/, once done
    status = run_cli("--config", config, "status")
    assert "open 0" in status.stdout, status.stdout
