"""In-memory backends: faithful to the Protocols, for unit tests and dry runs.

They follow the same rules as the real backends (ids are stable, ``mark_processed`` and
``quarantine`` are idempotent, a sent ``message_id`` is not sent twice, cells are fitted and only
empty cells are filled) so that a test passing here means something. Each has ``fail_next``
hooks so tests can inject a backend failure at a precise step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from connectors.base import (
    CellUpdate,
    Formula,
    InboundItem,
    OptionalColumn,
    OutboundMessage,
    Table,
    TableSpec,
    UnsavedFormula,
)
from connectors.xlsx import (
    find_header,
    is_blank,
    key_text,
    missing_column,
    new_keys_only,
    to_cell_value,
)
from service.errors import InputError, LockedError, PreventServiceError

if TYPE_CHECKING:
    from service.config import Config, MemoryMailboxConfig, MemorySenderConfig, MemoryWorkbookConfig
    from service.ledger import Ledger


# ------------------------------------------------------------------ mailbox


class MemoryMailbox:
    """A mailbox with ``inbox``, ``processed`` and ``quarantined`` collections.

    ``fetch_new`` yields each delivered item once per instance (like a cursor); items left in
    the inbox are resumed through ``fetch(item_id)``, as after a crash.
    """

    def __init__(self) -> None:
        self.inbox: dict[str, InboundItem] = {}
        self.processed: dict[str, InboundItem] = {}
        self.quarantined: dict[str, tuple[InboundItem, str]] = {}
        self._yielded: set[str] = set()
        self._counter = 0
        self.fail_next: PreventServiceError | None = None  # raised by the next call, once
        self.closed = False

    @classmethod
    def from_config(
        cls, section: MemoryMailboxConfig, config: Config, ledger: Ledger | None = None
    ) -> MemoryMailbox:
        return cls()

    def deliver(
        self, raw: bytes, item_id: str | None = None, received_at: datetime | None = None
    ) -> str:
        """A message arrives; returns its item id."""
        if item_id is None:
            self._counter += 1
            item_id = f"mem-{self._counter:06d}"
        self.inbox[item_id] = InboundItem(
            item_id=item_id,
            raw=bytes(raw),
            received_at=received_at or datetime.now(UTC),
            web_link=f"memory://inbox/{item_id}",
        )
        return item_id

    def _maybe_fail(self) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    def fetch_new(self) -> Iterator[InboundItem]:
        self._maybe_fail()
        for item_id in list(self.inbox):
            if item_id in self._yielded or item_id not in self.inbox:
                continue
            self._yielded.add(item_id)
            yield self.inbox[item_id]

    def fetch(self, item_id: str) -> InboundItem:
        self._maybe_fail()
        for place in (self.inbox, self.processed):
            if item_id in place:
                return place[item_id]
        if item_id in self.quarantined:
            return self.quarantined[item_id][0]
        raise InputError(f"mailbox item {item_id} not found (moved or deleted)")

    def mark_processed(self, item_id: str) -> None:
        self._maybe_fail()
        if item_id in self.processed:
            return
        if item_id not in self.inbox:
            raise InputError(f"mailbox item {item_id} not found in the inbox (moved or deleted)")
        self.processed[item_id] = self.inbox.pop(item_id)

    def quarantine(self, item_id: str, reason: str) -> None:
        self._maybe_fail()
        if item_id in self.quarantined:
            return
        for place in (self.inbox, self.processed):
            if item_id in place:
                self.quarantined[item_id] = (place.pop(item_id), reason)
                return
        raise InputError(f"mailbox item {item_id} not found (moved or deleted)")

    def close(self) -> None:
        self.closed = True


# ------------------------------------------------------------------ sender


class MemorySender:
    """Keeps what was sent in ``.sent``; a ``message_id`` already sent is skipped."""

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []
        self.fail_next: PreventServiceError | None = None  # raised by the next send, once
        self.fail_after_next: PreventServiceError | None = None  # sent, then raised (a timeout)
        self.closed = False

    @classmethod
    def from_config(
        cls, section: MemorySenderConfig, config: Config, ledger: Ledger | None = None
    ) -> MemorySender:
        return cls()

    def send(self, message: OutboundMessage) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if all(m.message_id != message.message_id for m in self.sent):
            message.to_email()  # fails like a real sender would on a message it cannot build
            self.sent.append(message)
        if self.fail_after_next is not None:
            exc, self.fail_after_next = self.fail_after_next, None
            raise exc

    def close(self) -> None:
        self.closed = True


# ------------------------------------------------------------------ workbook


@dataclass
class _MemTable:
    name: str
    headers: list[str]
    rows: list[list[Any]]
    sheet: str


class MemoryWorkbook:
    """Tables in memory, with the xlsx backend's rules: header matching, fitted text,
    datetimes in local time to the second, only empty cells filled (unless ``overwrite``),
    ``locked`` → ``LockedError``.

    Nothing calculates here: a ``Formula`` in ``add_table`` rows (or an ``UnsavedFormula``)
    reads as an ``UnsavedFormula``, as in an .xlsx file that ``init`` wrote and nobody has
    saved in Excel since. A test that wants a calculated value adds the value.

    Rows are on sheet rows 2, 3, … (a header on row 1), as in a laid-out register.
    """

    def __init__(self, *, tz: tzinfo = UTC, name: str = "memory.xlsx") -> None:
        self.tz = tz
        self.name = name
        self.tables: dict[str, _MemTable] = {}
        self.locked = False
        self.writes = 0  # how many writes changed something (a save, for the xlsx backend)
        self.fail_next: PreventServiceError | None = None  # raised by the next write, once
        self.fail_after_next: PreventServiceError | None = None  # written, then raised (a 504)
        self.closed = False

    @classmethod
    def from_config(
        cls, section: MemoryWorkbookConfig, config: Config, ledger: Ledger | None = None
    ) -> MemoryWorkbook:
        return cls(tz=config.organisation.tz)

    def add_table(
        self,
        name: str,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]] = (),
        *,
        sheet: str | None = None,
    ) -> None:
        width = len(headers)
        self.tables[name] = _MemTable(
            name=name,
            headers=list(headers),
            rows=[[self._cell(v) for v in (*row, *([None] * width))][:width] for row in rows],
            sheet=sheet or name,
        )

    def _cell(self, value: Any) -> Any:
        if isinstance(value, Formula | UnsavedFormula):
            return UnsavedFormula(value.text if isinstance(value, Formula) else value)
        return to_cell_value(value, self.tz)

    # -- Workbook protocol -------------------------------------------------------------

    def read_table(self, table: str) -> Table:
        t = self._table(table)
        numbered = self._numbered(t)
        return Table(
            name=t.name,
            headers=tuple(t.headers),
            rows=tuple(dict(zip(t.headers, row, strict=True)) for _, row in numbered),
            row_numbers=tuple(n for n, _ in numbered),
            sheet=t.sheet,
        )

    def append_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], *, key_column: str | None = None
    ) -> None:
        """With ``key_column``, rows whose key is already in the table are skipped."""
        t = self._table(table)
        if key_column is not None:
            current = [dict(zip(t.headers, row, strict=True)) for _, row in self._numbered(t)]
            rows = new_keys_only(self.name, t.name, t.headers, current, rows, key_column)
        if not rows:
            return
        new: list[list[Any]] = []
        for row in rows:
            values: list[Any] = [None] * len(t.headers)
            for key, value in row.items():
                index = find_header(t.headers, key)
                if index is None:
                    if isinstance(key, OptionalColumn):
                        continue  # a column new registers have and this older one lacks
                    raise missing_column(self.name, t.name, key, t.headers)
                values[index] = to_cell_value(value, self.tz, column=key)
            new.append(values)
        self._before_write()
        while t.rows and all(is_blank(v) for v in t.rows[-1]):
            t.rows.pop()  # like the xlsx backend: append after the last non-blank row
        t.rows.extend(new)
        self._after_write()

    def find_rows(self, table: str, column: str, values: Sequence[str]) -> dict[str, int]:
        t = self._table(table)
        index = find_header(t.headers, column)
        if index is None:
            raise missing_column(self.name, t.name, column, t.headers)
        wanted = {key_text(v): v for v in values}
        found: dict[str, int] = {}
        for number, row in self._numbered(t):
            text = key_text(row[index])
            if text in wanted and wanted[text] not in found:
                found[wanted[text]] = number
        return found

    def update_cells(self, table: str, updates: Sequence[CellUpdate]) -> int:
        t = self._table(table)
        if not updates:
            return 0
        self._before_write()
        numbered = self._numbered(t)
        written = 0
        for upd in updates:
            target = find_header(t.headers, upd.column)
            if target is None:
                raise missing_column(self.name, t.name, upd.column, t.headers)
            if not 0 <= upd.row_index < len(numbered):
                continue
            row = numbered[upd.row_index][1]
            if not self._expect_matches(t, row, upd.expect):
                continue
            if not upd.overwrite and not is_blank(row[target]):
                continue
            value = to_cell_value(upd.value, self.tz, column=upd.column)
            if upd.overwrite and key_text(row[target]) == key_text(value):
                continue  # already there: nothing to write
            row[target] = value
            written += 1
        if written:
            self._after_write()
        return written

    def writable(self) -> str | None:
        if self.locked:
            return f"{self.name} is open in Excel (locked); will retry"
        return None

    def ensure_table(self, spec: TableSpec) -> bool:
        if any(name.casefold() == spec.table.casefold() for name in self.tables):
            return False
        self._before_write()
        sheets = {t.sheet.casefold() for t in self.tables.values()}
        sheet, n = spec.sheet, 1
        while sheet.casefold() in sheets:  # a sheet of that name holding something else
            n += 1
            sheet = f"{spec.sheet} {n}"
        self.add_table(spec.table, [c.header for c in spec.columns], spec.rows, sheet=sheet)
        self._after_write()
        return True

    def close(self) -> None:
        self.closed = True

    # -- helpers -----------------------------------------------------------------------

    def _table(self, table: str) -> _MemTable:
        if table in self.tables:
            return self.tables[table]
        for name, t in self.tables.items():
            if name.casefold() == table.casefold():
                return t
        raise InputError(
            f"{self.name} has no table named {table!r}; tables in it: "
            f"{', '.join(self.tables) or 'none'}"
        )

    @staticmethod
    def _numbered(t: _MemTable) -> list[tuple[int, list[Any]]]:
        return [
            (number, row)
            for number, row in enumerate(t.rows, start=2)
            if not all(is_blank(v) for v in row)
        ]

    def _expect_matches(self, t: _MemTable, row: list[Any], expect: Mapping[str, Any]) -> bool:
        for column, expected in expect.items():
            index = find_header(t.headers, column)
            if index is None:
                raise missing_column(self.name, t.name, column, t.headers)
            if key_text(row[index]) != key_text(expected):
                return False
        return True

    def _before_write(self) -> None:
        if self.locked:
            raise LockedError(f"{self.name} is open in Excel (locked); will retry", retry_after=60)
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    def _after_write(self) -> None:
        self.writes += 1
        if self.fail_after_next is not None:
            exc, self.fail_after_next = self.fail_after_next, None
            raise exc
