"""Excel workbooks on SharePoint over Microsoft Graph, in one of two modes.

``mode = "workbook"`` (default): the Excel workbook API. Each operation opens a short
persistent session (``createSession``), works, and closes it; during an intake cycle
(``begin_cycle``/``end_cycle``) one session serves the cycle's lock probe and writes, and is
closed when the cycle ends. One request at a time per workbook (a lock), all rows of a burst in
one ``rows/add``, values placed by header name after reading the table's header row (in a
cycle, read in the same round trip as the cycle's ``createSession``). ``rows/add`` is not
idempotent: after an unclear failure (504, timeout, dropped connection) the key column is read
back and only the missing rows are added.
Cells are filled by a range ``PATCH`` on that one cell, never a whole-file upload.

``mode = "file"``: for tenants that refuse the workbook API to the app (possible with
``Sites.Selected``). Download the file and its ETag, edit it with the local xlsx backend's
rules (``connectors.xlsx``: formula text, table extension, features openpyxl would drop), and
upload it with ``If-Match`` on that ETag: a 412 means someone saved in between, so re-read and
try again; a 423 means someone has it open, so ``LockedError`` and the row stays pending.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from time import monotonic
from typing import Any, TypeVar
from urllib.parse import quote

from openpyxl.utils import column_index_from_string, get_column_letter

from connectors.base import CellUpdate, CheckResult, OptionalColumn, Table, TableSpec
from connectors.graph_batch import Reply, Sub
from connectors.graph_http import (
    RIDE_PREFIX,
    AmbiguousWrite,
    Call,
    GraphHttp,
    GraphNotFound,
    PreconditionFailed,
    WorkbookApiRefused,
    WorkbookSessionExpired,
    connect,
)
from connectors.xlsx import (
    XlsxWorkbook,
    find_header,
    is_blank,
    key_text,
    missing_column,
    rows_with_keys,
    to_cell_value,
)
from service.config import Config, GraphWorkbookConfig
from service.errors import (
    InputError,
    LockedError,
    PermanentError,
    PreventServiceError,
    TransientError,
)
from service.ledger import Ledger

log = logging.getLogger("prevent_service.graph")

T = TypeVar("T")

# Headers that mark the idempotency key when the caller does not name one (first match wins).
KEY_HEADERS = ("source key", "key", "id")
MAX_READBACK_ROUNDS = 3
MAX_ETAG_ROUNDS = 3
# A table unchanged by its cTag is still read in full this often: a safety net should Excel
# for the web save a change (a Forms response) to the file later than it shows it.
FULL_READ_SECONDS = 300.0
# A cTag read with the mailbox's delta is used by the same cycle's Forms read if this fresh.
RIDE_ALONG_SECONDS = 60.0

# One lock per file across every GraphWorkbook in the process (register and forms may share).
_FILE_LOCKS: dict[tuple[str, str, str], threading.Lock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(key: tuple[str, str, str]) -> threading.Lock:
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.Lock())


class UploadSessionLost(AmbiguousWrite):
    """404 from an upload URL: the session is gone (expired, dropped, or completed with the
    answer lost). Unclear, never "file not found": re-read and start the upload over."""


def graph_value(value: Any, tz: tzinfo, *, column: str) -> Any:
    """A value for the workbook API's ``values`` matrix.

    The API treats values as if typed into the cell: ``=…`` becomes a formula and ``00123`` a
    number. A leading apostrophe makes Excel keep text as text (and hide the apostrophe), so
    every text gets one. Dates and times go as ISO text (``2026-02-02 09:30:00``), which Excel
    reads as a date in every locale and, in a General cell, formats as one; a serial number
    would show as ``46055.39`` in a column nobody formatted.
    """
    cell = to_cell_value(value, tz, column=column)
    if cell is None:
        return ""
    if isinstance(cell, str):
        return "'" + cell if cell else ""
    if isinstance(cell, datetime):
        return cell.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(cell, date):
        return cell.strftime("%Y-%m-%d")
    if isinstance(cell, time):
        return cell.strftime("%H:%M:%S")
    return cell


def _read_value(value: Any) -> Any:
    """A value from Graph's ``values``: ``""`` is an empty cell; numbers stay numbers (dates
    arrive as serial floats: the domain copes with both)."""
    return None if value == "" else value


_ADDRESS = re.compile(r"^(?:(?P<sheet>'(?:[^']|'')+'|[^!]+)!)?\$?(?P<col>[A-Z]+)\$?(?P<row>\d+)")


@dataclass(frozen=True)
class _Grid:
    """A table's range as Graph returned it: ``{"address": "Register!A1:F9", "values": […]}``."""

    sheet: str
    first_col: int  # 1-based
    header_row: int  # 1-based sheet row of the header
    headers: list[str]
    body: list[list[Any]]  # data rows (incl. blank ones), as values

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str) -> _Grid:
        address = str(data.get("address") or "")
        values = data.get("values")
        match = _ADDRESS.match(address)
        if not match or not isinstance(values, list) or not values:
            raise TransientError(f"{where}: Graph sent a table range without address or values")
        sheet = match.group("sheet") or ""
        if sheet.startswith("'"):
            sheet = sheet[1:-1].replace("''", "'")
        headers = ["" if h is None else str(h) for h in values[0]]
        return cls(
            sheet=sheet,
            first_col=column_index_from_string(match.group("col")),
            header_row=int(match.group("row")),
            headers=headers,
            body=[list(r) for r in values[1:]],
        )

    def rows(self) -> list[tuple[int, dict[str, Any]]]:
        """Non-blank data rows as (sheet row, values by header)."""
        out = []
        for offset, raw in enumerate(self.body):
            values = [_read_value(v) for v in raw]
            if all(is_blank(v) for v in values):
                continue
            out.append(
                (self.header_row + 1 + offset, dict(zip(self.headers, values, strict=False)))
            )
        return out


class GraphWorkbook:
    """``connectors.base.Workbook`` for an .xlsx file in a SharePoint site's default library."""

    def __init__(
        self,
        http: GraphHttp,
        *,
        site_host: str,
        site_path: str,
        path: str,
        mode: str = "workbook",
        tz: tzinfo = UTC,
        ledger: Ledger | None = None,
    ) -> None:
        self.http = http
        self.ledger = ledger
        self.site_host = site_host
        self.site_path = "/" + site_path.strip("/")
        self.path = "/" + path.strip("/")
        self.mode = mode
        self.tz = tz
        self.name = self.path.rsplit("/", 1)[-1]
        self._lock = _file_lock((site_host.lower(), self.site_path.lower(), self.path.lower()))
        self._item: str | None = None  # "sites/{site-id}/drive/items/{item-id}"
        self._site: Any = None
        self._locked = False
        self._file_tables: dict[str, tuple[str, Table]] = {}  # file mode: name → (eTag, table)
        # workbook mode: name → (cTag, monotonic time read, table); dropped on our own writes
        self._tables: dict[str, tuple[str, float, Table]] = {}
        # workbook mode, during an intake cycle (``begin_cycle``/``end_cycle``): one session
        # for the cycle's lock probe and writes, closed when the cycle ends
        self._cycle = False
        self._kept: str | None = None
        # Tables this process appends to, and their header rows read in the same round trip
        # as a cycle's createSession (each used once, by that cycle's first append to it).
        self._appended: dict[str, str] = {}
        self._early_headers: dict[str, list[str]] = {}

    @classmethod
    def from_config(
        cls, section: GraphWorkbookConfig, config: Config, ledger: Ledger | None = None
    ) -> GraphWorkbook:
        return cls(
            connect(config.m365),
            site_host=section.site_host,
            site_path=section.site_path,
            path=section.path,
            mode=section.mode,
            tz=config.organisation.tz,
            ledger=ledger,
        )

    # -- locating the file --------------------------------------------------------------

    def _call(self, what: str, *, kind: str = "file") -> Call:
        return Call(
            what=f"{what} ({self.name} on {self.site_host}{self.site_path})",
            permission="Sites.Selected",
            kind=kind,
            subject=f"{self.path} in {self.site_host}{self.site_path}",
        )

    def site(self) -> Any:
        """The O365 ``Site`` for site host + path (``GET sites/{host}:/{path}:``), once."""
        if self._site is None:
            self._site = self.http.call(
                lambda: self.http.account.sharepoint().get_site(self.site_host, self.site_path),
                Call(
                    what=f"find the site {self.site_host}{self.site_path}",
                    permission="Sites.Selected",
                    kind="file",
                    subject=f"the site {self.site_host}{self.site_path}",
                ),
            )
        return self._site

    @property
    def _item_key(self) -> str:
        return f"graph.item:{self.site_host.lower()}:{self.site_path.lower()}:{self.path.lower()}"

    def item(self) -> str:
        """The file's Graph path, resolved by site host + path and file path once, and kept in
        the ledger so a new process asks no site or path lookups (``_same_path`` looks it up
        again when the id stops answering)."""
        if self._item is None and self.ledger is not None:
            self._item = self.ledger.get(self._item_key)
        if self._item is None:
            site = self.site()
            # O365: GET sites/{id}/drive/root:/Registers/Concern register.xlsx
            #   → {"id": "01ABC…", "name": "Concern register.xlsx", "file": {…}, …}
            found = self.http.call(
                lambda: site.get_default_document_library().get_item_by_path(self.path),
                self._call("find the file"),
            )
            if not getattr(found, "is_file", True):
                raise PermanentError(
                    f"{self.path} in {self.site_host}{self.site_path} is a folder, not a file: "
                    "check the workbook path in the config"
                )
            self._item = (
                f"sites/{quote(str(site.object_id))}/drive/items/{quote(str(found.object_id))}"
            )
            if self.ledger is not None:
                self.ledger.set(self._item_key, self._item)
        return self._item

    # -- Workbook protocol ---------------------------------------------------------------

    def read_table(self, table: str) -> Table:
        self.http.ensure_token()
        with self._lock:
            return self._same_path(lambda: self._read_table(table))

    def _read_table(self, table: str) -> Table:
        if self.mode == "file":
            return self._read_file_table(table)
        # The file's cTag (content tag) first: while it is unchanged the table is too, and an
        # idle poll of the Forms workbook is this one small request. Read before the range, so
        # a change in between shows as a new cTag next time.
        tag = self.content_tag()
        cached = self._tables.get(table.casefold())
        if (
            cached is not None
            and tag
            and cached[0] == tag
            and monotonic() - cached[1] < FULL_READ_SECONDS
        ):
            return cached[2]
        grid = self._grid(table, session=None)
        rows = grid.rows()
        result = Table(
            name=table,
            headers=tuple(grid.headers),
            rows=tuple(r for _, r in rows),
            row_numbers=tuple(n for n, _ in rows),
            sheet=grid.sheet,
        )
        self._tables[table.casefold()] = (tag, monotonic(), result)
        return result

    def content_tag(self) -> str:
        """The file's cTag: it changes when the content changes (not for renames/metadata).
        GET …/items/{id}?$select=id,cTag → {"id": "01ABC…", "cTag": "\"c:{86EB…},7\""}

        Asked to ride along with the mailbox's next delta read (one round trip for an idle
        cycle); an answer from then is used when fresh. A cTag a little old is safe: a change
        after it is seen on the next cycle, and the table read is the one that cTag belongs to
        or newer."""
        item = self.item()
        key = f"cTag of {self.name}"
        path = f"{item}?$select=id,cTag"
        self.http.want(key, path)
        ridden = self.http.take(key, max_age=RIDE_ALONG_SECONDS)
        if isinstance(ridden, Reply) and ridden.status == 200 and ridden.json().get("cTag"):
            if self.ledger is not None and self.ledger.get(RIDE_PREFIX + key) != path:
                # Read every cycle (it took a ridden answer): a new process's first delta read
                # carries it too (GraphMailbox reads these), so its first cycle saves a trip.
                self.ledger.set(RIDE_PREFIX + key, path)
            return str(ridden.json()["cTag"])
        meta = self.http.get_json(
            item, self._call("read the file's version"), params={"$select": "id,cTag"}
        )
        return str(meta.get("cTag") or "")

    def find_rows(self, table: str, column: str, values: Sequence[str]) -> dict[str, int]:
        if not values:
            return {}
        return rows_with_keys(self.read_table(table), column, values, where=self._where())

    def append_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], *, key_column: str | None = None
    ) -> None:
        if not rows:
            return
        self.http.ensure_token()
        self._tables.clear()  # Excel may save our write to the file (new cTag) a little later
        with self._lock, self._remember_lock():
            self._same_path(lambda: self._append_rows(table, rows, key_column))

    def _append_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], key_column: str | None
    ) -> None:
        if self.mode == "file":
            # The file is replaced whole, so a retry after an unclear upload must not add
            # a row twice: with a key column, rows already in the file are skipped.
            self._edit_file(lambda wb: wb.append_rows(table, rows, key_column=key_column))
            return

        tries = 0
        self._appended[table.casefold()] = table

        def add(session: str) -> None:
            # A second try runs in a new session after the first expired, perhaps during
            # the read-back after an unclear rows/add: read the key column back first.
            nonlocal tries
            tries += 1
            headers = self._headers(table, session)
            matrix = [self._row_values(table, headers, row) for row in rows]
            self._add_rows(table, headers, matrix, session, key_column, read_back_first=tries > 1)

        self._in_session(add)

    def update_cells(self, table: str, updates: Sequence[CellUpdate]) -> int:
        if not updates:
            return 0
        self.http.ensure_token()
        self._tables.clear()
        with self._lock, self._remember_lock():
            return self._same_path(lambda: self._update_cells(table, updates))

    def _update_cells(self, table: str, updates: Sequence[CellUpdate]) -> int:
        if self.mode == "file":
            return int(self._edit_file(lambda wb: wb.update_cells(table, updates)))
        return int(self._in_session(lambda session: self._update(table, updates, session)))

    def writable(self) -> str | None:
        """Whether a write could go ahead now: ``None``, or why not (someone has it open).

        Graph has no "is it open?" query, so this asks the way a write would: a workbook
        session opened and closed at once, or (file mode) an upload session with If-Match
        that is then cancelled. Two or three requests; the pipeline asks once per cycle.
        """
        try:
            self.http.ensure_token()
            with self._lock, self._remember_lock():
                self._same_path(self._probe_upload if self.mode == "file" else self._probe_session)
        except (LockedError, PermanentError, InputError) as exc:
            return str(exc)
        except TransientError as exc:
            return f"{self._where()} cannot be reached now: {exc}"
        return None

    def ensure_table(self, spec: TableSpec) -> bool:
        """Add the table when missing: in one session, a new sheet (``worksheets/add``), its
        header row (a range ``PATCH``), the table over it (``tables/add``), named (a table
        ``PATCH``) and its hidden columns hidden (``range/format``). File mode edits the file
        with the local rules. ``tables/add`` is not idempotent: after an unclear answer the
        next try finds the sheet it made (named as asked, header row ours, no table) and
        uses it rather than adding a second sheet."""
        self.http.ensure_token()
        with self._lock, self._remember_lock():
            if self.mode == "file":
                return bool(
                    self._same_path(lambda: self._edit_file(lambda wb: wb.ensure_table(spec)))
                )
            if spec.table.casefold() in self._same_path(lambda: self._table_names_strict(None)):
                return False
            return bool(
                self._same_path(lambda: self._in_session(lambda s: self._add_table(spec, s)))
            )

    def _table_names_strict(self, session: str | None) -> set[str]:
        """The table names (casefolded); unlike ``_table_names``, a failure raises."""
        headers = {"workbook-session-id": session} if session else None
        # GET …/workbook/tables?$select=name → {"value": [{"name": "Concerns"}, …]}
        data = self.http.get_json(
            f"{self.item()}/workbook/tables",
            self._call("list the tables", kind="workbook"),
            headers=headers,
            params={"$select": "name"},
        )
        return {str(t.get("name")).casefold() for t in data.get("value", []) if t.get("name")}

    def _add_table(self, spec: TableSpec, session: str) -> bool:
        headers = {"workbook-session-id": session}
        if spec.table.casefold() in self._table_names_strict(session):
            return False
        wanted = [c.header for c in spec.columns]
        # GET …/workbook/worksheets?$select=name → {"value": [{"name": "Register"}, …]}
        sheets = [
            str(w.get("name"))
            for w in self._get(
                f"{self.item()}/workbook/worksheets", "list the sheets", session
            ).get("value", [])
        ]
        taken = {name.casefold() for name in sheets}
        sheet, n = spec.sheet, 1
        last = get_column_letter(len(wanted))
        leftover: tuple[str, str | None] | None = None
        while sheet.casefold() in taken:
            # An earlier try whose worksheets/add or tables/add got no clear answer left
            # this sheet: blank, with our header row, or with an unnamed table over it.
            leftover = self._leftover(sheet, wanted, session)
            if leftover is not None:
                break
            n += 1
            sheet = f"{spec.sheet} {n}"
        quoted = quote(sheet.replace("'", "''"), safe="")
        if sheet.casefold() not in taken:
            # POST …/workbook/worksheets/add {"name": "Chronology"} → 201 {"id": "{…}", "name": …}
            self.http.request(
                "POST",
                f"{self.item()}/workbook/worksheets/add",
                self._call(f"add the sheet {sheet!r}", kind="workbook"),
                json={"name": sheet},
                headers=headers,
                retry_ambiguous=False,  # a second try meets the sheet it made (above)
            )
        if leftover is None or leftover[0] == "blank":
            # PATCH …/worksheets('Chronology')/range(address='A1:F1') {"values": [[…]]}
            self.http.request(
                "PATCH",
                f"{self.item()}/workbook/worksheets('{quoted}')/range(address='A1:{last}1')",
                self._call(f"write the header row of {sheet!r}", kind="workbook"),
                json={"values": [wanted]},
                headers=headers,
                retry_ambiguous=True,
            )
        table_id = leftover[1] if leftover is not None else None
        if table_id is None:
            table_id = self._new_table(sheet, last, spec.table, session)
        # PATCH …/workbook/tables/{id} {"name": "Chronology"} → 200 workbookTable
        self.http.request(
            "PATCH",
            f"{self.item()}/workbook/tables/{quote(table_id, safe='')}",
            self._call(f"name the table {spec.table!r}", kind="workbook"),
            json={"name": spec.table},
            headers=headers,
            retry_ambiguous=True,
        )
        for index, column in enumerate(spec.columns, start=1):
            if column.kind != "hidden" and column.width is None:
                continue
            letter = get_column_letter(index)
            fmt: dict[str, Any] = (
                {"columnHidden": True}
                if column.kind == "hidden"
                else {"columnWidth": round((column.width or 10) * 7, 1)}
            )
            # PATCH …/worksheets('Chronology')/range(address='F1')/format {"columnHidden": true}
            self.http.request(
                "PATCH",
                f"{self.item()}/workbook/worksheets('{quoted}')/range(address='{letter}1')/format",
                self._call(f"format column {letter} of {sheet!r}", kind="workbook"),
                json=fmt,
                headers=headers,
                retry_ambiguous=True,
            )
        log.info("graph: added the table %s on a new sheet of %s", spec.table, self.name)
        return True

    def _new_table(self, sheet: str, last: str, name: str, session: str) -> str:
        # POST …/workbook/tables/add {"address": "'Chronology'!A1:F1", "hasHeaders": true}
        #   → 201 {"id": "{…}", "name": "Table3", "showHeaders": true, …}
        address = "'" + sheet.replace("'", "''") + f"'!A1:{last}1"
        table = self.http.request(
            "POST",
            f"{self.item()}/workbook/tables/add",
            self._call(f"add the table {name!r}", kind="workbook"),
            json={"address": address, "hasHeaders": True},
            headers={"workbook-session-id": session},
            retry_ambiguous=False,  # not idempotent: a second try finds it (_leftover)
        ).json()
        return str(table.get("id") or table.get("name") or "")

    def _leftover(
        self, sheet: str, headers: Sequence[str], session: str
    ) -> tuple[str, str | None] | None:
        """What an earlier, unclear try left on ``sheet``: ("blank", None), ("header", None)
        or ("table", its id) for one unnamed table (``TableN``) over our header row; None
        when the sheet is something else (a person's), which is never touched."""
        quoted = quote(sheet.replace("'", "''"), safe="")
        base = f"{self.item()}/workbook/worksheets('{quoted}')"
        # GET …/worksheets('Chronology')/tables → {"value": [{"id": "{…}", "name": "Table3"}]}
        tables = self._get(f"{base}/tables", f"list the tables of {sheet!r}", session).get(
            "value", []
        )
        if len(tables) == 1 and re.fullmatch(r"Table\d+", str(tables[0].get("name") or "")):
            table_id = str(tables[0].get("id") or tables[0].get("name"))
            row = self._get(
                f"{self.item()}/workbook/tables/{quote(table_id, safe='')}/headerRowRange",
                f"read the header row on {sheet!r}",
                session,
            ).get("values") or [[]]
            return ("table", table_id) if [str(v) for v in row[0]] == list(headers) else None
        if tables:
            return None
        # GET …/worksheets('Chronology')/usedRange → {"address": "Chronology!A1:F1", …}
        used = self._get(f"{base}/usedRange", f"read the sheet {sheet!r}", session)
        values = used.get("values") or []
        if all(v in ("", None) for row in values for v in row):
            return ("blank", None)
        if len(values) == 1 and [str(v) for v in values[0]] == list(headers):
            return ("header", None)
        return None

    def _probe_session(self) -> None:
        with self._session():
            pass

    def _same_path(self, op: Callable[[], T]) -> T:
        """Run ``op``; if the file's id no longer answers, look it up by path once more and
        run ``op`` again. The worker keeps one object for days, and a person may delete the
        register and upload a restored copy under the same name (same path, new id)."""
        cached = self._item
        try:
            return op()
        except (GraphNotFound, InputError):
            cached = cached or self._item
            if cached is None:
                raise
            self._item = None
            self._kept = None  # a session on the old file; it expires by itself
            self._early_headers.clear()
            if self.ledger is not None:
                self.ledger.delete(self._item_key)
            if self.item() == cached:
                raise
            log.info("graph: %s was replaced (new item id); using the new one", self.name)
            return op()

    def close(self) -> None:
        self.http.close()

    # -- workbook mode -------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[str]:
        """A short persistent session: created, used for one operation, closed. During a
        cycle (``begin_cycle``) one session serves every operation until ``end_cycle``."""
        if self._cycle:
            if self._kept is None:
                self._kept = self._create_session()
            yield self._kept
            return
        session = self._create_session()
        try:
            yield session
        finally:
            self._close_session(session)

    def _create_session(self) -> str:
        # POST …/workbook/createSession {"persistChanges": true}
        #   → 201 {"id": "cluster=…&session=…", "persistChanges": true}
        path = f"{self.item()}/workbook/createSession"
        call = self._call("open a workbook session", kind="workbook")
        if self._cycle and self._appended:
            return self._create_session_and_read_headers(path, call)
        response = self.http.request(
            "POST",
            path,
            call,
            json={"persistChanges": True},
            retry_ambiguous=True,  # a second session is harmless; it expires on its own
        )
        session = str(response.json().get("id") or "")
        if not session:
            raise TransientError(f"{self._where()}: Graph opened a session without an id")
        return session

    def _create_session_and_read_headers(self, path: str, call: Call) -> str:
        """A cycle's session, and in the same round trip the header rows of the tables this
        process appends to (sessionless reads: they need no session id). Each is used by the
        cycle's first append to its table, as a header read right before it would be; a
        failed read is simply read again then, with the usual errors."""
        tables = list(self._appended.values())
        subs = [
            Sub("POST", path, call, json={"persistChanges": True}, retry_ambiguous=True),
            *(
                Sub(
                    "GET",
                    f"{self._table_path(table)}/headerRowRange",
                    self._call(f"read the header row of table {table!r}", kind="workbook"),
                )
                for table in tables
            ),
        ]
        created, *headers = self.http.batch(subs)
        if isinstance(created, PreventServiceError):
            raise created
        for table, outcome in zip(tables, headers, strict=True):
            if isinstance(outcome, Reply):
                values = outcome.json().get("values") or [[]]
                self._early_headers[table.casefold()] = [
                    "" if h is None else str(h) for h in values[0]
                ]
        session = str(created.json().get("id") or "")
        if not session:
            raise TransientError(f"{self._where()}: Graph opened a session without an id")
        return session

    def _close_session(self, session: str) -> None:
        try:
            self.http.request(
                "POST",
                f"{self.item()}/workbook/closeSession",
                self._call("close the workbook session", kind="workbook"),
                headers={"workbook-session-id": session},
                retry_ambiguous=True,
            )
        except PreventServiceError as exc:  # it expires by itself after a few minutes
            log.info("graph: closing a workbook session failed (%s); it will expire", exc)

    def begin_cycle(self) -> None:
        """From now until ``end_cycle``, the lock probe (``writable``), the register rows and
        the chronology rows share one workbook session (Microsoft's advice for several calls
        in a row): two requests per cycle instead of a create and a close per operation. The
        session is opened only when something is written or probed."""
        if self.mode == "workbook":
            self._cycle = True

    def end_cycle(self) -> None:
        """Close the cycle's session, if one was opened."""
        self._cycle = False
        self._early_headers.clear()
        with self._lock:
            kept, self._kept = self._kept, None
            if kept is not None:
                self._close_session(kept)

    def _in_session(self, work: Callable[[str], T]) -> T:
        """Run ``work`` in a fresh session; once more in a new one if the session expired
        under it (a long throttling wait can outlast Excel's idle limit)."""
        for attempt in range(2):
            try:
                with self._session() as session:
                    return work(session)
            except WorkbookSessionExpired:
                self._kept = None  # a cycle's session too: the next one is new
                if attempt:
                    raise
                log.info("graph: workbook session for %s expired; opening a new one", self.name)
        raise AssertionError("unreachable")

    def _table_path(self, table: str) -> str:
        return f"{self.item()}/workbook/tables/{quote(table, safe='')}"

    def _get(self, path: str, what: str, session: str | None) -> dict[str, Any]:
        headers = {"workbook-session-id": session} if session else None
        try:
            return self.http.get_json(path, self._call(what, kind="workbook"), headers=headers)
        except GraphNotFound as exc:
            raise InputError(
                f"{self._where()}: {what}: no such table; tables in it: "
                f"{', '.join(self._table_names(session)) or 'none'}. In Excel, Table Design > "
                "Table Name shows a table's name; correct it or the config."
            ) from exc

    def _get_many(
        self, paths: Sequence[str], what: str, session: str | None
    ) -> list[dict[str, Any]]:
        """Several ``_get`` in one round trip, with the same errors."""
        headers = {"workbook-session-id": session} if session else None
        call = self._call(what, kind="workbook")
        outcomes = self.http.batch([Sub("GET", path, call, headers=headers) for path in paths])
        out: list[dict[str, Any]] = []
        for outcome in outcomes:
            if isinstance(outcome, GraphNotFound):
                raise InputError(
                    f"{self._where()}: {what}: no such table; tables in it: "
                    f"{', '.join(self._table_names(session)) or 'none'}. In Excel, Table Design "
                    "> Table Name shows a table's name; correct it or the config."
                ) from outcome
            if isinstance(outcome, PreventServiceError):
                raise outcome
            out.append(outcome.json())
        return out

    def _table_names(self, session: str | None) -> list[str]:
        headers = {"workbook-session-id": session} if session else None
        try:
            # GET …/workbook/tables?$select=name → {"value": [{"name": "Concerns"}, …]}
            data = self.http.get_json(
                f"{self.item()}/workbook/tables",
                self._call("list the tables", kind="workbook"),
                headers=headers,
                params={"$select": "name"},
            )
        except PreventServiceError:
            return []
        return [str(t.get("name")) for t in data.get("value", []) if t.get("name")]

    def _grid(self, table: str, session: str | None) -> _Grid:
        # GET …/tables/Concerns/range → {"address": "Register!A1:Q42", "values": [[…], …]}
        # The range includes the Total Row a person may switch on (Table Design > Total Row):
        # GET …/tables/Concerns?$select=showTotals → {"showTotals": true, …}
        # Both in one round trip (JSON batching); neither depends on the other.
        data, meta = self._get_many(
            [f"{self._table_path(table)}/range", f"{self._table_path(table)}?$select=showTotals"],
            f"read table {table!r}",
            session,
        )
        grid = _Grid.parse(data, self._where())
        if meta.get("showTotals") is True and grid.body:
            grid = replace(grid, body=grid.body[:-1])
        return grid

    def _headers(self, table: str, session: str) -> list[str]:
        early = self._early_headers.pop(table.casefold(), None)
        if early is not None:
            return early
        # GET …/tables/Concerns/headerRowRange → {"address": "Register!A1:Q1", "values": [[…]]}
        data = self._get(
            f"{self._table_path(table)}/headerRowRange",
            f"read the header row of table {table!r}",
            session,
        )
        values = data.get("values") or [[]]
        return ["" if h is None else str(h) for h in values[0]]

    def _row_values(self, table: str, headers: Sequence[str], row: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = [""] * len(headers)
        for name, value in row.items():
            index = find_header(headers, name)
            if index is None:
                if isinstance(name, OptionalColumn):
                    continue  # a column new registers have and this older one lacks
                raise missing_column(self._where(), table, name, headers)
            out[index] = graph_value(value, self.tz, column=name)
        return out

    def _key_index(self, headers: Sequence[str], key_column: str | None) -> int | None:
        if key_column:
            return find_header(headers, key_column)
        for candidate in KEY_HEADERS:
            index = find_header(headers, candidate)
            if index is not None:
                return index
        return None

    def _add_rows(
        self,
        table: str,
        headers: list[str],
        matrix: list[list[Any]],
        session: str,
        key_column: str | None,
        *,
        read_back_first: bool = False,
    ) -> None:
        key = self._key_index(headers, key_column)
        call = self._call(f"add {len(matrix)} row(s) to table {table!r}", kind="workbook")
        if read_back_first and key is not None:
            matrix = self._not_present(table, headers, matrix, key, session)
            if not matrix:
                return
        for round_ in range(MAX_READBACK_ROUNDS):
            try:
                # POST …/tables/Concerns/rows/add {"values": [[…], …]} → {"index": 41, "values": …}
                self.http.request(
                    "POST",
                    f"{self._table_path(table)}/rows/add",
                    call,
                    json={"values": matrix},
                    headers={"workbook-session-id": session},
                    retry_ambiguous=False,  # not idempotent: read back first
                )
                return
            except AmbiguousWrite as exc:
                if key is None:
                    raise TransientError(
                        f"{call.what}: no clear answer from Graph and the table has no key "
                        "column to check, so it is not retried automatically; check the table "
                        "for the rows before the next run"
                    ) from exc
                self.http.settle(round_ + 1)
                matrix = self._not_present(table, headers, matrix, key, session)
                log.warning(
                    "graph: %s: unclear answer; read back the key column, %d row(s) still to add",
                    call.what,
                    len(matrix),
                )
                if not matrix:
                    return
        raise TransientError(
            f"{call.what}: no clear answer from Graph after read-backs; will retry"
        )

    def _not_present(
        self, table: str, headers: list[str], matrix: list[list[Any]], key: int, session: str
    ) -> list[list[Any]]:
        """The rows of ``matrix`` whose key is not in the table yet (read back now)."""
        present = {key_text(r.get(headers[key])) for _, r in self._grid(table, session).rows()}
        return [values for values in matrix if key_text(_strip_quote(values[key])) not in present]

    def _update(self, table: str, updates: Sequence[CellUpdate], session: str) -> int:
        grid = self._grid(table, session)
        rows = grid.rows()
        written = 0
        for upd in updates:
            target = find_header(grid.headers, upd.column)
            if target is None:
                raise missing_column(self._where(), table, upd.column, grid.headers)
            if not 0 <= upd.row_index < len(rows):
                continue
            sheet_row, current = rows[upd.row_index]
            if not self._expect_ok(table, grid.headers, current, upd):
                continue  # sorted or edited since the caller read it: leave it alone
            present = current.get(grid.headers[target])
            if not upd.overwrite and not is_blank(present):
                continue  # never overwrite what a person typed
            if upd.overwrite and _same_value(present, upd.value, self.tz, upd.column):
                continue  # already there: no request
            address = f"{get_column_letter(grid.first_col + target)}{sheet_row}"
            sheet = grid.sheet.replace("'", "''")
            # PATCH …/worksheets('Register')/range(address='R12') {"values": [["PRV-…"]]}
            self.http.request(
                "PATCH",
                f"{self.item()}/workbook/worksheets('{quote(sheet, safe='')}')"
                f"/range(address='{address}')",
                self._call(f"fill cell {address} of table {table!r}", kind="workbook"),
                json={"values": [[graph_value(upd.value, self.tz, column=upd.column)]]},
                headers={"workbook-session-id": session},
                retry_ambiguous=True,  # writing the same value twice is harmless
            )
            current[grid.headers[target]] = upd.value
            written += 1
        return written

    def _expect_ok(
        self, table: str, headers: Sequence[str], current: Mapping[str, Any], upd: CellUpdate
    ) -> bool:
        for column, expected in upd.expect.items():
            index = find_header(headers, column)
            if index is None:
                raise missing_column(self._where(), table, column, headers)
            if key_text(current.get(headers[index])) != key_text(expected):
                return False
        return True

    # -- file mode -----------------------------------------------------------------------

    def _etag(self) -> str:
        # GET …/items/{id}?$select=id,eTag → {"id": "01ABC…", "eTag": "\"{86EB…},3\""}
        meta = self.http.get_json(
            self.item(), self._call("read the file's version"), params={"$select": "id,eTag"}
        )
        return str(meta.get("eTag") or "")

    def _download(self, folder: Path, etag: str | None = None) -> tuple[Path, str]:
        """The file's bytes into ``folder`` and the ETag they belong to (read first, so a
        change in between shows as a 412 on upload, never as a lost edit)."""
        item = self.item()
        etag = self._etag() if etag is None else etag
        # GET …/items/{id}/content → 302 to a pre-authenticated URL → the bytes
        response = self.http.request("GET", f"{item}/content", self._call("download the file"))
        target = folder / (self.name if self.name.lower().endswith(".xlsx") else "book.xlsx")
        target.write_bytes(response.content)
        return target, etag

    def _read_file_table(self, table: str) -> Table:
        """A table from the file, downloaded only when its ETag changed since the last read
        (an idle poll of a file-mode workbook is then one small request)."""
        etag = self._etag()
        cached = self._file_tables.get(table.casefold())
        if cached is not None and cached[0] == etag and etag:
            return cached[1]
        with tempfile.TemporaryDirectory(prefix="prevent-graph-") as tmp:
            path, etag = self._download(Path(tmp), etag)
            book = XlsxWorkbook(path, tz=self.tz, lock_wait_seconds=0, backups=0)
            try:
                result = book.read_table(table)
            finally:
                book.close()
        self._file_tables[table.casefold()] = (etag, result)
        return result

    def _edit_file(self, change: Any) -> Any:
        """Download, change with the local xlsx rules, upload with If-Match; 412 → again."""
        unclear: AmbiguousWrite | None = None
        for attempt in range(MAX_ETAG_ROUNDS):
            with tempfile.TemporaryDirectory(prefix="prevent-graph-") as tmp:
                path, etag = self._download(Path(tmp))
                before = path.read_bytes()
                book = XlsxWorkbook(path, tz=self.tz, lock_wait_seconds=0, backups=0)
                try:
                    result = change(book)
                finally:
                    book.close()
                after = path.read_bytes()
                if after == before:
                    return result  # nothing to write (e.g. every cell already filled)
                try:
                    self._upload(after, etag)
                except PreconditionFailed:
                    unclear = None
                    log.info(
                        "graph: %s changed while being updated (412); re-reading (%d)",
                        self.name,
                        attempt + 1,
                    )
                    continue
                except AmbiguousWrite as exc:
                    # The upload may have gone in: read the file again; the change skips
                    # rows (by key) and cells already there, so nothing is written twice.
                    unclear = exc
                    log.info(
                        "graph: %s: no clear answer to the upload (%s); re-reading (%d)",
                        self.name,
                        "upload session lost" if isinstance(exc, UploadSessionLost) else "unclear",
                        attempt + 1,
                    )
                    self.http.settle(attempt + 1)
                    continue
                return result
        if unclear is not None:
            raise TransientError(
                f"{self._where()}: no clear answer to the upload {MAX_ETAG_ROUNDS} times "
                f"(last: {unclear}); the rows stay pending and the upload is started over later"
            )
        raise TransientError(
            f"{self._where()}: the file kept changing while it was being updated (HTTP 412 "
            f"{MAX_ETAG_ROUNDS} times); will retry later"
        )

    def _upload(self, data: bytes, etag: str) -> None:
        """Replace the file only if it is still the version read (If-Match on its ETag).

        createUploadSession documents If-Match/412 (learn.microsoft.com/graph/api/
        driveitem-createuploadsession); the session URL is pre-authenticated.
        """
        item = self.item()
        headers = {"If-Match": etag} if etag else {}
        # POST …/createUploadSession {"item": {"@microsoft.graph.conflictBehavior": "replace"}}
        #   → {"uploadUrl": "https://…/upload/…", "expirationDateTime": "…"}
        session = self.http.request(
            "POST",
            f"{item}/createUploadSession",
            self._call("start the upload"),
            json={"item": {"@microsoft.graph.conflictBehavior": "replace"}},
            headers=headers,
            retry_ambiguous=True,  # an unused upload session expires by itself
        ).json()
        upload_url = str(session.get("uploadUrl") or "")
        if not upload_url:
            raise TransientError(f"{self._where()}: Graph started an upload without a URL")
        try:
            self.http.request(
                "PUT",
                upload_url,
                # kind "upload": a 404 here is about the session, never the configured path
                self._call("upload the new version", kind="upload"),
                content=data,
                content_type="application/octet-stream",
                headers={
                    "Content-Length": str(len(data)),
                    "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}",
                },
                naive=True,  # the upload URL carries its own authorisation: no bearer token
                # Not repeated blindly: a completed upload session is gone (404), so an answer
                # lost after the bytes went in would look like a missing file. Re-read instead.
                retry_ambiguous=False,
            )
        except GraphNotFound as exc:
            # 404 itemNotFound "The upload session was not found.": the session expired or
            # was dropped (SharePoint has answered this on fresh sessions for Office files),
            # or it completed and the answer was lost. Microsoft's createUploadSession
            # guidance: start the whole upload over. Unclear, not a missing file.
            raise UploadSessionLost(
                f"{self._where()}: the upload session was not found (HTTP 404); the file is "
                "read again and the upload started over"
            ) from exc

    def _probe_upload(self) -> None:
        """Start an upload session on the current ETag and cancel it: 423 if someone has the
        file open (what a real upload would meet)."""
        item = self.item()
        meta = self.http.get_json(
            item, self._call("read the file's version"), params={"$select": "id,eTag"}
        )
        etag = str(meta.get("eTag") or "")
        session = self.http.request(
            "POST",
            f"{item}/createUploadSession",
            self._call("check the file can be replaced"),
            json={"item": {"@microsoft.graph.conflictBehavior": "replace"}},
            headers={"If-Match": etag} if etag else None,
            retry_ambiguous=True,
        ).json()
        upload_url = str(session.get("uploadUrl") or "")
        if upload_url:
            # DELETE {uploadUrl} → 204: cancels the unused session; a 404 means it is gone
            # already (expired or dropped), which is what cancelling wanted.
            with suppress(GraphNotFound):
                self.http.request(
                    "DELETE",
                    upload_url,
                    self._call("cancel the check upload", kind="upload"),
                    naive=True,
                )

    # -- shared --------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.name} on {self.site_host}{self.site_path}"

    @contextmanager
    def _remember_lock(self) -> Iterator[None]:
        """Log a lock once per change of state (a person opening or closing the file)."""
        try:
            yield
        except LockedError:
            if not self._locked:
                log.info("graph: %s is locked by someone; writes wait", self.name)
            self._locked = True
            raise
        if self._locked:
            log.info("graph: %s is free again", self.name)
        self._locked = False

    # -- provision -----------------------------------------------------------------------

    def provision(self, specs: Sequence[TableSpec]) -> Iterator[CheckResult]:
        """``prevent-service provision``: the folders and this file, made if missing and never
        overwritten (``connectors.graph_provision``)."""
        from connectors.graph_provision import provision_workbook

        return provision_workbook(self, specs)

    # -- check ---------------------------------------------------------------------------

    def checks(self) -> Iterator[CheckResult]:
        """``check`` lines: token, site, file, and the mode in use (with a session test)."""
        where = f"{self.site_host}{self.site_path}"
        try:
            self.http.ensure_token()
        except PreventServiceError as exc:
            yield CheckResult("Graph token", False, str(exc))
            return
        probes: tuple[tuple[str, Callable[[], object]], ...] = (
            (f"site {where}", self.site),
            (f"file {self.path}", self.item),
        )
        for name, probe in probes:
            try:
                probe()
            except PreventServiceError as exc:
                yield CheckResult(name, False, str(exc))
                return
            yield CheckResult(name, True, "found")
        if self.mode == "file":
            yield CheckResult(
                f"mode for {self.name}",
                True,
                "file (download, edit, upload with If-Match; writes wait while anyone has the "
                'file open). Set mode = "workbook" if the tenant allows the Excel API.',
            )
            return
        try:
            with self._lock, self._session():
                pass
        except WorkbookApiRefused as exc:
            yield CheckResult(f"mode for {self.name}", False, str(exc))
            return
        except LockedError as exc:
            yield CheckResult(f"mode for {self.name}", True, f"workbook (Excel API); {exc}")
            return
        except PreventServiceError as exc:
            yield CheckResult(f"mode for {self.name}", False, f"workbook session: {exc}")
            return
        yield CheckResult(
            f"mode for {self.name}",
            True,
            "workbook (Excel API in short sessions; co-authoring safe)",
        )


def _same_value(present: Any, value: Any, tz: tzinfo, column: str) -> bool:
    """Whether a cell read from ``values`` already holds ``value`` (dates arrive as serials)."""
    wanted = to_cell_value(value, tz, column=column)
    numeric = isinstance(present, int | float) and not isinstance(present, bool)
    if numeric and isinstance(wanted, date):  # an Excel serial: days since 1899-12-30
        moment = datetime(1899, 12, 30) + timedelta(days=float(present))
        present = moment.date() if moment.time() == time(0) else moment
    return key_text(present) == key_text(wanted)


def _strip_quote(value: Any) -> Any:
    return value[1:] if isinstance(value, str) and value.startswith("'") else value
