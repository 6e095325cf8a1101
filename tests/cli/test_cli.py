"""The command line end to end on the local default: init --demo, poll, status, check."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from service import __version__
from service.cli import COMMANDS
from tests.cli.helpers import ROOT, alerts_in, outbox_messages, register_rows, run_cli


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "demo"
    result = run_cli("init", "--demo", str(folder))
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture(scope="module")
def polled(demo: Path) -> Path:
    result = run_cli("--config", str(demo / "config.toml"), "poll")
    assert result.returncode == 0, result.stdout + result.stderr
    return demo


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in COMMANDS:
        result = run_cli(command, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout
        assert f"prevent-service {command}" in readme, command


def test_init_lays_out_the_demo_folder(demo: Path) -> None:
    for path in (
        "config.toml",
        "inbox",
        "outbox",
        "state",
        "workbooks/concern-register.xlsx",
        "workbooks/forms-responses.xlsx",
        "workbooks/compliance.xlsx",
    ):
        assert (demo / path).exists(), path
    assert len(list((demo / "inbox").glob("*.eml"))) >= 3


def test_the_first_poll_logs_alerts_and_acknowledges_everything(polled: Path) -> None:
    rows = register_rows(polled / "workbooks" / "concern-register.xlsx")
    references = [r["Reference"] for r in rows]
    assert len(rows) == 5  # three e-mailed concerns and two form responses
    assert len(set(references)) == 5 and all(
        re.fullmatch(r"PRV-\d{4}-\d{4}", str(r)) for r in references
    )
    alerts = alerts_in(polled / "outbox")
    assert len(alerts) == 5
    assert any(a["Importance"] == "High" for a in alerts)  # the critical ones
    acks = [
        m for m in outbox_messages(polled / "outbox") if "has been received" in str(m["Subject"])
    ]
    assert len(acks) == 4  # the anonymous form response gets none; the auto-reply none
    assert len(list((polled / "inbox" / "processed").glob("*.eml"))) == 4
    assert not list((polled / "inbox").glob("*.eml"))


def test_a_second_poll_does_nothing_new(polled: Path) -> None:
    before = len(list((polled / "outbox").glob("*.eml")))
    result = run_cli("--config", str(polled / "config.toml"), "poll")
    assert result.returncode == 0
    assert "new=0" in result.stdout
    assert len(list((polled / "outbox").glob("*.eml"))) == before


def test_status_reports_a_healthy_service(polled: Path) -> None:
    result = run_cli("--config", str(polled / "config.toml"), "status")
    assert result.returncode == 0, result.stdout
    assert "done 5" in result.stdout and "healthy" in result.stdout


def test_status_on_a_folder_never_run_is_not_healthy(tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    assert run_cli("init", str(folder)).returncode == 0
    result = run_cli("--config", str(folder / "config.toml"), "status")
    assert result.returncode == 1, result.stdout
    assert "last intake cycle: never" in result.stdout and "NOT HEALTHY" in result.stdout


def test_output_piped_into_a_reader_that_stops_is_not_an_unexpected_error(polled: Path) -> None:
    """``prevent-service plan | head``: head exits early; no 'unexpected BrokenPipeError'."""
    with subprocess.Popen(
        [sys.executable, "-m", "service.cli", "--config", str(polled / "config.toml"), "plan"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # the reader is gone before anything is written
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=120) == 1
    assert "unexpected" not in stderr and "Traceback" not in stderr, stderr


def test_global_options_work_after_the_command_too(polled: Path) -> None:
    result = run_cli("status", "--config", str(polled / "config.toml"), "--debug")
    assert result.returncode in (0, 1) and "items: open 0, done 5" in result.stdout, result.stderr
    before = run_cli("--config", str(polled / "config.toml"), "status")
    assert "items: open 0, done 5" in before.stdout, before.stderr


def test_the_m365_example_left_as_it_is_gives_clear_errors(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    text = (ROOT / "config" / "example-m365.toml").read_text()
    config.write_text(text)
    result = run_cli("--config", str(config), "check")
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert "m365.certificate_path: file not found: /etc/prevent-service/app-cert.pem" in (
        result.stderr
    )
    (tmp_path / "app-cert.pem").write_text("placeholder")
    config.write_text(
        text.replace("/etc/prevent-service/app-cert.pem", "app-cert.pem").replace(
            "/var/lib/prevent-service", "state"
        )
    )
    result = run_cli("--config", str(config), "check", env={"PREVENT_CERT_PASSWORD": ""})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert (
        "m365.certificate_password_env: environment variable PREVENT_CERT_PASSWORD is not set"
        in result.stdout
    ), result.stdout


def test_check_fails_on_a_role_the_config_names_but_roles_lacks(tmp_path: Path) -> None:
    folder = tmp_path / "svc"
    assert run_cli("init", str(folder)).returncode == 0
    config = folder / "config.toml"
    text = config.read_text()
    assert 'plan_owner = "Executive Director"' in text
    config.write_text(text.replace('plan_owner = "Executive Director"', 'plan_owner = "Exec Dir"'))
    result = run_cli("--config", str(config), "check")
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"FAIL +compliance\.plan_owner +'Exec Dir' is not in \[roles\]", result.stdout)
    assert "escalate_to_role" not in result.stdout, result.stdout


def test_check_passes_on_the_demo(polled: Path) -> None:
    result = run_cli("--config", str(polled / "config.toml"), "check")
    assert result.returncode == 0, result.stdout
    assert "0 failed" in result.stdout


def test_check_fails_when_the_report_folder_cannot_be_written(demo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "unwritable"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    config = folder / "config.toml"
    blocker = tmp_path / "a-file-not-a-folder"
    blocker.write_text("x")
    with config.open("a", encoding="utf-8") as handle:
        handle.write(f'\n[report]\nfolder = "{blocker / "reports"}"\n')

    result = run_cli("--config", str(config), "check")

    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"FAIL\s+report folder\s+cannot write to .*a-file-not-a-folder", result.stdout)


def test_a_lost_ledger_does_not_alert_or_log_the_demo_again(tmp_path: Path) -> None:
    folder = tmp_path / "moved"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    config = str(folder / "config.toml")
    assert run_cli("--config", config, "poll").returncode == 0
    before = len(alerts_in(folder / "outbox"))
    for ledger in (folder / "state").glob("ledger*"):
        ledger.unlink()  # the state folder lost, or the service moved to a new server

    again = run_cli("--config", config, "poll")

    assert again.returncode == 0, again.stdout + again.stderr
    assert "new=0" in again.stdout
    assert len(alerts_in(folder / "outbox")) == before == 5
    assert len(register_rows(folder / "workbooks" / "concern-register.xlsx")) == 5


def test_logs_hold_no_concern_text_or_names(demo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    result = run_cli("--config", str(folder / "config.toml"), "--debug", "poll")
    logs = result.stdout + result.stderr
    for secret in (
        "Riley",
        "Casey",
        "Taylor",
        "Avery",
        "Drew",
        "extremist",
        "isolated",
        "Concern about a learner",
        "jordan.lee",
    ):
        assert secret not in logs, secret


def test_a_config_error_names_the_key_and_exits_3(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    text = (ROOT / "config" / "example-local.toml").read_text()
    config.write_text(text.replace('alert_detail = "summary"', 'alert_detail = "everything"'))
    result = run_cli("--config", str(config), "poll")
    assert result.returncode == 3
    assert "register.alert_detail" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_config_exits_3(tmp_path: Path) -> None:
    result = run_cli("--config", str(tmp_path / "none.toml"), "status")
    assert result.returncode == 3 and "config file not found" in result.stderr


def test_no_config_in_the_current_folder_says_where_it_looked_and_what_to_do(
    tmp_path: Path,
) -> None:
    """An admin running a command from the wrong folder got 'config file not found:
    config.toml': not where it looked, nor how to point at the right one."""
    env = {"PREVENT_SERVICE_CONFIG": ""}
    result = run_cli("status", cwd=tmp_path, env=env)
    assert result.returncode == 3
    assert f"config file not found: {tmp_path / 'config.toml'} " in result.stderr
    assert "--config PATH" in result.stderr and "PREVENT_SERVICE_CONFIG" in result.stderr
    assert "prevent-service init DIR" in result.stderr


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    result = run_cli("init", str(tmp_path / "x"))
    assert result.returncode == 1 and "not empty" in result.stderr
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_init_into_a_path_with_spaces_prints_a_next_step_that_pastes(tmp_path: Path) -> None:
    folder = tmp_path / "Prevent service" / "demo"
    result = run_cli("init", "--demo", str(folder))
    assert result.returncode == 0, result.stderr
    assert f"--config '{folder / 'config.toml'}' poll" in result.stdout, result.stdout


def test_init_without_demo_gives_empty_workbooks_that_poll_cleanly(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    assert run_cli("init", str(folder)).returncode == 0
    result = run_cli("--config", str(folder / "config.toml"), "poll")
    assert result.returncode == 0, result.stdout + result.stderr
    assert register_rows(folder / "workbooks" / "concern-register.xlsx") == []


def test_a_missing_register_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    folder = tmp_path / "svc"
    assert run_cli("init", str(folder)).returncode == 0
    (folder / "workbooks" / "concern-register.xlsx").unlink()
    result = run_cli("--config", str(folder / "config.toml"), "poll")
    assert result.returncode == 3
    assert result.stderr.startswith(
        "prevent-service: config error: register.workbook.path: file not found"
    )


def test_a_damaged_ledger_is_named_with_what_to_do(tmp_path: Path) -> None:
    folder = tmp_path / "svc"
    assert run_cli("init", str(folder)).returncode == 0
    (folder / "state" / "ledger.sqlite3").write_bytes(b"garbage" * 100)
    result = run_cli("--config", str(folder / "config.toml"), "poll")
    assert result.returncode == 1
    assert "ledger.sqlite3" in result.stderr and "move it aside" in result.stderr


def test_every_config_problem_is_listed(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    text = (ROOT / "config" / "example-local.toml").read_text()
    text = text.replace('alert_detail = "summary"', 'alert_detail = "x"')
    config.write_text(text.replace("poll_seconds = 5 ", "poll_seconds = 1 "))
    result = run_cli("--config", str(config), "check")
    assert result.returncode == 3
    assert "register.alert_detail" in result.stderr and "schedule.poll_seconds" in result.stderr


def test_two_cycles_at_once_never_send_an_alert_twice(tmp_path: Path) -> None:
    """A poll while the worker runs (or two polls) must not double-send: the lock says no."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "svc"
    assert run_cli("init", str(folder)).returncode == 0
    source = (ROOT / "config" / "demo" / "mail" / "02-concern-isolation.eml").read_bytes()
    for n in range(30):
        path = folder / "inbox" / f"m{n}.eml"
        path.write_bytes(source.replace(b"<demo-0002@example.org>", f"<c{n}@example.org>".encode()))
        os.utime(path, (1_700_000_000, 1_700_000_000))
    command = [sys.executable, "-m", "service.cli", "--config", str(folder / "config.toml"), "poll"]
    runs = [
        subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    logs = "".join(p.communicate(timeout=120)[1] for p in runs)
    assert logs.count("alert sent for") == 30
    assert len(alerts_in(folder / "outbox")) == 30


def test_a_full_disk_under_the_ledger_is_a_clear_message_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    from service.cli import main
    from service.intake import pipeline

    folder = tmp_path / "full"
    assert run_cli("init", "--demo", str(folder)).returncode == 0

    def disk_full(app: object) -> object:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(pipeline, "poll", disk_full)
    code = main(["--config", str(folder / "config.toml"), "poll"])

    err = capsys.readouterr().err
    assert code == 1
    assert "the ledger could not be written (database or disk is full)" in err
    assert "free disk space" in err and "unexpected" not in err


@pytest.mark.usefixtures("open_umask")
def test_what_the_demo_creates_is_private(tmp_path: Path) -> None:
    """Under the usual umask (0644 files): nothing with concern data is readable by others."""
    folder = tmp_path / "private"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    for command in ("poll", "check", "report"):
        result = run_cli("--config", str(folder / "config.toml"), command)
        assert result.returncode == 0, result.stdout + result.stderr
    open_to_others = [
        str(p.relative_to(folder))
        for p in [folder, *folder.rglob("*")]
        if p.stat().st_mode & 0o077
        and p.name not in {"config.toml", "intake.lock"}  # no personal data in either
        and not (p.suffix == ".eml" and "inbox" in p.parts)  # dropped mail keeps its mode
    ]
    assert open_to_others == []
