"""``report`` end to end on the demo folder: init --demo, poll, then the board report."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook

from service.reporting.report import academic_year_start
from tests.cli.helpers import outbox_messages, run_cli

TODAY = date.today()  # the demo's concerns are recorded today and yesterday


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report") / "demo"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    polled = run_cli("--config", str(folder / "config.toml"), "poll")
    assert "logged=5" in polled.stdout, polled.stdout + polled.stderr
    return folder


def report_mail(folder: Path) -> list[Path]:
    return sorted((folder / "outbox").glob("board-report.*.eml"))


def test_report_writes_the_workbook_with_the_demo_figures(demo: Path) -> None:
    before = report_mail(demo)
    result = run_cli("--config", str(demo / "config.toml"), "report")
    assert result.returncode == 0, result.stderr
    start = academic_year_start(TODAY)
    path = demo / "state" / "reports" / f"prevent-report-{start}-to-{TODAY}.xlsx"
    assert f"Workbook: {path}" in result.stdout
    assert f"Prevent report {start} to {TODAY}" in result.stdout
    assert "concerns: 5 (" in result.stdout
    assert "training: 4 of 6 staff current" in result.stdout
    summary = {r[0]: r[1] for r in load_workbook(path)["Summary"].iter_rows(values_only=True)}
    assert summary["Concerns"] == 5
    assert summary["Action plan items Red"] > 0
    assert report_mail(demo) == before  # nothing sent without --send
    assert "Avery" not in result.stdout + result.stderr  # a demo learner's name


def test_report_send_goes_once(demo: Path, tmp_path: Path) -> None:
    config = str(demo / "config.toml")
    out = tmp_path / "board.xlsx"
    first = run_cli("--config", config, "report", "--send", "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "Sent to 2 recipient(s)." in first.stdout
    assert out.is_file()
    sent = report_mail(demo)
    assert len(sent) == 1
    message = outbox_messages(demo / "outbox")
    board = [m for m in message if str(m["Subject"]).startswith("Prevent report")]
    assert [str(m["To"]) for m in board] == ["executive.director@example.org, dsp@example.org"]
    (attached,) = board[0].iter_attachments()  # the workbook with the charts, as written
    assert attached.get_filename() == "board.xlsx"
    text = board[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "The workbook with the charts, to print or file, is attached (board.xlsx)." in text
    assert attached.get_content() == out.read_bytes()
    charts = load_workbook(io.BytesIO(attached.get_content()))["Concerns by month"]._charts
    assert len(charts) == 1
    stamp = sent[0].stat().st_mtime_ns

    again = run_cli("--config", config, "report", "--send", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "Already sent for this period: not sent again." in again.stdout
    assert report_mail(demo) == sent
    assert sent[0].stat().st_mtime_ns == stamp  # not written again


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--from", "2026-09-01", "--to", "2026-08-31"], "--to 2026-08-31 is before --from"),
        (["--from", "1 September"], "not a date (YYYY-MM-DD): '1 September'"),
        (["--to", "2026-02-30"], "not a date (YYYY-MM-DD): '2026-02-30'"),
        (["--from", "2999-01-01"], "--from 2999-01-01 is after today"),
    ],
)
def test_bad_dates_are_usage_errors(demo: Path, args: list[str], says: str) -> None:
    result = run_cli("--config", str(demo / "config.toml"), "report", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert says in result.stderr
    assert "Workbook:" not in result.stdout


def test_report_send_with_the_mail_server_down_says_run_it_again(tmp_path: Path) -> None:
    """The sender's "nothing was sent; will retry" is true in the worker, not for this command:
    nothing retries it, so it says what to do and exits 1."""
    folder = tmp_path / "demo"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    config = folder / "config.toml"
    text = config.read_text()
    down = 'sender = { backend = "smtp", host = "127.0.0.1", port = 9, security = "none" }'
    config.write_text(text.replace('sender = { backend = "outbox", path = "outbox" }', down))

    result = run_cli("--config", str(config), "report", "--send")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "will retry" not in result.stdout + result.stderr
    assert "Not sent: could not reach the SMTP server 127.0.0.1:9" in result.stdout
    assert "then run this again with --send" in result.stdout
    assert "Workbook: " in result.stdout  # the figures and the file are there all the same
