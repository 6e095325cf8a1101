"""``prevent-service provision`` end to end: the real CLI (another process, real msal and O365)
against the Graph emulator as a fresh tenant, one with a register already there, and one with
permissions missing; and on the local backends."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from service.cases.register import REGISTER_COLUMNS
from service.compliance.workbook import ACTION_TABLE, POLICY_TABLE, TRAINING_TABLE
from tests.cli.helpers import run_cli
from tests.cli.test_e2e_graph import COMPLIANCE, FORMS, REGISTER, graphify
from tests.connectors.harness_graph import (
    CLIENT_ID,
    MAILBOX,
    SECRET,
    SECRET_ENV,
    SITE_HOST,
    SITE_PATH,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """``init --demo``'s folder (a demo, so check lets its invented people and ids pass);
    ``tenant`` points its config at the emulator."""
    target = tmp_path / "service"
    result = run_cli("init", "--demo", str(target))
    assert result.returncode == 0, result.stderr
    return target


def tenant(
    graph: Any,
    folder: Path,
    *,
    permissions: tuple[str, ...] = ("Mail.ReadWrite", "Mail.Send", "Sites.Selected"),
    site_role: str = "write",
) -> None:
    """A tenant after the app registration and the grants: an app, the shared mailbox (no
    Processed or Quarantine yet), an empty site, and the Forms workbook that Microsoft Forms
    made there."""
    graph.add_app(CLIENT_ID, secret=SECRET, permissions=permissions, grant_all_sites=False)
    graph.add_mailbox(MAILBOX)
    graph.add_site(SITE_HOST, SITE_PATH)
    graph.grant_site(CLIENT_ID, SITE_HOST, SITE_PATH, site_role)
    forms = (folder / "workbooks" / "forms-responses.xlsx").read_bytes()
    graph.put_file(SITE_HOST, SITE_PATH, FORMS, forms)
    graphify(folder / "config.toml", graph)


def provision(folder: Path) -> Any:
    return run_cli("--config", str(folder / "config.toml"), "provision", env={SECRET_ENV: SECRET})


def tables(data: bytes) -> dict[str, list[str]]:
    book = openpyxl.load_workbook(io.BytesIO(data))
    found = {}
    for ws in book.worksheets:
        for name, ref in ws.tables.items():
            found[name] = [str(c.value) for c in ws[ref][0]]
    return found


def lines(output: str) -> dict[str, str]:
    """``ok  name  detail`` lines by name (the provision part, before ``check:``)."""
    part = output.split("check:")[0]
    out = {}
    for line in part.splitlines():
        if line.startswith(("ok  ", "FAIL")):
            mark, rest = line[:4], line[5:]
            name, _, detail = rest.partition("  ")
            out[name.strip()] = f"{mark.strip()}: {detail.strip()}"
    return out


def mail_folders(graph: Any) -> set[str]:
    with graph.lock:
        mailbox = graph.mail._mailbox(MAILBOX)
        return {f.display_name for f in mailbox.folders.values()}


def test_a_fresh_tenant_gets_its_folders_and_workbooks_then_passes_check(
    graph: Any, folder: Path
) -> None:
    tenant(graph, folder)
    assert "Processed" not in mail_folders(graph)

    result = provision(folder)

    assert result.returncode == 0, result.stdout + result.stderr
    made = lines(result.stdout)
    assert made[f"mail folder Processed in {MAILBOX}"] == "ok: created"
    assert made[f"mail folder Quarantine in {MAILBOX}"] == "ok: created"
    assert made["SharePoint folder /Registers"] == "ok: created"
    assert made["SharePoint folder /Compliance"] == "ok: created"
    assert made[f"workbook {REGISTER}"].startswith("ok: created, with table(s) Concerns")
    assert made[f"workbook {COMPLIANCE}"].startswith("ok: created")
    assert {"Processed", "Quarantine"} <= mail_folders(graph)
    # The same layout as init's local workbooks: the register's columns, the three tables.
    register = tables(graph.get_file(SITE_HOST, SITE_PATH, REGISTER))
    assert register == {"Concerns": [c.header for c in REGISTER_COLUMNS]}
    compliance = tables(graph.get_file(SITE_HOST, SITE_PATH, COMPLIANCE))
    assert set(compliance) == {ACTION_TABLE, POLICY_TABLE, TRAINING_TABLE}
    local = tables((folder / "workbooks" / "compliance.xlsx").read_bytes())
    assert compliance == local
    # Then check ran, over what was just made, and passed.
    checked = result.stdout.split("check:")[1]
    assert "register table Concerns" in checked and "FAIL" not in checked
    assert checked.strip().endswith("0 failed")

    # A second run makes nothing and changes nothing.
    etags = {p: graph.file_item(SITE_HOST, SITE_PATH, p)["eTag"] for p in (REGISTER, COMPLIANCE)}
    again = provision(folder)
    assert again.returncode == 0, again.stdout + again.stderr
    made = lines(again.stdout)
    assert made["SharePoint folder /Registers"] == "ok: found"
    assert made[f"mail folder Processed in {MAILBOX}"] == "ok: found"
    assert made[f"workbook {REGISTER}"].startswith("ok: left alone")
    for path, etag in etags.items():
        assert graph.file_item(SITE_HOST, SITE_PATH, path)["eTag"] == etag


def test_an_existing_register_is_left_alone_byte_for_byte(graph: Any, folder: Path) -> None:
    tenant(graph, folder)
    # Someone's own register, already in use (not even the service's layout).
    book = openpyxl.Workbook()
    book.active.append(["Reference", "Notes"])
    book.active.append(["PRV-2025-0001", "typed by the DSP"])
    out = io.BytesIO()
    book.save(out)
    theirs = out.getvalue()
    graph.put_file(SITE_HOST, SITE_PATH, REGISTER, theirs)
    etag = graph.file_item(SITE_HOST, SITE_PATH, REGISTER)["eTag"]

    result = provision(folder)

    made = lines(result.stdout)
    assert made["SharePoint folder /Registers"] == "ok: found"
    assert made[f"workbook {REGISTER}"].startswith("ok: left alone")
    assert graph.get_file(SITE_HOST, SITE_PATH, REGISTER) == theirs
    assert graph.file_item(SITE_HOST, SITE_PATH, REGISTER)["eTag"] == etag
    assert graph.count_requests("PUT", r"concern-register\.xlsx") == 0
    assert made[f"workbook {COMPLIANCE}"].startswith("ok: created")  # the rest still made
    # check says what is wrong with it; provision does not "fix" it.
    assert result.returncode == 1
    assert "FAIL register table Concerns" in result.stdout.split("check:")[1]


def test_a_register_that_appears_during_provision_is_left_alone(graph: Any, folder: Path) -> None:
    """Between the look-up (nothing there) and the upload, someone saves a register: Graph
    answers the upload 409 nameAlreadyExists, and their file stays."""
    tenant(graph, folder)
    graph.put_file(SITE_HOST, SITE_PATH, REGISTER, b"someone else's register")
    graph.add_fault(
        "GET", r"/drive/root:/Registers/concern-register\.xlsx", 404, times=1
    )  # the look-up misses it, as if it were saved a moment later

    result = provision(folder)

    assert lines(result.stdout)[f"workbook {REGISTER}"].startswith("ok: left alone")
    # It was tried, with conflictBehavior=fail, and Graph refused it.
    assert graph.count_requests("PUT", r"concern-register\.xlsx") == 1
    assert graph.get_file(SITE_HOST, SITE_PATH, REGISTER) == b"someone else's register"


def test_missing_permissions_are_named_with_what_to_grant(graph: Any, folder: Path) -> None:
    tenant(
        graph, folder, permissions=("Mail.Read", "Mail.Send", "Sites.Selected"), site_role="read"
    )

    result = provision(folder)

    assert result.returncode == 1
    made = lines(result.stdout)
    processed = made[f"mail folder Processed in {MAILBOX}"]
    assert processed.startswith("FAIL: ") and "access denied" in processed
    assert "Mail.ReadWrite application permission" in processed
    assert "New-ManagementRoleAssignment" in processed
    folder_line = made["SharePoint folder /Registers"]
    assert folder_line.startswith("FAIL: ") and "Sites.Selected" in folder_line
    assert '"roles": ["write"]' in folder_line
    assert f"workbook {REGISTER}" not in made  # no upload tried without its folder
    assert "Processed" not in mail_folders(graph)
    with pytest.raises(KeyError):
        graph.get_file(SITE_HOST, SITE_PATH, REGISTER)


def test_local_provision_makes_a_missing_workbook_and_leaves_the_rest(folder: Path) -> None:
    register = folder / "workbooks" / "concern-register.xlsx"
    before = register.read_bytes()
    compliance = folder / "workbooks" / "compliance.xlsx"
    compliance.unlink()

    result = run_cli("--config", str(folder / "config.toml"), "provision")

    assert result.returncode == 0, result.stdout + result.stderr
    made = lines(result.stdout)
    assert made[f"workbook {register}"].startswith("ok: left alone")
    assert made[f"workbook {compliance}"].startswith("ok: created")
    assert register.read_bytes() == before
    assert set(tables(compliance.read_bytes())) == {ACTION_TABLE, POLICY_TABLE, TRAINING_TABLE}
    assert compliance.stat().st_mode & 0o777 == 0o600


def test_a_missing_local_workbook_points_at_provision(folder: Path) -> None:
    (folder / "workbooks" / "compliance.xlsx").unlink()
    result = run_cli("--config", str(folder / "config.toml"), "poll")
    assert result.returncode == 3
    assert "compliance.workbook.path: file not found" in result.stderr
    assert "'prevent-service provision'" in result.stderr
    assert run_cli("--config", str(folder / "config.toml"), "provision").returncode == 0
    assert (folder / "workbooks" / "compliance.xlsx").is_file()
