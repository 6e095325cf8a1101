"""Excel workbooks through Graph (`…/items/{id}/workbook/…`) on the stored .xlsx bytes, with
openpyxl: sessions, worksheets, tables, rows, rows/add and ranges. Every persisted write saves
the file, so its eTag and cTag move as SharePoint's do."""

from __future__ import annotations

import io
import re
import secrets
import threading
import time
import uuid
import warnings
from copy import copy
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dtime
from typing import Any

import openpyxl
from openpyxl.cell.cell import Cell
from openpyxl.utils import get_column_letter, range_boundaries
from openpyxl.utils.datetime import to_excel
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.table import Table, TableStyleInfo
from openpyxl.worksheet.worksheet import Worksheet

from .common import GraphError, Request, Response, empty_response, json_response
from .drive import Drive, DriveService, Item, Site
from .faults import EDIT_MODE_LOCK_MESSAGE

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d)(?:[ ](\d\d):(\d\d)(?::(\d\d))?)?")
_ADDRESS = re.compile(r"^range\(address='((?:[^']|'')*)'\)$", re.IGNORECASE)
_TABLE_NAME = re.compile(r"^[A-Za-z_\\][A-Za-z0-9_.]{0,254}$")
_ITEM_AT = re.compile(r"^itemAt\(index=(\d+)\)$", re.IGNORECASE)


@dataclass
class Session:
    id: str
    drive_id: str
    item_id: str
    persist: bool
    last_used: float
    book: Workbook | None = None  # private copy for persistChanges=false


@dataclass
class Context:
    req: Request
    site: Site
    drive: Drive
    item: Item
    book: Workbook
    session: Session | None


def _invalid_session() -> GraphError:
    return GraphError(
        404,
        "itemNotFound",
        "The target session is invalid or has expired. Create a new session.",
        inner_code="invalidSessionReCreatable",
    )


def _quote_sheet(title: str) -> str:
    return title if re.fullmatch(r"\w+", title) else "'" + title.replace("'", "''") + "'"


def _load(data: bytes) -> Workbook:
    with warnings.catch_warnings():
        # openpyxl warns about parts it drops (x14 validation, …); Excel would keep them.
        warnings.simplefilter("ignore")
        try:
            return openpyxl.load_workbook(io.BytesIO(data))
        except Exception as exc:
            raise GraphError(
                400,
                "invalidRequest",
                "The workbook could not be opened.",
                inner_code="unsupportedWorkbook",
            ) from exc


def _save(book: Workbook) -> bytes:
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# --- cell values, as Excel shows and takes them ---------------------------------------------------


def _is_formula(cell: Cell) -> bool:
    return cell.data_type == "f"


def graph_value(cell: Cell) -> Any:
    """Graph `values`: numbers, booleans, strings; dates as serial numbers (days since
    1899-12-30); empty cells as "". Formulas are not calculated here: the formula text."""
    value = cell.value
    if value is None:
        return ""
    if _is_formula(cell):
        return str(getattr(value, "text", value))
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime | date | dtime):
        return float(to_excel(value))
    return str(value)


def _value_type(cell: Cell) -> str:
    value = cell.value
    if value is None:
        return "Empty"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int | float | datetime | date | dtime) and not _is_formula(cell):
        return "Double"
    if isinstance(value, str) and value.startswith("#") and cell.data_type == "e":
        return "Error"
    return "String"


def _format_date(fmt: str, value: datetime | date | dtime) -> str:
    if isinstance(value, dtime):
        value = datetime.combine(date(1899, 12, 30), value)
    elif not isinstance(value, datetime):
        value = datetime.combine(value, dtime())
    fmt = re.sub(r"\[[^\]]*\]|;.*$|\\|\"", "", fmt)
    tokens = re.findall(r"yyyy|yy|mmmm|mmm|mm|m|dddd|ddd|dd|d|hh|h|ss|s|AM/PM|am/pm|.", fmt)
    out: list[str] = []
    for i, tok in enumerate(tokens):
        lower = tok.lower()
        prev = next((t.lower() for t in reversed(tokens[:i]) if t.isalpha()), "")
        nxt = next((t.lower() for t in tokens[i + 1 :] if t.isalpha()), "")
        minutes = lower in ("m", "mm") and (prev.startswith("h") or nxt.startswith("s"))
        twelve = any(t.lower() == "am/pm" for t in tokens)
        hour = value.hour % 12 or 12 if twelve else value.hour
        mapping = {
            "yyyy": f"{value.year:04d}",
            "yy": f"{value.year % 100:02d}",
            "mmmm": value.strftime("%B"),
            "mmm": value.strftime("%b"),
            "mm": f"{value.minute:02d}" if minutes else f"{value.month:02d}",
            "m": f"{value.minute}" if minutes else f"{value.month}",
            "dddd": value.strftime("%A"),
            "ddd": value.strftime("%a"),
            "dd": f"{value.day:02d}",
            "d": f"{value.day}",
            "hh": f"{hour:02d}",
            "h": f"{hour}",
            "ss": f"{value.second:02d}",
            "s": f"{value.second}",
            "am/pm": "AM" if value.hour < 12 else "PM",
        }
        out.append(mapping.get(lower, tok))
    return "".join(out)


def graph_text(cell: Cell) -> str:
    """Graph `text`: the value as displayed with the cell's number format (common formats)."""
    value = cell.value
    fmt = cell.number_format or "General"
    if value is None:
        return ""
    if _is_formula(cell):
        return str(getattr(value, "text", value))
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime | date | dtime):
        return _format_date(fmt if fmt != "General" else "yyyy-mm-dd h:mm", value)
    if isinstance(value, int | float):
        if fmt in ("General", "@"):
            return str(int(value)) if float(value).is_integer() else f"{value:.10g}"
        if fmt.endswith("%"):
            decimals = len(fmt.split(".")[1]) - 1 if "." in fmt else 0
            return f"{value * 100:.{decimals}f}%"
        decimals = len(fmt.split(".")[1]) if "." in fmt else 0
        text = f"{value:,.{decimals}f}" if "," in fmt else f"{value:.{decimals}f}"
        return text
    return str(value)


def write_cell(cell: Cell, value: Any) -> None:
    """Set a cell as typing `value` into Excel would (Range.values semantics): "=…" and "+x"/"-x"
    that are not numbers become formulas; a leading "'" keeps text (and is hidden); numeric
    strings become numbers, "TRUE"/"FALSE" booleans, ISO dates dates — unless the cell is
    formatted as Text ("@")."""
    if value is None or value == "":
        cell.value = None
        return
    if isinstance(value, bool | int | float):
        cell.value = value
        return
    if not isinstance(value, str):
        raise GraphError(
            400,
            "InvalidArgument",
            "The argument is invalid or missing or has an incorrect format.",
            inner_code="invalidArgument",
        )
    if cell.number_format == "@":
        cell.value = value
        cell.data_type = "s"
        return
    if value.startswith("'"):
        cell.value = value[1:]
        cell.data_type = "s"
        cell.quotePrefix = True
        return
    if value.startswith("=") and len(value) > 1:
        cell.value = value
        return
    if _NUMBER.fullmatch(value):
        number = float(value)
        cell.value = (
            int(number)
            if number.is_integer() and "." not in value and "e" not in value.lower()
            else number
        )
        return
    if value[0] in "+-" and len(value) > 1:
        cell.value = "=" + value
        return
    if value.upper() in ("TRUE", "FALSE"):
        cell.value = value.upper() == "TRUE"
        return
    match = _DATE.fullmatch(value)
    if match:
        parts = [int(p) if p else 0 for p in match.groups()]
        try:
            cell.value = datetime(*parts)  # type: ignore[misc]
        except ValueError:
            cell.value = value
            return
        if cell.number_format == "General":
            cell.number_format = "yyyy-mm-dd hh:mm" if match.group(4) else "yyyy-mm-dd"
        return
    cell.value = value


def _calculated_columns(table: Table) -> dict[int, str]:
    """Column offset → formula (without "=") for a table's calculated columns; a structured
    reference to "this row" is kept as it is (openpyxl does not calculate)."""
    out: dict[int, str] = {}
    for index, column in enumerate(table.tableColumns or ()):
        formula = column.calculatedColumnFormula
        text = getattr(formula, "attr_text", None) if formula is not None else None
        if text:
            out[index] = text[1:] if text.startswith("=") else text
    return out


# --- geometry ----------------------------------------------------------------------------------


@dataclass
class TableGeometry:
    ws: Worksheet
    table: Table
    min_col: int
    min_row: int
    max_col: int
    max_row: int
    header_rows: int
    totals_rows: int

    @property
    def data_start(self) -> int:
        return self.min_row + self.header_rows

    @property
    def data_end(self) -> int:
        return self.max_row - self.totals_rows

    @property
    def row_count(self) -> int:
        return max(0, self.data_end - self.data_start + 1)


def _geometry(ws: Worksheet, table: Table) -> TableGeometry:
    min_col, min_row, max_col, max_row = range_boundaries(table.ref)
    header = 1 if table.headerRowCount is None else int(table.headerRowCount)
    totals = int(table.totalsRowCount or 0)
    return TableGeometry(ws, table, min_col, min_row, max_col, max_row, header, totals)


def _range_json(ws: Worksheet, min_col: int, min_row: int, max_col: int, max_row: int) -> dict:
    """workbookRange (api-reference/v1.0/resources/range.md), e.g.
    {"address": "Sheet1!A1:C2", "addressLocal": "Sheet1!A1:C2", "cellCount": 6,
     "columnCount": 3, "columnIndex": 0, "rowCount": 2, "rowIndex": 0,
     "values": [["Key", "Date", "Count"], ["a", 45413.5, 3]], "text": [[…]],
     "formulas": [[…]], "numberFormat": [["General", "yyyy-mm-dd", "General"], …],
     "valueTypes": [["String", "Double", "Double"], …]}"""
    cells = [
        [ws.cell(row, col) for col in range(min_col, max_col + 1)]
        for row in range(min_row, max_row + 1)
    ]
    first = f"{get_column_letter(min_col)}{min_row}"
    last = f"{get_column_letter(max_col)}{max_row}"
    address = f"{_quote_sheet(ws.title)}!{first}" + (f":{last}" if first != last else "")
    formulas = [[str(c.value) if _is_formula(c) else graph_value(c) for c in row] for row in cells]
    return {
        "@odata.type": "#microsoft.graph.workbookRange",
        "address": address,
        "addressLocal": address,
        "cellCount": (max_col - min_col + 1) * (max_row - min_row + 1),
        "columnCount": max_col - min_col + 1,
        "columnHidden": False,
        "columnIndex": min_col - 1,
        "formulas": formulas,
        "formulasLocal": formulas,
        "formulasR1C1": formulas,
        "hidden": False,
        "numberFormat": [[c.number_format for c in row] for row in cells],
        "rowCount": max_row - min_row + 1,
        "rowHidden": False,
        "rowIndex": min_row - 1,
        "text": [[graph_text(c) for c in row] for row in cells],
        "valueTypes": [[_value_type(c) for c in row] for row in cells],
        "values": [[graph_value(c) for c in row] for row in cells],
    }


class WorkbookService:
    def __init__(self, lock: threading.RLock, drive: DriveService) -> None:
        self.lock = lock
        self.drive = drive
        self.sessions: dict[str, Session] = {}
        self.cache: dict[str, tuple[int, Workbook]] = {}  # item id -> (cTag version, book)
        self.refused = False
        self.session_idle = 300.0

    def reset(self) -> None:
        self.sessions.clear()
        self.cache.clear()
        self.refused = False
        self.session_idle = 300.0

    def expire_sessions(self) -> None:
        with self.lock:
            self.sessions.clear()

    # --- plumbing -----------------------------------------------------------------------------

    def _shared_book(self, item: Item) -> Workbook:
        cached = self.cache.get(item.id)
        if cached is not None and cached[0] == item.content_version:
            return cached[1]
        book = _load(item.content)
        self.cache[item.id] = (item.content_version, book)
        return book

    def _session(self, req: Request, item: Item) -> Session | None:
        session_id = req.header("workbook-session-id")
        if not session_id:
            return None
        session = self.sessions.get(session_id)
        now = time.time()
        if session is not None and now - session.last_used > self.session_idle:
            del self.sessions[session_id]
            session = None
        if session is None or session.item_id != item.id:
            raise _invalid_session()
        session.last_used = now
        return session

    def _commit(self, ctx: Context) -> None:
        """A persisted write: save the book into the file (new eTag and cTag)."""
        if ctx.session is not None and not ctx.session.persist:
            return
        self.drive.write_content(ctx.item, _save(ctx.book))
        self.cache[ctx.item.id] = (ctx.item.content_version, ctx.book)

    @staticmethod
    def _check_lock(item: Item) -> None:
        if item.locked:
            raise GraphError(409, "EditModeCannotAcquireLock", EDIT_MODE_LOCK_MESSAGE)

    def handle(self, req: Request, site: Site, drive: Drive, item: Item, tail: str) -> Response:
        if self.refused:
            raise GraphError(
                403, "accessDenied", "Access denied", inner_code="EditModeAccessDenied"
            )
        segments = [s for s in tail.split("/") if s]
        head = segments[0].lower() if segments else ""
        write = req.method in ("POST", "PATCH", "PUT", "DELETE")
        if head in ("closesession", "refreshsession"):
            write = False
        self.drive._require(req, site, write=write)
        if item.is_folder or not item.name.lower().endswith((".xlsx", ".xlsm")):
            raise GraphError(
                400,
                "invalidRequest",
                "The item is not a workbook.",
                inner_code="unsupportedWorkbook",
            )
        if head == "createsession" and req.method == "POST":
            return self._create_session(req, drive, item)
        if head == "closesession" and req.method == "POST":
            session = self._session(req, item)
            if session is None:
                raise GraphError(
                    400, "invalidRequest", "The workbook-session-id header is missing."
                )
            del self.sessions[session.id]
            return empty_response(204)
        if head == "refreshsession" and req.method == "POST":
            if self._session(req, item) is None:
                raise GraphError(
                    400, "invalidRequest", "The workbook-session-id header is missing."
                )
            return empty_response(204)
        session = self._session(req, item)
        if write:
            self._check_lock(item)
        book = session.book if session is not None and session.book is not None else None
        ctx = Context(req, site, drive, item, book or self._shared_book(item), session)
        try:
            response = self._route(ctx, segments)
        except Exception:
            self.cache.pop(item.id, None)  # a half-applied change must not linger in the cache
            raise
        if response is None:
            segment = segments[-1] if segments else "workbook"
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
        return response

    def _create_session(self, req: Request, drive: Drive, item: Item) -> Response:
        """POST …/workbook/createSession {"persistChanges": true} ->
        201 {"@odata.context": "…#microsoft.graph.workbookSessionInfo", "id": "cluster=…&session=…",
             "persistChanges": true}"""
        body = req.json if isinstance(req.json, dict) else {}
        persist = body.get("persistChanges", True) not in (False, "false")
        self._check_lock(item)
        book = _load(item.content) if not persist else None
        if persist:
            self._shared_book(item)  # fails now, not later, if the file is not a workbook
        session_id = f"cluster=EMU1&session={secrets.token_urlsafe(24)}"
        self.sessions[session_id] = Session(
            session_id, drive.id, item.id, persist, time.time(), book
        )
        return json_response(
            201,
            {
                "@odata.context": f"{req.base_url}/v1.0/$metadata#workbookSessionInfo",
                "id": session_id,
                "persistChanges": persist,
            },
        )

    # --- routing ------------------------------------------------------------------------------

    def _route(self, ctx: Context, segments: list[str]) -> Response | None:
        method = ctx.req.method
        lower = [s.lower() for s in segments]
        if lower == ["worksheets"] and method == "GET":
            value = [self._sheet_json(ctx, ws) for ws in ctx.book.worksheets]
            return json_response(200, {"value": value})
        if lower == ["worksheets", "add"] and method == "POST":
            return self._add_sheet(ctx)
        if lower == ["tables", "add"] and method == "POST":
            return self._add_table(ctx, sheet=None)
        if lower[:1] == ["worksheets"] and len(segments) >= 2:
            ws = self._sheet(ctx, segments[1])
            rest = segments[2:]
            if not rest and method == "GET":
                return json_response(200, self._sheet_json(ctx, ws))
            if len(rest) == 2 and rest[1].lower() == "format" and _ADDRESS.match(rest[0]):
                address = _ADDRESS.match(rest[0])
                assert address is not None
                return self._range_format(ctx, ws, address.group(1).replace("''", "'"))
            if lower[2:] == ["tables", "add"] and method == "POST":
                return self._add_table(ctx, sheet=ws)
            if len(rest) == 1:
                address = _ADDRESS.match(rest[0])
                if address:
                    return self._range(ctx, ws, address.group(1).replace("''", "'"))
                if rest[0].lower().startswith("usedrange") and method == "GET":
                    return json_response(200, self._used_range(ws))
                if rest[0].lower() == "tables" and method == "GET":
                    tables = [self._table_json(ctx, ws, t) for t in ws.tables.values()]
                    return json_response(200, {"value": tables})
            if len(rest) >= 2 and rest[0].lower() == "tables":
                return self._table_route(ctx, rest[1], rest[2:], sheet=ws)
            return None
        if lower == ["tables"] and method == "GET":
            value = [
                self._table_json(ctx, ws, t)
                for ws in ctx.book.worksheets
                for t in ws.tables.values()
            ]
            return json_response(200, {"value": value})
        if lower[:1] == ["tables"] and len(segments) >= 2:
            return self._table_route(ctx, segments[1], segments[2:], sheet=None)
        return None

    def _sheet(self, ctx: Context, ref: str) -> Worksheet:
        for index, ws in enumerate(ctx.book.worksheets):
            if ws.title.lower() == ref.lower() or self._sheet_id(index) == ref.upper():
                return ws
        raise GraphError(404, "itemNotFound", "The requested resource doesn't exist.")

    @staticmethod
    def _sheet_id(index: int) -> str:
        return f"{{00000000-0001-0000-{index:02X}00-000000000000}}"

    def _sheet_json(self, ctx: Context, ws: Worksheet) -> dict[str, Any]:
        """{"id": "{00000000-0001-0000-0000-000000000000}", "name": "Sheet1", "position": 0,
        "visibility": "Visible"}"""
        index = ctx.book.worksheets.index(ws)
        state = {"visible": "Visible", "hidden": "Hidden", "veryHidden": "VeryHidden"}
        return {
            "@odata.id": f"/workbook/worksheets(%27{self._sheet_id(index)}%27)",
            "id": self._sheet_id(index),
            "name": ws.title,
            "position": index,
            "visibility": state.get(ws.sheet_state, "Visible"),
        }

    def _table_id(self, ctx: Context, name: str) -> str:
        return "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ctx.item.id}/{name}")).upper() + "}"

    def _find_table(self, ctx: Context, ref: str, sheet: Worksheet | None) -> TableGeometry:
        for ws in [sheet] if sheet is not None else ctx.book.worksheets:
            for table in ws.tables.values():  # TableList.items() yields refs, not tables
                name = table.displayName
                if ref.lower() == name.lower() or ref.upper() == self._table_id(ctx, name):
                    return _geometry(ws, table)
                if ref == str(table.id):
                    return _geometry(ws, table)
        raise GraphError(404, "itemNotFound", "The requested resource doesn't exist.")

    def _table_json(self, ctx: Context, ws: Worksheet, table: Table) -> dict[str, Any]:
        """workbookTable: {"id": "{…}", "name": "Concerns", "showHeaders": true,
        "showTotals": false, "style": "TableStyleMedium2", "legacyId": "1", …}"""
        style = table.tableStyleInfo
        return {
            "id": self._table_id(ctx, table.displayName),
            "name": table.displayName,
            "legacyId": str(table.id),
            "showHeaders": (table.headerRowCount is None or table.headerRowCount > 0),
            "showTotals": bool(table.totalsRowCount),
            "style": style.name if style is not None and style.name else "TableStyleMedium2",
            "highlightFirstColumn": bool(style.showFirstColumn) if style else False,
            "highlightLastColumn": bool(style.showLastColumn) if style else False,
            "showBandedRows": bool(style.showRowStripes) if style else True,
            "showBandedColumns": bool(style.showColumnStripes) if style else False,
            "showFilterButton": table.autoFilter is not None,
        }

    def _table_route(
        self, ctx: Context, ref: str, rest: list[str], sheet: Worksheet | None
    ) -> Response | None:
        geo = self._find_table(ctx, ref, sheet)
        method = ctx.req.method
        lower = [s.lower() for s in rest]
        if not rest and method == "GET":
            return json_response(200, self._table_json(ctx, geo.ws, geo.table))
        if not rest and method == "PATCH":
            return self._rename_table(ctx, geo)
        if lower == ["columns"] and method == "GET":
            return json_response(200, {"value": self._columns(geo)})
        if lower == ["rows"] and method == "GET":
            return self._rows(ctx, geo)
        if lower == ["rows", "add"] and method == "POST":
            return self._add_rows(ctx, geo)
        if len(rest) == 2 and lower[0] == "rows" and _ITEM_AT.match(rest[1]):
            index = int(_ITEM_AT.match(rest[1]).group(1))  # type: ignore[union-attr]
            return self._row_at(ctx, geo, index)
        if len(rest) == 1 and method == "GET":
            ranges = {
                "range": (geo.min_row, geo.max_row),
                "headerrowrange": (geo.min_row, geo.min_row + geo.header_rows - 1),
                "databodyrange": (geo.data_start, max(geo.data_end, geo.data_start)),
                "totalrowrange": (geo.data_end + 1, geo.max_row),
            }
            if lower[0] in ranges:
                first, last = ranges[lower[0]]
                if last < first:
                    raise GraphError(404, "itemNotFound", "The table has no such row range.")
                return json_response(
                    200, _range_json(geo.ws, geo.min_col, first, geo.max_col, last)
                )
        return None

    # --- adding sheets and tables -------------------------------------------------------------

    def _add_sheet(self, ctx: Context) -> Response:
        """POST …/workbook/worksheets/add {"name": "Chronology"} -> 201 workbookWorksheet
        (a taken name: 409 ItemAlreadyExists; no name: Excel picks "SheetN")."""
        body = ctx.req.json_object()
        name = body.get("name")
        taken = {ws.title.lower() for ws in ctx.book.worksheets}
        if name is None:
            n = len(ctx.book.worksheets) + 1
            while f"sheet{n}" in taken:
                n += 1
            name = f"Sheet{n}"
        if (
            not isinstance(name, str)
            or not name
            or len(name) > 31
            or any(c in name for c in "[]:*?/\\")
        ):
            raise GraphError(400, "InvalidArgument", "The argument is invalid or missing.")
        if name.lower() in taken:
            raise GraphError(
                409,
                "ItemAlreadyExists",
                "A resource with the same name or identifier already exists.",
            )
        ws = ctx.book.create_sheet(name)
        self._commit(ctx)
        return json_response(201, self._sheet_json(ctx, ws))

    def _add_table(self, ctx: Context, sheet: Worksheet | None) -> Response:
        """POST …/workbook/tables/add {"address": "Chronology!A1:F1", "hasHeaders": true} ->
        201 workbookTable named "TableN". Headers come from the range's first row (a blank one
        becomes "ColumnN"); a range of the header row alone gets one empty data row, as Excel
        gives every table at least one."""
        body = ctx.req.json_object()
        address = body.get("address")
        if not isinstance(address, str) or not address:
            raise GraphError(400, "InvalidArgument", "The argument is invalid or missing.")
        sheet_part, _, cells = address.rpartition("!")
        if sheet_part:
            ws = self._sheet(ctx, sheet_part.strip("'").replace("''", "'"))
        elif sheet is not None:
            ws = sheet
        else:
            raise GraphError(400, "InvalidArgument", "The address must name a worksheet.")
        try:
            min_col, min_row, max_col, max_row = range_boundaries(cells.replace("$", ""))
        except ValueError as exc:
            raise GraphError(400, "InvalidArgument", "The argument is invalid.") from exc
        assert min_col and min_row and max_col and max_row
        for other in ws.tables.values():
            o_min_col, o_min_row, o_max_col, o_max_row = range_boundaries(other.ref)
            if not (
                max_col < o_min_col
                or min_col > o_max_col
                or max_row < o_min_row
                or min_row > o_max_row
            ):
                raise GraphError(400, "InvalidArgument", "A table can't overlap another table.")
        has_headers = body.get("hasHeaders", True) not in (False, "false")
        if not has_headers:
            ws.insert_rows(min_row)
            max_row += 1
        if max_row == min_row:
            max_row += 1
        seen: set[str] = set()
        for offset, col in enumerate(range(min_col, max_col + 1), start=1):
            cell = ws.cell(min_row, col)
            header = "" if cell.value is None else str(cell.value)
            if not header or header.lower() in seen:
                header = f"Column{offset}"
            seen.add(header.lower())
            cell.value = header
        names = {t.displayName.lower() for w in ctx.book.worksheets for t in w.tables.values()}
        n = 1
        while f"table{n}" in names:
            n += 1
        ref = f"{get_column_letter(min_col)}{min_row}:{get_column_letter(max_col)}{max_row}"
        table = Table(displayName=f"Table{n}", ref=ref)
        table.tableStyleInfo = TableStyleInfo(name="TableStyleMedium2", showRowStripes=True)
        ws.add_table(table)
        self._commit(ctx)
        return json_response(201, self._table_json(ctx, ws, table))

    def _rename_table(self, ctx: Context, geo: TableGeometry) -> Response:
        """PATCH …/workbook/tables/{id} {"name": "Chronology"} -> 200 workbookTable."""
        body = ctx.req.json_object()
        name = body.get("name")
        if name is not None:
            if not isinstance(name, str) or not _TABLE_NAME.match(name):
                raise GraphError(400, "InvalidArgument", "The argument is invalid or missing.")
            others = {
                t.displayName.lower()
                for w in ctx.book.worksheets
                for t in w.tables.values()
                if t is not geo.table
            }
            if name.lower() in others:
                raise GraphError(409, "ItemAlreadyExists", "A table with that name already exists.")
            old = geo.table.displayName
            geo.table.displayName = name
            geo.table.name = name
            del geo.ws.tables[old]
            geo.ws.tables[name] = geo.table
        self._commit(ctx)
        return json_response(200, self._table_json(ctx, geo.ws, geo.table))

    def _range_format(self, ctx: Context, ws: Worksheet, address: str) -> Response:
        """PATCH …/worksheets/{w}/range(address='F1')/format {"columnHidden": true,
        "columnWidth": 90} -> 200 workbookRangeFormat. Both act on the range's whole columns;
        ``columnWidth`` is in points (Excel's character width is about 7 points)."""
        _, _, cells = address.rpartition("!")
        min_col, _, max_col, _ = range_boundaries(cells.replace("$", ""))
        if min_col is None or max_col is None:
            raise GraphError(400, "InvalidArgument", "The argument is invalid.")
        body = ctx.req.json_object() if ctx.req.method == "PATCH" else {}
        for col in range(min_col, max_col + 1):
            dim = ws.column_dimensions[get_column_letter(col)]
            if "columnHidden" in body:
                dim.hidden = bool(body["columnHidden"])
            if isinstance(body.get("columnWidth"), int | float):
                dim.width = float(body["columnWidth"]) / 7
        if ctx.req.method == "PATCH":
            self._commit(ctx)
        dim = ws.column_dimensions[get_column_letter(min_col)]
        return json_response(
            200,
            {
                "columnWidth": (dim.width or 8.43) * 7,
                "columnHidden": bool(dim.hidden),
                "horizontalAlignment": "General",
                "verticalAlignment": "Bottom",
                "wrapText": False,
            },
        )

    # --- tables -------------------------------------------------------------------------------

    def _columns(self, geo: TableGeometry) -> list[dict[str, Any]]:
        """{"value": [{"id": "1", "index": 0, "name": "Key", "values": [["Key"], ["a"]]}]}"""
        columns = []
        for offset, col in enumerate(range(geo.min_col, geo.max_col + 1)):
            header = geo.ws.cell(geo.min_row, col)
            values = [
                [graph_value(geo.ws.cell(r, col))] for r in range(geo.min_row, geo.max_row + 1)
            ]
            columns.append(
                {
                    "id": str(offset + 1),
                    "index": offset,
                    "name": str(header.value)
                    if header.value is not None
                    else f"Column{offset + 1}",
                    "values": values,
                }
            )
        return columns

    def _row_values(self, geo: TableGeometry, row: int) -> list[Any]:
        return [graph_value(geo.ws.cell(row, c)) for c in range(geo.min_col, geo.max_col + 1)]

    def _rows(self, ctx: Context, geo: TableGeometry) -> Response:
        """GET …/tables/{t}/rows -> {"value": [{"index": 0, "values": [["a", 45413.5, 3]]}]}"""
        skip = ctx.req.int_param("$skip", 0) or 0
        top = ctx.req.int_param("$top")
        indexes = list(range(geo.row_count))[skip:]
        if top is not None:
            indexes = indexes[:top]
        value = [
            {"index": i, "values": [self._row_values(geo, geo.data_start + i)]} for i in indexes
        ]
        return json_response(200, {"value": value})

    def _check_values(self, geo: TableGeometry, values: Any) -> list[list[Any]]:
        width = geo.max_col - geo.min_col + 1
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(r, list) and len(r) == width for r in values)
        ):
            raise GraphError(
                400,
                "InvalidArgument",
                "The number of rows or columns in the input array doesn't match the size or "
                "dimensions of the range.",
                inner_code="invalidArgument",
            )
        return values

    def _add_rows(self, ctx: Context, geo: TableGeometry) -> Response:
        """POST …/tables/{t}/rows/add {"index": null, "values": [[1, 2, 3], [4, 5, 6]]} ->
        200 {"index": 99, "values": [[…]]} (workbookTableRow; may 504 after committing)"""
        body = ctx.req.json_object()
        width = geo.max_col - geo.min_col + 1
        raw_values = body.get("values")
        values = self._check_values(geo, raw_values if raw_values is not None else [[None] * width])
        index = body.get("index")
        count = geo.row_count
        if index is None or index == count:
            at = geo.data_end + 1
        elif isinstance(index, int) and 0 <= index < count:
            at = geo.data_start + index
        else:
            raise GraphError(
                400,
                "InvalidArgument",
                "The argument is invalid or missing or has an incorrect format.",
                inner_code="invalidArgument",
            )
        n = len(values)
        ws = geo.ws
        last_used = max(ws.max_row, geo.max_row)
        first_col, last_col = get_column_letter(geo.min_col), get_column_letter(geo.max_col)
        if last_used >= at:
            # Excel shifts the cells under the insertion point down, within the table's columns.
            ws.move_range(f"{first_col}{at}:{last_col}{last_used}", rows=n)
        template = at - 1 if at - 1 >= geo.data_start else None
        calculated = _calculated_columns(geo.table)
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                cell = ws.cell(at + i, geo.min_col + j)
                if template is not None:
                    # A table carries the row above's formatting into the rows it grows by
                    # (number format, alignment, fill), as Excel extends a table's format.
                    cell._style = copy(ws.cell(template, geo.min_col + j)._style)
                if j in calculated and value in (None, ""):
                    # A calculated column fills itself into each added row: Excel writes the
                    # column's formula even where the request gave "" or null for it
                    # (support.microsoft.com "Use calculated columns in an Excel table";
                    # OfficeDev/office-js#1916 shows rows.add doing so).
                    value = "=" + calculated[j]
                write_cell(cell, value)
        new_max = geo.max_row + n
        geo.table.ref = f"{first_col}{geo.min_row}:{last_col}{new_max}"
        if geo.table.autoFilter is not None:
            geo.table.autoFilter.ref = (
                f"{first_col}{geo.min_row}:{last_col}{new_max - geo.totals_rows}"
            )
        self._commit(ctx)
        new_geo = _geometry(ws, geo.table)
        return json_response(
            200,
            {
                "@odata.context": f"{ctx.req.base_url}/v1.0/$metadata#workbookTableRow",
                "index": at - new_geo.data_start,
                "values": [self._row_values(new_geo, at + i) for i in range(n)],
            },
        )

    def _row_at(self, ctx: Context, geo: TableGeometry, index: int) -> Response:
        """GET/PATCH …/tables/{t}/rows/itemAt(index=N) -> {"index": N, "values": [[…]]}"""
        if index >= geo.row_count:
            raise GraphError(404, "itemNotFound", "The requested resource doesn't exist.")
        row = geo.data_start + index
        if ctx.req.method == "PATCH":
            values = self._check_values(geo, ctx.req.json_object().get("values"))
            if len(values) != 1:
                raise GraphError(400, "InvalidArgument", "A table row takes one row of values.")
            for j, value in enumerate(values[0]):
                if value is not None:
                    write_cell(geo.ws.cell(row, geo.min_col + j), value)
            self._commit(ctx)
        elif ctx.req.method != "GET":
            return None  # type: ignore[return-value]
        return json_response(200, {"index": index, "values": [self._row_values(geo, row)]})

    # --- ranges -------------------------------------------------------------------------------

    def _used_range(self, ws: Worksheet) -> dict[str, Any]:
        min_col, min_row, max_col, max_row = range_boundaries(ws.calculate_dimension())
        return _range_json(ws, min_col, min_row, max_col, max_row)

    def _range(self, ctx: Context, ws: Worksheet, address: str) -> Response | None:
        """GET/PATCH …/worksheets/{name}/range(address='A2:C2'); PATCH {"values": [[…]],
        "numberFormat": [[…]], "formulas": [[…]]} -> 200 the updated range"""
        sheet_part, _, cells = address.rpartition("!")
        if sheet_part and sheet_part.strip("'").replace("''", "'").lower() != ws.title.lower():
            raise GraphError(400, "InvalidArgument", "The address names another worksheet.")
        try:
            min_col, min_row, max_col, max_row = range_boundaries(cells.replace("$", ""))
        except ValueError as exc:
            raise GraphError(
                400,
                "InvalidArgument",
                "The argument is invalid or missing or has an incorrect format.",
                inner_code="invalidArgument",
            ) from exc
        if None in (min_col, min_row, max_col, max_row):
            raise GraphError(400, "InvalidArgument", "Whole rows and columns are not supported.")
        assert min_col and min_row and max_col and max_row
        if ctx.req.method == "PATCH":
            body = ctx.req.json_object()
            height, width = max_row - min_row + 1, max_col - min_col + 1
            grids = {k: body.get(k) for k in ("numberFormat", "values", "formulas")}
            for key, grid in grids.items():
                if grid is None:
                    continue
                if (
                    not isinstance(grid, list)
                    or len(grid) != height
                    or any(not isinstance(r, list) or len(r) != width for r in grid)
                ):
                    raise GraphError(
                        400,
                        "InvalidArgument",
                        f"The number of rows or columns in the input array ({key}) doesn't "
                        "match the size or dimensions of the range.",
                        inner_code="invalidArgument",
                    )
            for key in ("numberFormat", "values", "formulas"):
                grid = grids[key]
                if grid is None:
                    continue
                for i, row in enumerate(grid):
                    for j, value in enumerate(row):
                        if value is None:
                            continue  # null leaves the cell as it is
                        cell = ws.cell(min_row + i, min_col + j)
                        if key == "numberFormat":
                            cell.number_format = str(value)
                        else:
                            write_cell(cell, value)
            self._commit(ctx)
        elif ctx.req.method != "GET":
            return None
        return json_response(200, _range_json(ws, min_col, min_row, max_col, max_row))
