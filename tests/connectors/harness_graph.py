"""Contract-test harnesses for the Graph backends, against the local Graph emulator.

The backends run the real msal and O365 code over HTTPS on 127.0.0.1; the emulator plays
Microsoft 365 (token endpoint, mailbox, SharePoint files and workbooks). ``graph_setup`` is
also what the Graph-specific tests use to get an app, a mailbox, a config and a ledger.
"""

from __future__ import annotations

import email
import email.policy
import io
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest

from connectors.base import ColumnSpec, Mailbox, MailSender, TableSpec, Workbook
from connectors.graph_mail import GraphMailbox, GraphSender
from connectors.graph_workbook import GraphWorkbook
from connectors.xlsx import create_workbook
from service.config import Config, parse_config
from service.ledger import Ledger
from tests.conftest import BASE_CONFIG, merge

CLIENT_ID = "11111111-1111-1111-1111-111111111111"
SECRET = "emulator-only-secret-value"
SECRET_ENV = "PREVENT_TEST_GRAPH_SECRET"
MAILBOX = "safeguarding@example.org"
SITE_HOST = "example.sharepoint.com"
SITE_PATH = "/sites/Safeguarding"
REGISTER_PATH = "/Registers/Concern register.xlsx"


def m365_section(emu: Any, **changes: Any) -> dict[str, Any]:
    section = {
        "tenant_id": emu.tenant_id,
        "client_id": CLIENT_ID,
        "client_secret_env": SECRET_ENV,
        "authority_host": emu.authority_host,
        "graph_url": emu.url,
        "ca_bundle": str(emu.ca_path),
        "timeout_seconds": 10,
        "max_retry_wait_seconds": 30,
    }
    section.update(changes)
    return section


def graph_config(
    emu: Any, tmp_path: Path, *, m365: dict[str, Any] | None = None, mode: str = "workbook"
) -> Config:
    workbook = {
        "backend": "graph",
        "site_host": SITE_HOST,
        "site_path": SITE_PATH,
        "path": REGISTER_PATH,
        "mode": mode,
    }
    data = merge(
        BASE_CONFIG,
        {
            "state": {"path": str(tmp_path / "state")},
            "m365": m365 or m365_section(emu),
            "intake": {"mailbox": {"backend": "graph", "address": MAILBOX}, "forms": None},
            "register": {"workbook": workbook},
            "sending": {"sender": {"backend": "graph", "address": MAILBOX}},
            "compliance": None,
        },
    )
    return parse_config(data, source=tmp_path / "config.toml")


class SleepRecorder:
    """Stands in for ``time.sleep`` in the retry policy: records waits, waits for none."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class GraphSetup:
    """An emulator with our app and mailbox, a config pointing at it, and a ledger."""

    emu: Any
    config: Config
    ledger: Ledger
    sleeps: SleepRecorder = field(default_factory=SleepRecorder)

    def mailbox(self) -> GraphMailbox:
        assert self.config.intake.mailbox is not None
        box = GraphMailbox.from_config(
            cast(Any, self.config.intake.mailbox), self.config, self.ledger
        )
        box.http.sleep = self.sleeps
        return box

    def sender(self) -> GraphSender:
        sender = GraphSender.from_config(
            cast(Any, self.config.sending.sender), self.config, self.ledger
        )
        sender.http.sleep = self.sleeps
        return sender

    def workbook(self) -> GraphWorkbook:
        book = GraphWorkbook.from_config(
            cast(Any, self.config.register.workbook), self.config, self.ledger
        )
        book.http.sleep = self.sleeps
        return book

    def put_workbook(
        self, tables: dict[str, tuple[list[str], list[list[object]]]], path: str = REGISTER_PATH
    ) -> None:
        """An .xlsx with these tables (one sheet each) in the site's default library."""
        specs = [
            TableSpec(
                sheet=name[:31],
                table=name,
                columns=tuple(ColumnSpec(h) for h in headers),
                rows=tuple(tuple(r) for r in rows),
            )
            for name, (headers, rows) in tables.items()
        ]
        self.emu.put_file(SITE_HOST, SITE_PATH, path, xlsx_bytes(specs))

    def close(self) -> None:
        self.ledger.close()


def xlsx_bytes(specs: list[TableSpec]) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "book.xlsx"
        create_workbook(path, specs)
        return path.read_bytes()


def graph_setup(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    *,
    permissions: tuple[str, ...] = ("Mail.ReadWrite", "Mail.Send", "Sites.Selected"),
    mode: str = "workbook",
    site: bool = False,
) -> GraphSetup:
    emu = request.getfixturevalue("graph")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv(SECRET_ENV, SECRET)
    emu.add_app(CLIENT_ID, secret=SECRET, permissions=permissions)
    emu.add_mailbox(MAILBOX)
    if site:
        emu.add_site(SITE_HOST, SITE_PATH)
    config = graph_config(emu, tmp_path, mode=mode)
    return GraphSetup(emu, config, Ledger(tmp_path / "ledger.sqlite3"))


def parse(raw: bytes) -> EmailMessage:
    return cast(EmailMessage, email.message_from_bytes(raw, policy=email.policy.default))


# ---------------------------------------------------------------------------- harnesses


class GraphMailboxHarness:
    def __init__(self, setup: GraphSetup) -> None:
        self.setup = setup
        self.box = setup.mailbox()
        self.mailbox: Mailbox = self.box

    def deliver(self, raw: bytes) -> None:
        self.setup.emu.deliver(MAILBOX, raw)

    def inbox_count(self) -> int:
        return len(self.setup.emu.folder_messages(MAILBOX, "inbox"))

    def _count(self, name: str) -> int:
        try:
            return len(self.setup.emu.folder_messages(MAILBOX, name))
        except Exception:  # the folder is created on first use
            return 0

    def processed_count(self) -> int:
        return self._count("Processed")

    def quarantined_count(self) -> int:
        return self._count("Quarantine")

    def close(self) -> None:
        self.box.close()
        self.setup.close()


def graph_mailbox(tmp_path: Path, request: pytest.FixtureRequest) -> GraphMailboxHarness:
    return GraphMailboxHarness(graph_setup(tmp_path, request))


class GraphSenderHarness:
    idempotent_resend = True

    def __init__(self, setup: GraphSetup) -> None:
        self.setup = setup
        self.graph_sender = setup.sender()
        self.sender: MailSender = self.graph_sender

    def sent(self) -> list[EmailMessage]:
        """What left the mailbox, as MIME: read back from Sent Items with ``$value``."""
        out = []
        for entry in self.setup.emu.sent_messages(MAILBOX):
            response = self.graph_sender.http.request(
                "GET",
                f"users/{MAILBOX}/messages/{entry['id']}/$value",
                _observe_call(),
            )
            out.append(parse(response.content))
        return out

    def close(self) -> None:
        self.graph_sender.close()
        self.setup.close()


def _observe_call() -> Any:
    from connectors.graph_http import Call

    return Call(what="read a sent message back (test)")


def graph_sender(tmp_path: Path, request: pytest.FixtureRequest) -> GraphSenderHarness:
    return GraphSenderHarness(graph_setup(tmp_path, request))


class GraphWorkbookHarness:
    def __init__(self, setup: GraphSetup) -> None:
        self.setup = setup
        self.graph_workbook = setup.workbook()
        self.workbook: Workbook = self.graph_workbook
        self._tables: dict[str, tuple[list[str], list[list[object]]]] = {}

    def create_table(self, table: str, headers: list[str], rows: list[list[object]]) -> None:
        self._tables[table] = (headers, rows)
        self.setup.put_workbook(self._tables)

    def lock(self) -> None:
        self.setup.emu.set_file_locked(SITE_HOST, SITE_PATH, REGISTER_PATH, True)

    def unlock(self) -> None:
        self.setup.emu.set_file_locked(SITE_HOST, SITE_PATH, REGISTER_PATH, False)

    def close(self) -> None:
        self.graph_workbook.close()
        self.setup.close()


def graph_workbook(tmp_path: Path, request: pytest.FixtureRequest) -> GraphWorkbookHarness:
    return GraphWorkbookHarness(graph_setup(tmp_path, request, site=True))


def graph_file_workbook(tmp_path: Path, request: pytest.FixtureRequest) -> GraphWorkbookHarness:
    """The same contract in ``mode = "file"`` (download, openpyxl, If-Match upload)."""
    return GraphWorkbookHarness(graph_setup(tmp_path, request, mode="file", site=True))


def read_register(setup: GraphSetup, table: str = "Concerns") -> list[dict[str, Any]]:
    """The register table as stored in the emulator's file (bypassing the backend)."""
    import openpyxl

    book = openpyxl.load_workbook(
        io.BytesIO(setup.emu.get_file(SITE_HOST, SITE_PATH, REGISTER_PATH))
    )
    for ws in book.worksheets:
        for tbl in ws.tables.values():
            if tbl.displayName == table:
                rows = list(ws[tbl.ref])
                headers = [c.value for c in rows[0]]
                return [
                    dict(zip(headers, [c.value for c in r], strict=True))
                    for r in rows[1:]
                    if any(c.value not in (None, "") for c in r)
                ]
    raise KeyError(table)
