"""The connector boundary: one Protocol per kind of backend, in the domain's words.

``service/`` imports only this module from ``connectors``. A backend is one module that
implements one of these Protocols and raises only ``service.errors`` exceptions.
"""

from __future__ import annotations

import email.policy
import email.utils
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Literal, Protocol, runtime_checkable

# ---------------------------------------------------------------------------- mail in


@dataclass(frozen=True)
class InboundItem:
    """One message as a mailbox holds it.

    ``item_id`` is the backend's stable id for the message (file name, IMAP ``UIDVALIDITY:UID``,
    Graph immutable id); the pipeline passes it back to ``fetch``/``mark_processed``/``quarantine``.
    ``raw`` is the RFC 5322 message as bytes.
    """

    item_id: str
    raw: bytes
    received_at: datetime | None = None
    web_link: str | None = None
    # Set when the backend could not take the item at all (too big, unreadable file): the
    # pipeline quarantines it and tells the DSP, so nothing is set aside silently.
    problem: str | None = None


@runtime_checkable
class Mailbox(Protocol):
    """The intake mailbox. Never uses the read flag as the queue: people open the mailbox too."""

    def fetch_new(self) -> Iterator[InboundItem]:
        """Yield items that arrived since the last call.

        A backend with a cursor (delta link, UID) saves it only once the consumer has asked for
        the item after a page, so a crash replays rather than skips. Replays are expected: the
        ledger de-duplicates by ``item_id``.
        """
        ...

    def fetch(self, item_id: str) -> InboundItem:
        """Fetch one item again by id (to resume after a crash). Raises ``InputError`` if gone."""
        ...

    def mark_processed(self, item_id: str) -> None:
        """Move the item out of the intake folder into ``Processed``. Idempotent."""
        ...

    def quarantine(self, item_id: str, reason: str) -> None:
        """Move the item to ``Quarantine`` with a reason a person can read. Idempotent."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------- mail out


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message (the board report's workbook). ``filename`` is ours, never
    taken from inbound mail."""

    filename: str
    content: bytes
    content_type: str = "application/octet-stream"  # "maintype/subtype"; text/* is UTF-8


@dataclass(frozen=True)
class OutboundMessage:
    """An e-mail the service sends. ``message_id`` is stable for a given purpose, so a retry
    after an unclear failure is recognisable (senders that can check use it to send once)."""

    message_id: str  # "<…@…>" form
    sender: str
    to: tuple[str, ...]
    subject: str
    text: str
    html: str
    cc: tuple[str, ...] = ()
    high_importance: bool = False
    reply_to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    date: datetime | None = None
    attachments: tuple[Attachment, ...] = ()

    def to_email(self) -> EmailMessage:
        """The MIME form: multipart/alternative with text then HTML (inside multipart/mixed when
        there are attachments); auto-generated headers."""
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["Message-ID"] = self.message_id
        msg["Date"] = (
            email.utils.format_datetime(self.date)
            if self.date
            else (email.utils.formatdate(localtime=False, usegmt=True))
        )
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        if self.cc:
            msg["Cc"] = ", ".join(self.cc)
        if self.reply_to:
            msg["Reply-To"] = self.reply_to
        msg["Subject"] = self.subject
        # RFC 3834: tell other systems not to auto-reply to us (loop protection).
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Auto-Response-Suppress"] = "All"
        if self.high_importance:
            msg["Importance"] = "High"
            msg["X-Priority"] = "1 (Highest)"
        for name, value in self.headers.items():
            del msg[name]  # replace, never a second copy of a standard header
            msg[name] = value
        msg.set_content(self.text)
        msg.add_alternative(self.html, subtype="html")
        for attachment in self.attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            msg.add_attachment(
                attachment.content,
                maintype=maintype,
                subtype=subtype or "octet-stream",
                filename=attachment.filename,
                params={"charset": "utf-8"} if maintype == "text" else {},
            )
        return msg


@runtime_checkable
class MailSender(Protocol):
    def send(self, message: OutboundMessage) -> None:
        """Send once: where the backend can tell, a ``message_id`` already sent is skipped."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------- workbooks


@dataclass(frozen=True)
class Table:
    """An Excel table read by header name.

    ``rows`` are dicts keyed by header; values are ``str``, ``int``, ``float``, ``bool``,
    ``datetime``/``date`` or ``None`` (Graph gives dates as Excel serial floats; the domain
    copes with both). A formula cell reads as the value Excel last saved for it, or as an
    ``UnsavedFormula`` when none was saved. ``row_numbers`` are 1-based sheet row numbers,
    for messages to people ("row 12"), never for writing.
    """

    name: str
    headers: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    row_numbers: tuple[int, ...] = ()
    sheet: str = ""


class UnsavedFormula(str):
    """A formula cell whose result was never saved: the file was written by a program that
    does not calculate (``init``, other scripts) and nobody has saved it in Excel since.

    Its text is the formula (``"=TODAY()+3"``), so code that only wants text still works; the
    domain recognises it and reports it instead of reading the formula as data.
    """

    __slots__ = ()


@dataclass(frozen=True)
class Formula:
    """An Excel formula that ``init`` lays out as a real formula (``TableSpec`` rows only;
    ``append_rows``/``update_cells`` write text, never formulas). ``text`` starts with ``=``."""

    text: str


class OptionalColumn(str):
    """A row key (in ``append_rows``) for a column that a table laid out by an earlier version
    may lack: where the table has no such header the value is left out, not an error."""

    __slots__ = ()


@dataclass(frozen=True)
class CellUpdate:
    """Write ``value`` into ``column`` of data row ``row_index`` (0-based, as last read), only
    if that cell is empty and the row still has the ``expect`` values (nobody sorted since).

    ``overwrite`` replaces what the cell holds: only for columns the service owns (such as
    "Last reminded"), never a person's cell. The ``expect`` guard applies all the same."""

    column: str
    value: Any
    row_index: int
    expect: Mapping[str, Any] = field(default_factory=dict)
    overwrite: bool = False


@runtime_checkable
class Workbook(Protocol):
    """An Excel workbook with tables that people edit too. People's edits always win."""

    def read_table(self, table: str) -> Table:
        """Read a table by name. ``InputError`` names the file and table if it is missing."""
        ...

    def append_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], *, key_column: str | None = None
    ) -> None:
        """Append rows (dicts by header) at the end of the table, extending it.

        Columns not in a row are left empty. Text that Excel would read as a formula is written
        as text. Raises ``LockedError`` when the file is open or locked elsewhere.
        ``key_column`` names the column whose values identify rows: a backend whose append is
        not atomic (Graph ``rows/add``) reads it back after an unclear failure before retrying.
        """
        ...

    def find_rows(self, table: str, column: str, values: Sequence[str]) -> dict[str, int]:
        """Which of ``values`` are in ``column``: value → 1-based sheet row number."""
        ...

    def update_cells(self, table: str, updates: Sequence[CellUpdate]) -> int:
        """Fill empty cells (a filled cell is left alone unless the update says ``overwrite``,
        for service-owned columns); a row whose ``expect`` values no longer match (someone
        sorted or edited since the read) is skipped. Returns how many were written."""
        ...

    def writable(self) -> str | None:
        """A cheap pre-check: ``None`` if a write could go ahead now, else why not."""
        ...

    def ensure_table(self, spec: TableSpec) -> bool:
        """Add ``spec``'s sheet and table (header row only) if the workbook has no table of
        that name; True if it was added. A table that exists is left exactly as it is (its
        columns, their order, rows and formatting are people's). Used to upgrade a workbook
        made by an earlier version (the register's ``Chronology``). ``LockedError`` when the
        file is open elsewhere (local) or locked."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------- set-up and checks


@dataclass(frozen=True)
class ColumnSpec:
    """A column of a workbook the service lays out (``init``).

    ``owner`` says who writes it: the service (written once at intake) or a person (the DSP,
    a manager). ``kind`` drives number format and validation; ``choice`` gets a drop-down.
    """

    header: str
    kind: Literal["text", "long_text", "date", "datetime", "number", "choice", "hidden"] = "text"
    choices: tuple[str, ...] = ()
    width: float | None = None
    owner: Literal["service", "person"] = "service"
    # An Excel calculated column (formula without "="): Excel, and the xlsx backend, fill it
    # into every row added to the table.
    formula: str = ""


@dataclass(frozen=True)
class TableSpec:
    """One sheet holding one Excel table, with optional starting rows."""

    sheet: str
    table: str
    columns: tuple[ColumnSpec, ...]
    rows: tuple[tuple[Any, ...], ...] = ()
    freeze: str = "A2"  # the top-left cell that scrolls: "A2" freezes the header row only
    row_height: float | None = None  # points, for every data row (None: the application's)
    header_height: float | None = None


@dataclass(frozen=True)
class CheckResult:
    """One line of ``prevent-service check``: a capability, whether it works, what to fix."""

    name: str
    ok: bool
    detail: str = ""


@runtime_checkable
class ProvisionableWorkbook(Protocol):
    """A workbook backend that can make its file where the config says (``provision``)."""

    def provision(self, specs: Sequence[TableSpec]) -> Iterator[CheckResult]:
        """Make the file (and the folders on its path) laid out as ``specs`` if it is missing.
        An existing file is left alone, byte for byte. One line per folder and file."""
        ...


@runtime_checkable
class WaitingMailbox(Protocol):
    """A mailbox that leaves items for the next poll on purpose (a file still being written),
    so the cycle's summary can say so instead of looking as if they were lost."""

    def waiting(self) -> tuple[int, str]:
        """How many items its last ``fetch_new`` left for the next poll, and why (plain
        words, no names: "arrived in the last 2s and may still be being written")."""
        ...


@runtime_checkable
class ProvisionableMailbox(Protocol):
    """A mailbox backend that can make the folders it moves mail into (``provision``)."""

    def provision(self) -> Iterator[CheckResult]:
        """Make the Processed and Quarantine folders if missing. One line per folder."""
        ...


def read_rows_where(workbook: Workbook, table: str, column: str, values: Sequence[str]) -> Table:
    """The rows of ``table`` whose ``column`` holds one of ``values`` (trimmed, any case), with
    every column: a backend that can find them without reading the whole table (the local
    xlsx one streams the sheet) does; others read the table and filter it here."""
    reader = getattr(workbook, "read_rows_where", None)
    if reader is not None:
        result: Table = reader(table, column, values)
        return result
    return rows_where(workbook.read_table(table), column, values)


def rows_where(table: Table, column: str, values: Sequence[str]) -> Table:
    """``table`` with only the rows whose ``column`` holds one of ``values`` (trimmed, any
    case; the header matched as written, else ignoring case)."""
    header = (
        column
        if column in table.headers
        else next((h for h in table.headers if h.casefold() == column.casefold()), column)
    )
    wanted = {v.strip().casefold() for v in values}
    picked = [
        i
        for i, row in enumerate(table.rows)
        if str(row.get(header) or "").strip().casefold() in wanted
    ]
    numbers = tuple(table.row_numbers[i] for i in picked) if table.row_numbers else ()
    return replace(table, rows=tuple(table.rows[i] for i in picked), row_numbers=numbers)


def rows_matching(table: Table, column: str, match: Callable[[Any], bool]) -> Table:
    """``table`` with only the rows whose ``column`` value passes ``match`` (the header
    matched as written, else ignoring case)."""
    header = (
        column
        if column in table.headers
        else next((h for h in table.headers if h.casefold() == column.casefold()), column)
    )
    picked = [i for i, row in enumerate(table.rows) if match(row.get(header))]
    numbers = tuple(table.row_numbers[i] for i in picked) if table.row_numbers else ()
    return replace(table, rows=tuple(table.rows[i] for i in picked), row_numbers=numbers)


def read_rows_matching(
    workbook: Workbook,
    table: str,
    column: str,
    match: Callable[[Any], bool],
    columns: Sequence[str],
) -> Table:
    """The rows of ``table`` whose ``column`` value passes ``match``, with at least
    ``columns``: a backend that can find them without reading every row (the local xlsx one
    searches the sheet's bytes) does; others read ``columns`` and filter here."""
    reader = getattr(workbook, "read_rows_matching", None)
    if reader is not None and not match(None):  # (rows blank in ``columns`` are left out)
        result: Table = reader(table, column, match)
        return result
    return rows_matching(read_columns(workbook, table, columns), column, match)


def read_columns(workbook: Workbook, table: str, columns: Sequence[str]) -> Table:
    """``table`` for a caller that needs only ``columns``: a backend that can read less (the
    local xlsx one streams just those columns, rows blank in all of them left out) does;
    others give the whole table (extra columns are harmless to such a caller)."""
    reader = getattr(workbook, "read_columns", None)
    if reader is None:
        return workbook.read_table(table)
    result: Table = reader(table, columns)
    return result
