"""`status` says what is wrong, since when, how often and what to do; the worker's log says why."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from tests.cli.helpers import run_cli

SECRET_VAR = "PREVENT_TEST_IMAP_PASSWORD"


def imap_demo(tmp_path: Path) -> Path:
    folder = tmp_path / "svc"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    config = folder / "config.toml"
    text, n = re.subn(
        r'mailbox = \{ backend = "folder"[^}]*\}',
        'mailbox = { backend = "imap", host = "127.0.0.1", port = 9, '
        f'username = "safeguarding@example.org", password_env = "{SECRET_VAR}" }}',
        config.read_text(),
    )
    assert n == 1
    config.write_text(text)
    return config


def test_an_unset_password_variable_is_named_in_the_log_and_in_status(tmp_path: Path) -> None:
    config = imap_demo(tmp_path)
    env = {SECRET_VAR: ""}
    polls = [run_cli("--config", str(config), "poll", env=env) for _ in range(3)]

    for result in polls:
        # Exit 1 (attention), not a config error that stops the worker's cycle short.
        assert result.returncode == 1, result.stdout + result.stderr
        assert re.search(
            rf"intake cycle with problems .*problem: ConfigError: intake\.mailbox\.password_env: "
            rf"environment variable {SECRET_VAR} is not set",
            result.stderr,
        ), result.stderr

    status = run_cli("--config", str(config), "status", env=env)
    assert status.returncode == 1
    out = status.stdout
    assert "NOT HEALTHY" in out
    assert f"! ConfigError: intake.mailbox.password_env: environment variable {SECRET_VAR}" in out
    assert re.search(r"since \d\d/\d\d/\d{4} \d\d:\d\d \(\d+s ago\), 3 cycle\(s\) in a row", out)
    assert f"what to do: set {SECRET_VAR} in the worker's environment" in out
    assert "see the problems below" in out


def test_a_problem_that_goes_away_is_no_longer_listed(tmp_path: Path) -> None:
    config = imap_demo(tmp_path)
    run_cli("--config", str(config), "poll", env={SECRET_VAR: ""})
    text = config.read_text()
    config.write_text(
        re.sub(
            r'mailbox = \{ backend = "imap"[^}]*\}',
            'mailbox = { backend = "folder", path = "inbox" }',
            text,
        )
    )
    assert run_cli("--config", str(config), "poll").returncode == 0
    status = run_cli("--config", str(config), "status")
    assert "problems in the last intake cycle" not in status.stdout, status.stdout
    assert status.returncode == 0, status.stdout


def test_status_is_unhealthy_while_a_quarantined_item_waits_for_a_person(tmp_path: Path) -> None:
    folder = tmp_path / "svc"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    config = str(folder / "config.toml")
    broken = folder / "inbox" / "broken.eml"
    broken.write_bytes(b"\x00\x01\x02 not mail at all\r\n")
    settled = time.time() - 60
    os.utime(broken, (settled, settled))
    assert run_cli("--config", config, "poll").returncode == 0

    status = run_cli("--config", config, "status")
    assert status.returncode == 1, status.stdout
    assert "quarantined (1) — a person must read these" in status.stdout
    (key,) = re.findall(r"(?m)^  ! (\S+) \(", status.stdout)
    assert "--quarantine-read KEY" in status.stdout

    wrong = run_cli("--config", config, "status", "--quarantine-read", "mail:nothing")
    assert wrong.returncode == 1 and "no quarantined item 'mail:nothing'" in wrong.stderr

    read = run_cli("--config", config, "status", "--quarantine-read", key)
    assert "1 quarantined item(s) marked as read" in read.stdout
    assert read.returncode == 0, read.stdout
    assert "healthy" in read.stdout.splitlines()[-1] and "a person must read" not in read.stdout


def test_one_outage_is_one_problem_naming_the_items_it_holds_back(tmp_path: Path) -> None:
    folder = tmp_path / "svc"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    config = folder / "config.toml"
    text, n = re.subn(
        r'sender = \{ backend = "outbox"[^}]*\}',
        'sender = { backend = "smtp", host = "127.0.0.1", port = 9, security = "none" }',
        config.read_text(),
    )
    assert n == 1
    config.write_text(text)
    assert run_cli("--config", str(config), "poll").returncode == 1

    out = run_cli("--config", str(config), "status").stdout
    assert "problems in the last intake cycle (1):" in out, out
    assert re.search(r"! alert not sent: .*\[\d+ item\(s\): PRV-\d{4}-0001, ", out), out
    assert "what to do: the DSP has not been alerted" in out
    assert out.count("last error: as in the problems above") >= 2, out
    # Each held-back item: what is done so far and when it is tried again, in the same local
    # day/month/year form as "since" above (it was the ledger's UTC ISO stamp).
    assert re.search(
        r"PRV-\d{4}-0001: done so far: logged; attempts 1; "
        r"next try \d\d/\d\d/\d{4} \d\d:\d\d \(in \d+s\)",
        out,
    ), out
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:", out), out
