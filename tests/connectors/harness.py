"""Contract-test harnesses: one test body runs over every backend of a kind.

A backend provides a factory ``function(tmp_path, request) -> harness`` and one line in
``tests/connectors/conftest.py``. The harness gives the test a way to act as the outside world
(a message arrives, a person opens the workbook) and to observe what really happened.
This module also holds the factories for the local backends (memory, folder, outbox, xlsx).
"""

from __future__ import annotations

import email
import email.policy
import os
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol, cast

import pytest

from connectors.base import ColumnSpec, Mailbox, MailSender, TableSpec, Workbook
from connectors.folder import FolderMailbox
from connectors.memory import MemoryMailbox, MemorySender, MemoryWorkbook
from connectors.outbox import OutboxSender
from connectors.xlsx import XlsxWorkbook, create_workbook

# ---------------------------------------------------------------------------- the Protocols


class MailboxHarness(Protocol):
    mailbox: Mailbox

    def deliver(self, raw: bytes) -> None:
        """A new message arrives in the intake folder."""
        ...

    def inbox_count(self) -> int:
        """Messages still in the intake folder."""
        ...

    def processed_count(self) -> int: ...

    def quarantined_count(self) -> int: ...

    def close(self) -> None: ...


class SenderHarness(Protocol):
    sender: MailSender
    idempotent_resend: bool  # a second send of the same message_id is skipped

    def sent(self) -> list[EmailMessage]:
        """What actually went out, parsed, oldest first."""
        ...

    def close(self) -> None: ...


class WorkbookHarness(Protocol):
    workbook: Workbook

    def create_table(self, table: str, headers: list[str], rows: list[list[object]]) -> None: ...

    def lock(self) -> None:
        """As if a person had the file open (or it were locked elsewhere)."""
        ...

    def unlock(self) -> None: ...

    def close(self) -> None: ...


def parse(raw: bytes) -> EmailMessage:
    return cast(EmailMessage, email.message_from_bytes(raw, policy=email.policy.default))


# ---------------------------------------------------------------------------- memory


class MemoryMailboxHarness:
    def __init__(self) -> None:
        self.box = MemoryMailbox()
        self.mailbox: Mailbox = self.box

    def deliver(self, raw: bytes) -> None:
        self.box.deliver(raw)

    def inbox_count(self) -> int:
        return len(self.box.inbox)

    def processed_count(self) -> int:
        return len(self.box.processed)

    def quarantined_count(self) -> int:
        return len(self.box.quarantined)

    def close(self) -> None:
        self.box.close()


def memory_mailbox(tmp_path: Path, request: pytest.FixtureRequest) -> MailboxHarness:
    return MemoryMailboxHarness()


class MemorySenderHarness:
    idempotent_resend = True

    def __init__(self) -> None:
        self.memory = MemorySender()
        self.sender: MailSender = self.memory

    def sent(self) -> list[EmailMessage]:
        return [parse(m.to_email().as_bytes()) for m in self.memory.sent]

    def close(self) -> None:
        self.memory.close()


def memory_sender(tmp_path: Path, request: pytest.FixtureRequest) -> SenderHarness:
    return MemorySenderHarness()


class MemoryWorkbookHarness:
    def __init__(self) -> None:
        self.memory = MemoryWorkbook()
        self.workbook: Workbook = self.memory

    def create_table(self, table: str, headers: list[str], rows: list[list[object]]) -> None:
        self.memory.add_table(table, headers, rows)

    def lock(self) -> None:
        self.memory.locked = True

    def unlock(self) -> None:
        self.memory.locked = False

    def close(self) -> None:
        self.memory.close()


def memory_workbook(tmp_path: Path, request: pytest.FixtureRequest) -> WorkbookHarness:
    return MemoryWorkbookHarness()


# ---------------------------------------------------------------------------- folder / outbox


class FolderMailboxHarness:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.box = FolderMailbox(folder, max_message_bytes=1024 * 1024)
        self.mailbox: Mailbox = self.box
        self._n = 0

    def deliver(self, raw: bytes) -> None:
        """Write the file as a mail rule would (temp name, then rename), already settled."""
        self._n += 1
        name = f"{self._n:04d}-message.eml"
        tmp = self.folder / f".{name}.part"
        tmp.write_bytes(raw)
        os.replace(tmp, self.folder / name)
        settled = (self.folder / name).stat().st_mtime - 10
        os.utime(self.folder / name, (settled, settled))

    def inbox_count(self) -> int:
        return sum(1 for p in self.folder.glob("*.eml") if p.is_file())

    def processed_count(self) -> int:
        return sum(1 for p in (self.folder / "processed").iterdir() if p.is_file())

    def quarantined_count(self) -> int:
        return sum(
            1
            for p in (self.folder / "quarantine").iterdir()
            if p.is_file() and not p.name.endswith(".reason.txt")
        )

    def close(self) -> None:
        self.box.close()


def folder_mailbox(tmp_path: Path, request: pytest.FixtureRequest) -> MailboxHarness:
    return FolderMailboxHarness(tmp_path / "inbox")


class OutboxSenderHarness:
    idempotent_resend = True

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.outbox = OutboxSender(folder)
        self.sender: MailSender = self.outbox

    def sent(self) -> list[EmailMessage]:
        files = sorted(self.folder.glob("*.eml"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [parse(p.read_bytes()) for p in files]

    def close(self) -> None:
        self.outbox.close()


def outbox_sender(tmp_path: Path, request: pytest.FixtureRequest) -> SenderHarness:
    return OutboxSenderHarness(tmp_path / "outbox")


# ---------------------------------------------------------------------------- xlsx


class XlsxWorkbookHarness:
    """A real .xlsx laid out by ``create_workbook``; ``lock`` creates Excel's owner file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.xlsx = XlsxWorkbook(path, lock_wait_seconds=0.2)
        self.workbook: Workbook = self.xlsx
        self._specs: list[TableSpec] = []

    def create_table(self, table: str, headers: list[str], rows: list[list[object]]) -> None:
        spec = TableSpec(
            sheet=table[:31],
            table=table,
            columns=tuple(ColumnSpec(h) for h in headers),
            rows=tuple(tuple(r) for r in rows),
        )
        self._specs = [s for s in self._specs if s.table != table] + [spec]
        if self.path.exists():
            self.path.unlink()
        create_workbook(self.path, self._specs)

    @property
    def owner_file(self) -> Path:
        return self.path.with_name("~$" + self.path.name)

    def lock(self) -> None:
        # What Excel leaves beside an open workbook: a small hidden owner file.
        self.owner_file.write_bytes(b"\x0bExample User" + b"\x00" * 40)

    def unlock(self) -> None:
        self.owner_file.unlink(missing_ok=True)

    def close(self) -> None:
        self.xlsx.close()


def xlsx_workbook(tmp_path: Path, request: pytest.FixtureRequest) -> WorkbookHarness:
    return XlsxWorkbookHarness(tmp_path / "workbooks" / "register.xlsx")


def rows_as_lists(rows: Sequence[dict[str, Any]], headers: Sequence[str]) -> list[list[Any]]:
    return [[row.get(h) for h in headers] for row in rows]
