"""The command line end to end with ``backend = "graph"`` everywhere, against the emulator.

``init --demo`` lays out the demo; its workbooks go to the emulator's SharePoint site and its
mail to the emulator's shared mailbox; the config is switched to the Graph backends. Then the
real CLI (another process, real msal and O365 over HTTPS) runs intake, check and reminders
exactly as on the local backends.
"""

from __future__ import annotations

import io
import re
import time
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from service.compliance.duedates import next_working_day
from tests.cli.helpers import run_cli
from tests.connectors.harness_graph import (
    CLIENT_ID,
    MAILBOX,
    SECRET,
    SECRET_ENV,
    SITE_HOST,
    SITE_PATH,
)
from tests.connectors.test_mailbox_contract import make_raw

REGISTER = "/Registers/concern-register.xlsx"
FORMS = "/Forms/forms-responses.xlsx"
COMPLIANCE = "/Compliance/compliance.xlsx"


def publish(emu: Any, folder: Path) -> None:
    """Set the emulator up as the tenant of an ``init`` folder: the app, the shared mailbox,
    the site, and the folder's three workbooks uploaded to it."""
    emu.add_app(CLIENT_ID, secret=SECRET)
    emu.add_mailbox(MAILBOX)
    emu.add_site(SITE_HOST, SITE_PATH)
    for name, path in (
        ("concern-register.xlsx", REGISTER),
        ("forms-responses.xlsx", FORMS),
        ("compliance.xlsx", COMPLIANCE),
    ):
        emu.put_file(SITE_HOST, SITE_PATH, path, (folder / "workbooks" / name).read_bytes())


def graphify(config: Path, emu: Any) -> None:
    """Point the demo config's backends at the emulator."""
    text = config.read_text(encoding="utf-8")

    def book(path: str, mode: str = "workbook") -> str:
        return (
            f'{{ backend = "graph", site_host = "{SITE_HOST}", site_path = "{SITE_PATH}", '
            f'path = "{path}", mode = "{mode}" }}'
        )

    replacements = {
        r'mailbox = \{ backend = "folder"[^}]*\}': (
            f'mailbox = {{ backend = "graph", address = "{MAILBOX}" }}'
        ),
        r'workbook = \{ backend = "xlsx", path = "workbooks/forms-responses.xlsx" \}': (
            "workbook = " + book(FORMS)
        ),
        r'workbook = \{ backend = "xlsx", path = "workbooks/concern-register.xlsx" \}': (
            "workbook = " + book(REGISTER)
        ),
        r'workbook = \{ backend = "xlsx", path = "workbooks/compliance.xlsx" \}': (
            "workbook = " + book(COMPLIANCE)
        ),
        r'sender = \{ backend = "outbox"[^}]*\}': (
            f'sender = {{ backend = "graph", address = "{MAILBOX}" }}'
        ),
    }
    for pattern, new in replacements.items():
        text, n = re.subn(pattern, new.replace("\\", "\\\\"), text)
        assert n == 1, pattern
    text += (
        "\n[m365]\n"
        f'tenant_id = "{emu.tenant_id}"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret_env = "{SECRET_ENV}"\n'
        f'authority_host = "{emu.authority_host}"\n'
        f'graph_url = "{emu.url}"\n'
        f'ca_bundle = "{emu.ca_path}"\n'
        "timeout_seconds = 20\n"
    )
    config.write_text(text, encoding="utf-8")


@pytest.fixture
def site(graph: Any, tmp_path: Path) -> Path:
    """The demo, moved onto the emulator: mail in the mailbox, workbooks on the site."""
    folder = tmp_path / "demo"
    result = run_cli("init", "--demo", str(folder))
    assert result.returncode == 0, result.stderr
    publish(graph, folder)
    for eml in sorted((folder / "inbox").glob("*.eml")):
        graph.deliver(MAILBOX, eml.read_bytes())
        eml.unlink()
    graphify(folder / "config.toml", graph)
    return folder


def cli(folder: Path, *args: str) -> Any:
    return run_cli("--config", str(folder / "config.toml"), *args, env={SECRET_ENV: SECRET})


def register_rows(graph: Any) -> list[dict[str, object]]:
    book = openpyxl.load_workbook(io.BytesIO(graph.get_file(SITE_HOST, SITE_PATH, REGISTER)))
    for ws in book.worksheets:
        if "Concerns" in ws.tables:
            cells = ws[ws.tables["Concerns"].ref]
            headers = [c.value for c in cells[0]]
            return [
                dict(zip(headers, (c.value for c in row), strict=True))
                for row in cells[1:]
                if any(c.value not in (None, "") for c in row)
            ]
    raise AssertionError("no Concerns table")


def subjects(graph: Any) -> list[str]:
    return [str(m.message()["Subject"]) for m in graph.outbox(MAILBOX)]


def test_intake_runs_end_to_end_on_graph_and_a_second_poll_does_nothing(
    site: Path, graph: Any
) -> None:
    result = cli(site, "poll")
    assert result.returncode == 0, result.stdout + result.stderr

    rows = register_rows(graph)
    assert len(rows) == 5  # three e-mailed concerns and two form responses
    references = [str(r["Reference"]) for r in rows]
    assert len(set(references)) == 5
    assert all(re.fullmatch(r"PRV-\d{4}-\d{4}", ref) for ref in references)
    keys = [str(r["Source key"]) for r in rows]
    assert len(set(keys)) == 5
    alerts = [s for s in subjects(graph) if "New safeguarding concern" in s]
    assert len(alerts) == 5
    assert len([s for s in subjects(graph) if "has been received" in s]) == 4
    assert graph.folder_messages(MAILBOX, "inbox") == []
    assert len(graph.folder_messages(MAILBOX, "Processed")) == 4
    assert len(graph.sent_messages(MAILBOX)) == len(graph.outbox(MAILBOX))  # copies kept
    mail_rows = [r for r in rows if str(r["Source key"]).startswith("mail:")]
    assert all(str(r["Link to original"]).startswith("https://") for r in mail_rows)

    before = len(graph.outbox(MAILBOX))
    again = cli(site, "poll")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "new=0" in again.stdout
    assert len(graph.outbox(MAILBOX)) == before
    assert len(register_rows(graph)) == 5


def test_a_poll_writes_the_register_and_chronology_in_one_workbook_session(
    site: Path, graph: Any
) -> None:
    result = cli(site, "poll")
    assert result.returncode == 0, result.stdout + result.stderr

    assert len(register_rows(graph)) == 5
    adds = [r for r in graph.requests if r.path.endswith("/rows/add")]
    assert {r.path.split("/tables/")[1].split("/")[0] for r in adds} == {"Concerns", "Chronology"}
    sessions = {
        {k.lower(): v for k, v in r.headers.items()}.get("workbook-session-id") for r in adds
    }
    assert len(sessions) == 1 and None not in sessions
    assert graph.count_requests("POST", r"/createSession$") == 1  # the lock probe's session
    assert graph.count_requests("POST", r"/closeSession$") == 1  # closed when the cycle ends


def test_a_locked_register_delays_the_row_not_the_alert(site: Path, graph: Any) -> None:
    config = site / "config.toml"
    config.write_text(
        config.read_text().replace("poll_seconds = 15", "poll_seconds = 5"), encoding="utf-8"
    )
    graph.set_file_locked(SITE_HOST, SITE_PATH, REGISTER, True)

    first = cli(site, "poll")

    assert first.returncode == 1, first.stdout + first.stderr  # rows pending: attention
    assert len([s for s in subjects(graph) if "New safeguarding concern" in s]) == 5
    assert register_rows(graph) == []

    graph.set_file_locked(SITE_HOST, SITE_PATH, REGISTER, False)
    time.sleep(5.5)  # a locked row is parked for one poll interval (5 s here)
    second = cli(site, "poll")
    assert second.returncode == 0, second.stdout + second.stderr
    assert len(register_rows(graph)) == 5
    assert len([s for s in subjects(graph) if "New safeguarding concern" in s]) == 5


def test_check_passes_and_says_which_workbook_mode_is_in_use(site: Path, graph: Any) -> None:
    result = cli(site, "check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"ok\s+mode for concern-register\.xlsx\s+workbook \(Excel API", result.stdout)
    assert re.search(r"ok\s+folder Processed", result.stdout)
    assert "FAIL" not in result.stdout


def admin_email(folder: Path) -> str:
    with (folder / "config.toml").open("rb") as handle:
        return str(tomllib.load(handle)["people"]["admin_email"])


def test_check_sends_only_with_send_test_and_then_one_message_to_the_admin(
    site: Path, graph: Any
) -> None:
    plain = cli(site, "check")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert graph.outbox(MAILBOX) == []
    assert graph.sent_messages(MAILBOX) == []

    result = cli(site, "check", "--send-test")

    assert result.returncode == 0, result.stdout + result.stderr
    admin = admin_email(site)
    (copy,) = graph.sent_messages(MAILBOX)  # exactly one, kept in the mailbox's Sent Items
    assert [r["emailAddress"]["address"] for r in copy["toRecipients"]] == [admin]
    (out,) = graph.outbox(MAILBOX)
    assert out.recipients == [admin]
    assert graph.folder_messages(MAILBOX, "drafts") == []
    assert re.search(rf"ok\s+send from {re.escape(MAILBOX)}\s+test message sent to", result.stdout)


def test_check_names_a_missing_permission(site: Path, graph: Any) -> None:
    graph.add_app(CLIENT_ID, secret=SECRET, permissions=("Mail.ReadWrite", "Mail.Send"))

    result = cli(site, "check")

    assert result.returncode == 1
    assert "FAIL" in result.stdout
    assert "Sites.Selected" in result.stdout
    assert "POST /sites/{site-id}/permissions" in result.stdout


def test_reminders_run_end_to_end_on_graph_and_go_once(site: Path, graph: Any) -> None:
    workday = next_working_day(date.today()).isoformat()

    real = cli(site, "remind", "--as-of", workday)
    assert real.returncode == 0, real.stdout + real.stderr
    digests = [s for s in subjects(graph) if s.startswith("Prevent compliance reminders")]
    assert digests
    assert re.search(rf"sent {len(digests)} digest\(s\)", real.stdout)

    again = cli(site, "remind", "--as-of", workday)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "sent 0 digest(s)" in again.stdout
    assert [s for s in subjects(graph) if s.startswith("Prevent compliance reminders")] == digests


# ---------------------------------------------------------------------------- faults via the CLI
# Each connector has its own fault tests; these run whole polls under representative faults that
# are retried within the same poll, and check that nothing is lost and nothing doubled.


def assert_each_concern_once(graph: Any, output: str) -> None:
    """The demo's five concerns: one register row and one alert each, every e-mail filed."""
    rows = register_rows(graph)
    assert len(rows) == 5, output
    assert len({str(r["Source key"]) for r in rows}) == 5, output
    alerts = [s for s in subjects(graph) if "New safeguarding concern" in s]
    assert len(alerts) == len(set(alerts)) == 5, output
    assert len([s for s in subjects(graph) if "has been received" in s]) == 4, output
    assert graph.folder_messages(MAILBOX, "inbox") == [], output
    assert len(graph.folder_messages(MAILBOX, "Processed")) == 4, output
    assert graph.folder_messages(MAILBOX, "drafts") == [], output  # no orphan drafts
    assert len(graph.sent_messages(MAILBOX)) == len(graph.outbox(MAILBOX)), output


@pytest.mark.parametrize(
    "path",
    [r"/rows/add$", r"/messages/[^/]+/send$"],
    ids=["register-rows-add", "send-draft"],
)
def test_a_write_that_committed_behind_a_504_is_not_repeated(
    site: Path, graph: Any, path: str
) -> None:
    graph.add_fault("POST", path, 504, after_commit=True)

    result = cli(site, "poll")

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert graph.faults.pending == [], "the fault was never hit"
    assert_each_concern_once(graph, output)


def test_a_fractional_retry_after_on_delta_and_on_send_is_waited_out(
    site: Path, graph: Any
) -> None:
    # 2.128 s: the kind of value that makes O365's own urllib3 retry raise.
    for method, path in (("GET", r"/messages/delta"), ("POST", r"/messages/[^/]+/send$")):
        graph.add_fault(method, path, 429, headers={"Retry-After": "2.128"})

    result = cli(site, "poll")

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert graph.faults.pending == [], "a fault was never hit"
    assert_each_concern_once(graph, output)


def test_token_expiry_and_a_lost_delta_link_between_polls(site: Path, graph: Any) -> None:
    first = cli(site, "poll")
    assert first.returncode == 0, first.stdout + first.stderr
    graph.expire_tokens()
    graph.lose_delta_tokens()
    # The new process's token also runs out mid-poll: Graph's expiry answer on a MIME read.
    graph.add_fault("GET", r"/\$value$", 401)
    graph.deliver(
        MAILBOX,
        make_raw("Another", "A learner said something worrying.", message_id="<late1@example.org>"),
    )
    tokens_before = graph.count_requests("POST", r"/oauth2/v2\.0/token$")

    second = cli(site, "poll")

    output = second.stdout + second.stderr
    assert second.returncode == 0, output
    assert graph.count_requests("GET", r"/messages/delta") >= 2  # the 410, then a full resync
    assert graph.faults.pending == [], "the expiry was never hit"
    assert graph.count_requests("POST", r"/oauth2/v2\.0/token$") >= tokens_before + 2
    rows = register_rows(graph)
    assert len(rows) == 6 and len({str(r["Source key"]) for r in rows}) == 6, output
    alerts = [s for s in subjects(graph) if "New safeguarding concern" in s]
    assert len(alerts) == len(set(alerts)) == 6, output  # the resync re-offered five: no repeats
    assert graph.folder_messages(MAILBOX, "inbox") == [], output
    assert graph.folder_messages(MAILBOX, "drafts") == [], output


def test_no_secret_token_or_concern_text_reaches_the_output(site: Path, graph: Any) -> None:
    """With --debug, a wrong client secret and the right one: nothing secret or personal."""
    wrong = "Wr0ng-example-client-secret"
    printed = ""
    for command in ("check", "poll", "status"):
        bad = run_cli(
            "--debug", "--config", str(site / "config.toml"), command, env={SECRET_ENV: wrong}
        )
        printed += bad.stdout + bad.stderr
        assert command == "status" or bad.returncode != 0, command
    for command in ("poll", "check", "status", "report"):
        good = cli(site, "--debug", command)
        printed += good.stdout + good.stderr
    assert "PRV-" in printed
    for secret in (wrong, SECRET, "Bearer ", "eyJ", "jordan.lee", "Avery", "isolated"):
        assert secret not in printed, secret
