"""``remind`` and ``plan`` end to end on the demo folder (init --demo, real xlsx, outbox)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from service.compliance.duedates import next_working_day
from tests.cli.helpers import outbox_messages, run_cli

TODAY = date.today()  # init --demo lays the plan out for today
WORKDAY = next_working_day(TODAY)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("remind") / "demo"
    result = run_cli("init", "--demo", str(folder))
    assert result.returncode == 0, result.stderr
    return folder


def reminder_digests(folder: Path) -> list[tuple[str, str]]:
    return sorted(
        (str(m["To"]), str(m["Subject"]))
        for m in outbox_messages(folder / "outbox")
        if str(m["Subject"]).startswith("Prevent compliance reminders")
    )


def test_plan_shows_deadlines_and_nothing_not_understood(demo: Path) -> None:
    result = run_cli("--config", str(demo / "config.toml"), "plan")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"{TODAY.isoformat()}  today" in out
    assert f"{(TODAY + timedelta(days=7)).isoformat()}  in 7d" in out
    assert "2022-01-04  overdue" in out  # the Prevent policy, last reviewed 4 January 2021
    assert "Every cell was understood." in out
    assert reminder_digests(demo) == []


def test_dry_run_then_real_run_send_exactly_the_planned_digests_once(demo: Path) -> None:
    config = str(demo / "config.toml")
    dry = run_cli("--config", config, "remind", "--as-of", WORKDAY.isoformat(), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].split() == ["recipient", "item", "due", "why"]
    planned = {line.split()[0] for line in lines[2:-1]}
    entries = len(lines) - 3
    assert "executive.director@example.org" in planned
    assert "casey.brown@example.org" in planned  # overdue training
    assert f"would send {len(planned)} digest(s) with {entries} entries" in lines[-1]
    assert reminder_digests(demo) == []  # the dry run sent nothing

    real = run_cli("--config", config, "remind", "--as-of", WORKDAY.isoformat())
    assert real.returncode == 0, real.stderr
    sent = reminder_digests(demo)
    assert sorted(to for to, _ in sent) == sorted(planned)  # one digest per recipient
    assert f"sent {len(planned)} digest(s) with {entries} entries" in real.stdout

    again = run_cli("--config", config, "remind", "--as-of", WORKDAY.isoformat())
    assert again.returncode == 0, again.stderr
    assert "sent 0 digest(s)" in again.stdout
    assert reminder_digests(demo) == sent

    # The real run wrote the day into "Last reminded" and left people's formulas formulas.
    from openpyxl import load_workbook

    book = load_workbook(demo / "workbooks" / "compliance.xlsx")
    plan = book["Action plan"]
    assert plan["H1"].value == "Last reminded"
    marked = [plan.cell(r, 8).value for r in range(2, plan.max_row + 1)]
    assert any(v is not None and v.date() == WORKDAY for v in marked)
    assert book["Policies"]["E2"].data_type == "f"
    assert book["Training"]["H2"].data_type == "f"

    # With no workbook_link (the local default), a plan owner's digest says where the file is.
    workbook = str(demo / "workbooks" / "compliance.xlsx")
    [plan_digest] = [
        m
        for m in outbox_messages(demo / "outbox")
        if str(m["To"]) == "executive.director@example.org"
    ]
    for kind in ("plain", "html"):
        body = plan_digest.get_body((kind,)).get_content()  # type: ignore[union-attr]
        assert f"the compliance workbook ({workbook}; ask " in body
    # No course_links in the demo: a training reminder still says whom to ask for the course.
    [training] = [
        m for m in outbox_messages(demo / "outbox") if str(m["To"]) == "jordan.lee@example.org"
    ]
    for kind in ("plain", "html"):
        body = training.get_body((kind,)).get_content()  # type: ignore[union-attr]
        assert "do the course (ask executive.director@example.org where to take it" in body
    for digest in outbox_messages(demo / "outbox"):
        text = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "\n\n\n" not in text.replace("\r\n", "\n"), text  # one blank line, not two


def test_remind_on_a_weekend_sends_nothing(demo: Path) -> None:
    saturday = TODAY + timedelta(days=(5 - TODAY.weekday()) % 7)
    before = reminder_digests(demo)
    result = run_cli(
        "--config", str(demo / "config.toml"), "remind", "--as-of", saturday.isoformat()
    )
    assert result.returncode == 0, result.stderr
    assert "not a working day" in result.stdout
    assert reminder_digests(demo) == before


def test_plan_reports_a_cell_it_cannot_read(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    folder = tmp_path / "demo"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    path = folder / "workbooks" / "compliance.xlsx"
    workbook = load_workbook(path)
    workbook["Action plan"]["D2"] = "sometime soon?"
    workbook["Action plan"]["C4"] = "Head of Quality"  # row 3 is Complete: silent
    workbook.save(path)
    result = run_cli("--config", str(folder / "config.toml"), "plan")
    assert result.returncode == 1  # something needs attention
    assert "Not understood (2)" in result.stdout
    assert "Action plan  2    Due     sometime soon?" in result.stdout
    assert "unknown role 'Head of Quality'" in result.stdout


@pytest.mark.parametrize("command", ["remind", "plan"])
def test_without_a_compliance_section_remind_and_plan_both_say_so_and_exit_1(
    demo: Path, tmp_path: Path, command: str
) -> None:
    text = (demo / "config.toml").read_text("utf-8")
    start = text.index("\n[compliance]")
    end = text.index("\n[", start + 1)
    config = demo / f"no-compliance-{command}.toml"  # relative paths resolve from the folder
    config.write_text(text[:start] + text[end:], "utf-8")

    result = run_cli("--config", str(config), command)

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "no [compliance] section in the config; reminders are off" in result.stderr
