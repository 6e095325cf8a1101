"""The compliance workbook: layout, demo content, reading rows into items, and row identity."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest

from connectors.memory import MemoryWorkbook
from connectors.xlsx import XlsxWorkbook, create_workbook
from service.compliance.duedates import Recurrence
from service.compliance.workbook import (
    ACTION_COLUMNS,
    ACTION_TABLE,
    POLICY_TABLE,
    TRAINING_TABLE,
    ComplianceData,
    academic_year_start,
    compliance_table_specs,
    demo_action_rows,
    read_compliance,
    seed_plan,
)
from service.config import Config
from service.errors import InputError
from service.ledger import Ledger
from tests.service.compliance.reminder_support import LONDON, make_config, workbook_from_specs

TODAY = date(2026, 11, 25)
HEADERS = [c.header for c in ACTION_COLUMNS]


def empty_workbook() -> MemoryWorkbook:
    return workbook_from_specs(compliance_table_specs(False, TODAY))


def action(objective: str, act: str, owner: str, due: object, **kw: object) -> list[object]:
    row = dict.fromkeys(HEADERS)
    row.update(Objective=objective, Action=act, Owner=owner, Due=due, **kw)
    return list(row.values())


def read(
    wb: MemoryWorkbook,
    *,
    config: Config | None = None,
    ledger: Ledger | None = None,
    today: date = TODAY,
    write_ids: bool = True,
) -> ComplianceData:
    return read_compliance(
        config or make_config(), wb, ledger or Ledger(":memory:"), today, write_ids=write_ids
    )


# ---------------------------------------------------------------------------- layout


def test_three_tables_with_drop_downs_and_real_dates() -> None:
    specs = {s.table: s for s in compliance_table_specs(False, TODAY)}
    assert set(specs) == {ACTION_TABLE, POLICY_TABLE, TRAINING_TABLE}
    kinds = {t: {c.header: c for c in s.columns} for t, s in specs.items()}
    assert kinds[ACTION_TABLE]["Status"].kind == "choice"
    assert "Complete" in kinds[ACTION_TABLE]["Status"].choices
    assert kinds[ACTION_TABLE]["Recurrence"].kind == "choice"
    assert set(kinds[ACTION_TABLE]["Recurrence"].choices) == {r.value for r in Recurrence}
    assert kinds[POLICY_TABLE]["Last reviewed"].kind == "date"
    assert kinds[TRAINING_TABLE]["Last Prevent training"].kind == "date"
    for table in specs.values():
        assert table.columns[-1].header == "ID" and table.columns[-1].kind == "hidden"
        assert not table.rows


def test_init_writes_a_real_xlsx_with_validations_and_dates(tmp_path: Path) -> None:
    path = tmp_path / "compliance.xlsx"
    create_workbook(path, compliance_table_specs(True, TODAY), tz=LONDON)
    xl = openpyxl.load_workbook(path)
    assert set(xl.sheetnames) == {"Action plan", "Policies", "Training"}
    plan = xl["Action plan"]
    assert {next(iter(dv.sqref.ranges)).min_col for dv in plan.data_validations.dataValidation} == {
        HEADERS.index("Recurrence") + 1,
        HEADERS.index("Status") + 1,
    }
    assert plan.column_dimensions["I"].hidden  # the ID column
    assert isinstance(xl["Policies"]["C2"].value, datetime)  # a real date, not text
    xl.close()
    # And the service reads it back through the xlsx backend.
    data = read(XlsxWorkbook(path, tz=LONDON))
    assert not data.problems
    assert len(data.items) == 20


# ---------------------------------------------------------------------------- demo


def test_demo_is_the_seed_plan_moved_to_this_academic_year() -> None:
    seed = seed_plan()
    assert len(seed) == 15
    rows = demo_action_rows(TODAY)
    assert len(rows) == 15
    whens = [r[3] for r in rows]
    assert "October 2026" in whens and "Sept 2026 on ongoing" in whens and "Jan 2026" in whens
    assert "Immediate" in whens
    assert TODAY in whens  # due today
    assert date(2026, 12, 2) in whens  # due in a week
    assert date(2026, 12, 25) in whens  # due in a month
    assert not any("2021" in str(w) for w in whens)
    statuses = {r[1]: r[6] for r in rows}
    assert statuses["Key personnel to attend WRAP training as specialist support"] == "Complete"
    assert statuses["Amend Safeguarding policies and procedures"] == "Not started"


@pytest.mark.parametrize(
    ("today", "start"),
    [(date(2026, 9, 1), 2026), (date(2026, 8, 31), 2025), (date(2027, 3, 10), 2026)],
)
def test_academic_year(today: date, start: int) -> None:
    assert academic_year_start(today) == start
    assert any(r[3] == f"October {start}" for r in demo_action_rows(today))


def test_demo_has_due_soon_today_and_overdue_and_invented_staff() -> None:
    data = read(workbook_from_specs(compliance_table_specs(True, TODAY)))
    assert not data.problems
    from service.compliance.workbook import calendar_for

    cal = calendar_for(make_config().compliance)  # type: ignore[arg-type]
    dues = [i.first_due(cal) for i in data.items if not i.spec.recurring]
    assert any(d == TODAY for d in dues)
    assert any(d and TODAY < d <= date(2026, 12, 25) for d in dues)
    assert any(d and d < TODAY for d in dues)
    people = [i for i in data.items if i.kind in ("training", "induction")]
    assert {i.owners[0].rpartition("@")[2] for i in people} == {"example.org"}
    assert any(i.kind == "induction" for i in people)
    policy = next(i for i in data.items if i.kind == "policy")
    assert policy.first_due(cal) == date(2022, 1, 4)  # reviewed 4 January 2021, annually


# ---------------------------------------------------------------------------- reading


def test_problems_name_sheet_row_column_and_text() -> None:
    wb = empty_workbook()
    wb.add_table(
        ACTION_TABLE,
        HEADERS,
        [
            action("O", "Fine", "Executive Director", "October 2026"),
            action("O", "Bad date", "Executive Director", "TBC"),
            action("O", "Bad owner", "Finance Director", "October 2026"),
            action("O", "Half known", "Executive Director; Finance Director", "October 2026"),
            action("O", "Ongoing", "Training Managers", "ongoing"),
            action("O", "Bad recurrence", "Training Managers", "October 2026", Recurrence="often"),
            action("O", "Done", "Nobody Known", "whenever", Status="complete"),
            action("Heading only", None, None, None),
        ],
        sheet="Action plan",
    )
    data = read(wb)
    got = {(p.sheet, p.row, p.column, p.text) for p in data.problems}
    assert got == {
        ("Action plan", 3, "Due", "TBC"),
        ("Action plan", 4, "Owner", "Finance Director"),
        ("Action plan", 5, "Owner", "Executive Director; Finance Director"),
        ("Action plan", 6, "Due", "ongoing"),
        ("Action plan", 7, "Recurrence", "often"),
    }
    titles = {i.title: i for i in data.items}
    assert set(titles) == {"Fine", "Half known"}  # complete, heading and broken rows: none
    assert titles["Half known"].owners == ("ed@example.org",)


def test_policies_and_training_rows() -> None:
    wb = empty_workbook()
    wb.add_table(
        POLICY_TABLE,
        ["Policy", "Owner", "Last reviewed", "Review every (months)", "Next review", "ID"],
        [
            ["Prevent", "Executive Director", datetime(2025, 2, 28), 12, None, None],
            ["Online safety", "Operations Director", None, None, "15/01/2027", None],
            ["Lettings", "Operations Director", None, None, None, None],
            ["Visitors", "Operations Director", date(2025, 1, 1), "yearly", None, None],
        ],
        sheet="Policies",
    )
    wb.add_table(
        TRAINING_TABLE,
        [c.header for c in compliance_table_specs(False, TODAY)[2].columns],
        [
            [
                "A",
                "a@example.org",
                "Trainer",
                "m@example.org",
                date(2020, 1, 1),
                date(2026, 2, 29 - 1),
            ],
            ["B", "b@example.org", "Deputy DSP", "", date(2020, 1, 1), date(2025, 6, 1)],
            ["C", "c@example.org", "Trainer", "m@example.org", date(2026, 11, 2), None],
            ["D", "", "Trainer", "", date(2020, 1, 1), date(2026, 1, 1)],
            ["E", "e@example.org", "Trainer", "not-an-address", None, 46000.0],
            ["F", "f@example.org", "Trainer", "", None, None],
        ],
        sheet="Training",
    )
    data = read(wb)
    items = {i.title: i for i in data.items}
    from service.compliance.workbook import calendar_for

    cal = calendar_for(make_config().compliance)  # type: ignore[arg-type]
    assert items["Review: Prevent"].first_due(cal) == date(2026, 2, 28)
    assert items["Review: Online safety"].first_due(cal) == date(2027, 1, 15)
    assert items["Prevent training for A"].first_due(cal) == date(2027, 2, 28)
    assert items["Prevent training for A"].escalate_to == ("m@example.org",)
    assert items["DSP training for B"].first_due(cal) == date(2027, 6, 1)  # 24 months
    assert items["DSP training for B"].escalate_to == ("ed@example.org",)  # no manager
    assert items["Induction Prevent training for C"].first_due(cal) == date(2026, 11, 30)
    assert items["Prevent training for E"].first_due(cal) == date(2026, 12, 9)  # serial 46000
    problems = {(p.sheet, p.row, p.column) for p in data.problems}
    assert problems == {
        ("Policies", 4, "Last reviewed"),
        ("Policies", 5, "Review every (months)"),
        ("Training", 5, "Email"),
        ("Training", 6, "Manager email"),
        ("Training", 7, "Last Prevent training"),
    }


def test_missing_column_is_an_input_error_naming_table_and_column() -> None:
    wb = empty_workbook()
    wb.add_table(ACTION_TABLE, ["Objective", "Action", "Owner", "Recurrence", "Status", "ID"])
    with pytest.raises(InputError, match=r"'ActionPlan'.*'Due'"):
        read(wb)


def test_unknown_plan_owner_and_escalation_roles_are_reported() -> None:
    config = make_config(plan_owner="Quality Lead", escalate_to_role="Chief Executive")
    data = read(empty_workbook(), config=config)
    assert data.plan_owner == ("admin@example.org",)
    assert {(p.sheet, p.column) for p in data.problems} == {
        ("config", "compliance.plan_owner"),
        ("config", "compliance.escalate_to_role"),
    }


# ---------------------------------------------------------------------------- identity


def plan_workbook() -> MemoryWorkbook:
    wb = empty_workbook()
    wb.add_table(
        ACTION_TABLE,
        HEADERS,
        [
            action("O1", "First", "Executive Director", "October 2026"),
            action("O2", "Second", "Operations Director", "November 2026"),
            action("O3", "Third", "Training Managers", "December 2026"),
        ],
        sheet="Action plan",
    )
    return wb


def ids_by_title(data: ComplianceData) -> dict[str, str]:
    return {i.title: i.item_id for i in data.items}


def test_ids_are_written_once_into_the_hidden_column_only() -> None:
    wb = plan_workbook()
    ledger = Ledger(":memory:")
    first = read(wb, ledger=ledger)
    assert first.ids_written == 3
    table = wb.read_table(ACTION_TABLE)
    assert all(str(r["ID"]).startswith("AP-") for r in table.rows)
    assert [r["Action"] for r in table.rows] == ["First", "Second", "Third"]
    second = read(wb, ledger=ledger)
    assert second.ids_written == 0
    assert ids_by_title(first) == ids_by_title(second)


def test_identity_survives_sort_insert_and_edit() -> None:
    wb = plan_workbook()
    ledger = Ledger(":memory:")
    before = ids_by_title(read(wb, ledger=ledger))
    t = wb.tables[ACTION_TABLE]
    t.rows.reverse()  # someone sorted the table
    t.rows.insert(1, action("O9", "Inserted", "Executive Director", "January 2027"))
    for row in t.rows:  # someone reworded an action
        if row[1] == "Second":
            row[1] = "Second, reworded"
    after = ids_by_title(read(wb, ledger=ledger))
    assert after["First"] == before["First"]
    assert after["Third"] == before["Third"]
    assert after["Second, reworded"] == before["Second"]
    assert after["Inserted"] not in before.values()


def test_a_locked_workbook_keeps_the_same_derived_ids_until_written() -> None:
    wb = plan_workbook()
    ledger = Ledger(":memory:")
    wb.locked = True
    locked_1 = read(wb, ledger=ledger)
    locked_2 = read(wb, ledger=ledger)
    assert locked_1.ids_written == 0
    assert ids_by_title(locked_1) == ids_by_title(locked_2)
    wb.locked = False
    written = read(wb, ledger=ledger)
    assert written.ids_written == 3
    assert ids_by_title(written) == ids_by_title(locked_1)


def test_id_write_is_skipped_if_the_row_moved_since_the_read() -> None:
    wb = plan_workbook()

    real_update = wb.update_cells

    def sort_first(table: str, updates: list) -> int:  # type: ignore[type-arg]
        wb.tables[ACTION_TABLE].rows.reverse()  # a person sorts between read and write
        return real_update(table, updates)

    wb.update_cells = sort_first  # type: ignore[method-assign]
    data = read(wb)
    rows = wb.read_table(ACTION_TABLE).rows
    # Only the middle row still matched its expected content; no ID landed on a wrong row.
    assert data.ids_written == 1
    by_action = {r["Action"]: r["ID"] for r in rows}
    assert by_action["Second"] and not by_action["First"] and not by_action["Third"]
    assert ids_by_title(data)["Second"].endswith(by_action["Second"])


def test_a_copied_row_with_the_same_id_is_reported_not_guessed() -> None:
    wb = plan_workbook()
    read(wb)
    t = wb.tables[ACTION_TABLE]
    t.rows.append(list(t.rows[0]))  # copy-paste of a whole row, hidden ID included
    t.rows[-1][1] = "Copy"
    data = read(wb)
    assert {p.row for p in data.problems if p.column == "ID"} == {2, 5}
    assert set(ids_by_title(data)) == {"Second", "Third"}


def test_immediate_is_the_day_first_seen_and_stays() -> None:
    wb = empty_workbook()
    wb.add_table(ACTION_TABLE, HEADERS, [action("O", "Now", "Executive Director", "Immediate")])
    ledger = Ledger(":memory:")
    from service.compliance.workbook import calendar_for

    cal = calendar_for(make_config().compliance)  # type: ignore[arg-type]
    first = read(wb, ledger=ledger, today=date(2026, 11, 25)).items[0]
    later = read(wb, ledger=ledger, today=date(2026, 12, 10)).items[0]
    assert first.first_due(cal) == later.first_due(cal) == date(2026, 11, 25)
    # A dry run (no writes) on a later day does not move it either.
    dry = read(wb, ledger=ledger, today=date(2027, 1, 5), write_ids=False).items[0]
    assert dry.first_due(cal) == date(2026, 11, 25)


# ---------------------------------------------------------------------------- formulas


def _type_into(path: Path, sheet: str, cells: dict[str, object]) -> None:
    """Type into the workbook as a person would (openpyxl saves formulas without results)."""
    book = openpyxl.load_workbook(path)
    for ref, value in cells.items():
        book[sheet][ref] = value
    book.save(path)


def _save_results(path: Path, part: str, results: dict[str, str]) -> None:
    """Add the result Excel saves beside a formula (``<f>…</f><v>46354</v>``)."""
    import os
    import re
    import zipfile

    with zipfile.ZipFile(path) as zf:
        xml = zf.read(part).decode()
    for ref, value in results.items():
        xml, count = re.subn(
            rf'(<c r="{ref}"[^>]*>)(<f>[^<]*</f>)<v\s*/>', rf"\g<1>\g<2><v>{value}</v>", xml
        )
        assert count == 1, ref
    tmp = path.with_suffix(".new")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = xml.encode() if item.filename == part else src.read(item.filename)
            dst.writestr(item, data)
    os.replace(tmp, path)


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "compliance.xlsx"
    create_workbook(path, compliance_table_specs(False, TODAY), tz=LONDON)
    _type_into(
        path,
        "Action plan",
        {"A2": "Objective", "B2": "Renew the policy", "C2": "Executive Director"},
    )
    return path


def test_a_due_formula_with_no_saved_value_is_reported_as_such(plan_file: Path) -> None:
    _type_into(plan_file, "Action plan", {"D2": "=TODAY()+3"})

    data = read(XlsxWorkbook(plan_file, tz=LONDON))

    assert not data.items
    [problem] = data.problems
    assert (problem.column, problem.text) == ("Due", "=TODAY()+3")
    assert problem.reason == (
        "is a formula with no saved value; open and save the file in Excel, or type a date"
    )


def test_a_due_formula_reads_the_value_excel_saved(plan_file: Path) -> None:
    # Excel shows EDATE's result as a plain number unless the cell is formatted as a date.
    _type_into(plan_file, "Action plan", {"E2": None, "D2": "=EDATE(DATE(2026,10,28),1)"})
    _save_results(plan_file, "xl/worksheets/sheet1.xml", {"D2": "46354"})

    data = read(XlsxWorkbook(plan_file, tz=LONDON))

    assert not data.problems
    [item] = data.items
    assert item.spec.due == date(2026, 11, 28)


def test_init_fills_next_review_and_next_due_with_real_formulas(tmp_path: Path) -> None:
    path = tmp_path / "compliance.xlsx"
    create_workbook(path, compliance_table_specs(True, TODAY), tz=LONDON)

    xl = openpyxl.load_workbook(path)
    review = xl["Policies"]["E2"]
    assert review.data_type == "f" and not review.quotePrefix
    assert review.value == '=IF(C2="","",EDATE(C2,IF(D2="",12,D2)))'
    training = xl["Training"]
    dues = [training[f"H{r}"] for r in range(2, training.max_row + 1)]
    assert len(dues) == 6 and all(c.data_type == "f" for c in dues)
    assert dues[0].value == (
        '=IF(AND(F2<>"",OR(E2="",F2>=E2)),EDATE(F2,IF(OR(C2="DSP",C2="Deputy DSP",'
        'C2="Designated Safeguarding Person"),24,12)),IF(E2<>"",E2+28,""))'
    )
    assert dues[0].number_format == "dd/mm/yyyy"  # EDATE gives a number: shown as a date
    xl.close()
    # Never calculated (openpyxl does not): the service works the dates out itself.
    data = read(XlsxWorkbook(path, tz=LONDON))
    assert not data.problems
    assert len(data.items) == 20


def test_next_review_and_next_due_are_only_a_fallback() -> None:
    wb = empty_workbook()
    policies = wb.tables[POLICY_TABLE]
    # A saved Next review that disagrees with the row: the row wins.
    policies.rows.append(["Policy A", "Executive Director", date(2026, 1, 10), 12,
                          date(2030, 1, 1), None])  # fmt: skip
    # Nothing to work it out from: a typed Next review is used.
    policies.rows.append(["Policy B", "Executive Director", None, None, date(2027, 3, 1), None])
    training = wb.tables[TRAINING_TABLE]
    training.rows.append(["Pat Example", "pat@example.org", "Trainer", "", None,
                          date(2026, 2, 1), None, date(2031, 1, 1), None])  # fmt: skip

    data = read(wb)

    assert not data.problems
    dues = {i.title: i.spec.due for i in data.items}
    assert dues == {
        "Review: Policy A": date(2027, 1, 10),
        "Review: Policy B": date(2027, 3, 1),
        "Prevent training for Pat Example": date(2027, 2, 1),
    }


def test_a_status_typed_with_a_tick_or_full_stop_still_counts_as_done() -> None:
    # Pasted or typed over the drop-down: "Completed ✔", "complete.", "Done!" are done;
    # "Not complete" is not.
    wb = empty_workbook()
    wb.add_table(
        ACTION_TABLE,
        HEADERS,
        [
            action("O", "Ticked", "Executive Director", "October 2026", Status="Completed ✔"),
            action("O", "Full stop", "Executive Director", "October 2026", Status="complete."),
            action("O", "Shouted", "Executive Director", "October 2026", Status=" Done! "),
            action("O", "Open", "Executive Director", "October 2026", Status="Not complete"),
        ],
        sheet="Action plan",
    )
    data = read(wb)
    assert [i.title for i in data.items] == ["Open"]


def test_a_deleted_id_column_is_reported_and_rows_keep_their_derived_ids() -> None:
    # Someone deleted the hidden column (with its neighbour, or unhiding and tidying up):
    # the reminders go on with the IDs derived from the rows, and the plan owner is told.
    ledger = Ledger(":memory:")
    before = ids_by_title(read(plan_workbook(), ledger=ledger))
    wb = empty_workbook()
    headers = [h for h in HEADERS if h != "ID"]
    wb.add_table(
        ACTION_TABLE,
        headers,
        [r[: len(headers)] for r in plan_workbook().tables[ACTION_TABLE].rows],
        sheet="Action plan",
    )
    data = read(wb, ledger=ledger)
    assert ids_by_title(data) == before
    assert data.ids_written == 0
    assert [(p.sheet, p.column) for p in data.problems] == [("Action plan", "ID")]
    assert "restore" in data.problems[0].reason


def test_a_person_on_two_training_rows_is_reported_not_reminded_twice() -> None:
    # Retrained and added as a new row instead of updating the old one: the old row would keep
    # sending overdue reminders (and escalations to the manager) for training already done.
    wb = empty_workbook()
    wb.add_table(
        TRAINING_TABLE,
        [c.header for c in compliance_table_specs(False, TODAY)[2].columns],
        [
            ["Jo", "jo@example.org", "Trainer", "m@example.org", None, date(2025, 1, 10)],
            ["Kim", "kim@example.org", "Trainer", "m@example.org", None, date(2026, 2, 1)],
            ["Jo", "Jo@Example.org ", "Trainer", "m@example.org", None, date(2026, 1, 12)],
        ],
        sheet="Training",
    )
    data = read(wb)
    assert [i.title for i in data.items] == ["Prevent training for Kim"]
    assert {(p.row, p.column) for p in data.problems} == {(2, "Email"), (4, "Email")}
    assert all("rows 2, 4" in p.reason for p in data.problems)
