"""A local ``.xlsx`` workbook on openpyxl that people edit in Excel too.

Safety with people in the loop (every write goes through ``XlsxWorkbook._write``):

* **Excel has it open** — an owner file ``~$<name>`` (or LibreOffice's ``.~lock.<name>#``) beside
  the workbook means someone has it open: ``LockedError``, the caller retries later.
* **Another writer** — an exclusive OS lock (``service.locks``: ``fcntl.flock``, or
  ``msvcrt.locking`` on Windows) on ``.<name>.lock`` beside the workbook. The lock dies with its
  process, so a crash never leaves a stale lock behind; the lock file stays and names the holder.
* **Atomic** — the new version is saved to a temp file in the same folder, fsynced, then
  ``os.replace``-d over the old one; if the file changed on disk since it was read, nothing is
  written.
* **Backups** — the previous version is kept in ``.backups/<stem>.<UTC time>.xlsx`` beside the
  workbook (a hard link where possible, else a copy); the newest ``backups`` (default 10) stay.
* **People's cells** — appends go after the table's last non-blank row and extend the table's
  ``ref``; rows typed below the table are never overwritten (``PermanentError``); ``update_cells``
  only fills empty cells.
* **Features openpyxl would delete on save** (pivot tables, drawings, slicers, macros, threaded
  comments, Excel 2010+ worksheet extensions such as drop-downs that list another sheet) are
  detected from the zip parts before any write and refused with a ``PermanentError`` that says
  what to do. Reading such workbooks is fine.
* **Formula text** — text starting with ``= + - @``, tab or CR (or their full-width forms) is
  stored as a string cell with Excel's "quote prefix" so Excel shows it as text, even after a
  person edits the cell.
* **Streaming appends** — with ``streaming=True`` (as the service builds it) ``append_rows``
  rewrites only the table's sheet, table and styles parts instead of a load and save
  (``connectors.xlsx_append``), under every rule above; other layouts use the openpyxl path.
* **People's formulas** — a read gives a formula cell's value as Excel last saved it (openpyxl
  ``data_only=True``), or an ``UnsavedFormula`` when the file was saved by a program that does
  not calculate. Writes load with ``data_only=False``, so every formula is saved back as a
  formula, never replaced by its value.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import secrets
import shutil
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from copy import copy
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import openpyxl
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as DefusedET
from openpyxl.formatting.formatting import ConditionalFormatting
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.styles.numbers import is_datetime
from openpyxl.utils import column_index_from_string, get_column_letter, range_boundaries
from openpyxl.worksheet.cell_range import CellRange, MultiCellRange
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.table import Table as XlTable
from openpyxl.worksheet.table import TableFormula, TableStyleInfo

from connectors.base import (
    CellUpdate,
    CheckResult,
    Formula,
    OptionalColumn,
    Table,
    TableSpec,
    UnsavedFormula,
    rows_matching,
    rows_where,
)
from connectors.files import PRIVATE_DIR, create_private, fsync_dir
from connectors.xlsx_parts import Parts
from connectors.xlsx_rows import DEFAULT_WIDTH, fitted_height
from service.errors import InputError, LockedError, PermanentError, TransientError
from service.locks import exclusive_lock, holder

if TYPE_CHECKING:
    from openpyxl.cell.cell import Cell
    from openpyxl.workbook.workbook import Workbook as XlWorkbook
    from openpyxl.worksheet.worksheet import Worksheet

    from connectors.xlsx_append import Appender, Plan
    from service.config import Config, XlsxWorkbookConfig
    from service.ledger import Ledger

log = logging.getLogger(__name__)

T = TypeVar("T")

# ------------------------------------------------------------------ cell rules (shared by memory)

EXCEL_CELL_LIMIT = 32_767  # characters (UTF-16 code units) in one cell
TRUNCATION_MARKER = " … [truncated: Excel cells hold at most 32,767 characters; see the original]"
# What makes Excel (or a CSV export of the sheet) read text as a formula; full-width forms too,
# since Excel's IME input converts them.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# XML 1.0 cannot hold these; openpyxl raises IllegalCharacterError on them.
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

DATE_FORMAT = "dd/mm/yyyy"
DATETIME_FORMAT = "dd/mm/yyyy hh:mm"


def fit_cell(text: str) -> str:
    """Make ``text`` storable in one Excel cell: line breaks become LF (Excel's; a bare CR
    would not survive the XML), control characters XML cannot hold become U+FFFD, and text
    over Excel's limit is cut with a visible marker (never silently)."""
    text = _ILLEGAL_XML.sub("\ufffd", text.replace("\r\n", "\n").replace("\r", "\n"))
    if len(text) <= EXCEL_CELL_LIMIT // 2 or _utf16_len(text) <= EXCEL_CELL_LIMIT:
        return text
    room = EXCEL_CELL_LIMIT - _utf16_len(TRUNCATION_MARKER)
    head = text.encode("utf-16-le")[: room * 2].decode("utf-16-le", errors="ignore")
    return head + TRUNCATION_MARKER


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def looks_like_formula(text: str) -> bool:
    return text.startswith(FORMULA_STARTS)


def to_cell_value(value: Any, tz: tzinfo, *, column: str = "") -> Any:
    """The value as a cell will hold it: text fitted, aware datetimes in local time without
    tzinfo (Excel has no time zones), datetimes to the second."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return fit_cell(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(tz).replace(tzinfo=None)
        return value.replace(microsecond=0)
    if isinstance(value, date | time):
        return value
    raise InputError(
        f"cannot write a {type(value).__name__} value to column {column!r}: "
        "only text, numbers, true/false, dates and times go in a workbook"
    )


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def key_text(value: Any) -> str:
    """A value as comparable text: ``7``, ``7.0`` and ``"7"`` compare equal; blanks are ``""``."""
    if is_blank(value):
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        if value.tzinfo is None and value.time() == time(0):
            return value.date().isoformat()
        return value.replace(microsecond=0).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def new_keys_only(
    where: str,
    table: str,
    headers: Sequence[str],
    existing: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    key_column: str,
) -> list[Mapping[str, Any]]:
    """``rows`` without those whose ``key_column`` value is already in ``existing`` (or earlier
    in ``rows``); rows without a key are kept."""
    index = find_header(headers, key_column)
    if index is None:
        raise missing_column(where, table, key_column, headers)
    seen = {key_text(r.get(headers[index])) for r in existing} - {""}
    out: list[Mapping[str, Any]] = []
    for row in rows:
        value = next((v for k, v in row.items() if find_header([headers[index]], k) == 0), None)
        key = key_text(value)
        if key and key in seen:
            continue
        seen.add(key)
        out.append(row)
    return out


def _norm_header(text: str) -> str:
    return " ".join(text.casefold().split())


def find_header(headers: Sequence[str], name: str) -> int | None:
    """Index of ``name`` in ``headers``: exact match first, then ignoring case and spacing."""
    try:
        return list(headers).index(name)
    except ValueError:
        pass
    wanted = _norm_header(name)
    for index, header in enumerate(headers):
        if _norm_header(header) == wanted:
            return index
    return None


def rows_with_keys(t: Table, column: str, values: Sequence[str], *, where: str) -> dict[str, int]:
    """``find_rows`` on a table already read: which ``values`` are in ``column`` (the first
    sheet row number of each), keys compared as Excel shows them."""
    index = find_header(t.headers, column)
    if index is None:
        raise missing_column(where, t.name, column, t.headers)
    header = t.headers[index]
    wanted = {key_text(v): v for v in values}
    found: dict[str, int] = {}
    for row, number in zip(t.rows, t.row_numbers, strict=True):
        text = key_text(row.get(header))
        if text in wanted and wanted[text] not in found:
            found[wanted[text]] = number
    return found


def missing_column(where: str, table: str, column: str, headers: Sequence[str]) -> InputError:
    return InputError(
        f"{where}: table {table!r} has no column {column!r}; its columns are: "
        f"{', '.join(repr(h) for h in headers)}. Restore the column heading or correct the config."
    )


def map_row(
    headers: Sequence[str],
    min_col: int,
    row: Mapping[str, Any],
    tz: tzinfo,
    missing: Callable[[str], Exception],
) -> dict[int, Any]:
    """Sheet column number → cell value for ``row`` (keyed by header), as both append paths
    write it; a column the table lacks raises ``missing(key)`` unless it is optional."""
    out: dict[int, Any] = {}
    for key, value in row.items():
        index = find_header(headers, key)
        if index is None:
            if isinstance(key, OptionalColumn):
                continue  # a column new registers have and this older one lacks
            raise missing(key)
        out[min_col + index] = to_cell_value(value, tz, column=key)
    return out


# ------------------------------------------------------------------ features openpyxl drops

_PART_FEATURES: tuple[tuple[str, str, str], ...] = (
    # (zip name prefix, what is lost, what to do)
    (
        "xl/pivot",
        "a pivot table",
        "move the pivot table to a separate workbook that uses this one as its data source",
    ),
    ("xl/drawings/drawing", "shapes, charts or pictures", "move them to a separate workbook"),
    ("xl/charts/", "charts", "move the charts to a separate workbook"),
    ("xl/chartsheets/", "a chart sheet", "move the chart sheet to a separate workbook"),
    ("xl/media/", "pictures", "move the pictures to a separate workbook"),
    ("xl/slicer", "slicers", "remove the slicers (Table Design > Insert Slicer shows them)"),
    ("xl/timeline", "timelines", "remove the timeline filters"),
    ("xl/vbaProject", "macros (VBA)", "save the workbook as a plain .xlsx without macros"),
    (
        "xl/threadedComments/",
        "threaded comments",
        "convert them to notes (Review > Notes > Convert to Notes) or delete them",
    ),
    ("xl/model/", "a data model", "keep the data model in a separate workbook"),
    ("xl/connections.xml", "data connections", "keep queries in a separate workbook"),
    ("xl/queryTables/", "query tables", "keep queries in a separate workbook"),
    ("xl/embeddings/", "embedded objects", "remove the embedded objects"),
    ("xl/activeX/", "ActiveX controls", "remove the controls"),
    ("xl/ctrlProps/", "form controls", "remove the form controls"),
)

# Children of a worksheet <extLst><ext> (Excel 2010+ features stored outside the main schema);
# openpyxl warns "... extension is not supported and will be removed" and drops them all.
_EXT_FEATURES: dict[str, tuple[str, str]] = {
    "dataValidations": (
        "drop-down lists that take their choices from another sheet",
        "give each list's source range a name (Formulas > Define Name) and use =ThatName as "
        "the drop-down's source, or type the choices into the drop-down itself",
    ),
    "conditionalFormattings": (
        "Excel 2010+ conditional formatting (data bars, icon sets or rules using another sheet)",
        "remove those conditional formatting rules",
    ),
    "sparklineGroups": ("sparklines", "remove the sparklines"),
    "slicerList": ("slicers", "remove the slicers"),
    "timelineRefs": ("timelines", "remove the timeline filters"),
}
_EXTLST_OPEN = re.compile(rb"<(?:[A-Za-z0-9_]+:)?extLst\b")
_EXTLST_CLOSE = re.compile(rb"</(?:[A-Za-z0-9_]+:)?extLst>")
_EXT_CHILD_RE = re.compile(rb"<ext\b[^>]*>\s*<(?:[A-Za-z0-9_]+:)?([A-Za-z0-9_]+)")
_SHEET_TAG_RE = re.compile(rb"<(?:[A-Za-z0-9_]+:)?(oleObjects|controls)\b")


# A zip bomb (a small .xlsx that inflates to gigabytes) would exhaust memory in openpyxl. Real
# registers, forms and compliance workbooks unpack to a few MB; zipfile never inflates a part
# past the size its directory declares, so checking the declared sizes bounds what is read.
MAX_UNPACKED_BYTES = 200 * 2**20


def check_unpacked_size(path: Path, zf: zipfile.ZipFile) -> None:
    total = sum(info.file_size for info in zf.infolist())
    if total > MAX_UNPACKED_BYTES:
        raise InputError(
            f"{path} unpacks to {total // 2**20} MB, more than the "
            f"{MAX_UNPACKED_BYTES // 2**20} MB a workbook here may hold (a damaged or hostile "
            "file?); it was not opened. Open it in Excel and save it again, or restore a copy "
            "from the "
            f"{path.parent / '.backups'} folder"
        )


def lossy_features(path: Path, parts: Parts | None = None) -> list[tuple[str, str]]:
    """What saving ``path`` with openpyxl would delete: ``(feature, what to do)`` pairs.

    Looks at the zip parts only (cheap, and works on files openpyxl cannot load). ``parts``
    keeps the sheets it inflates for the rest of a write (the streaming append reads them)."""
    parts = parts or Parts()
    found: dict[str, str] = {}
    with zipfile.ZipFile(path) as zf:
        check_unpacked_size(path, zf)
        names = zf.namelist()
        for prefix, feature, action in _PART_FEATURES:
            if any(n.startswith(prefix) for n in names):
                found.setdefault(feature, action)
        for info in zf.infolist():
            name = info.filename
            if not (name.startswith("xl/worksheets/") and name.endswith(".xml")):
                continue
            sheet = parts.sheet(zf, info)
            # A plain rows region holds none of the tags looked for, and a well-formed sheet
            # without it has no tag that runs into it: the same findings from a few KB.
            _sheet_losses(sheet.frame() if sheet.frame_ok else sheet.data, found)
    return list(found.items())


def _sheet_losses(xml: bytes, found: dict[str, str]) -> None:
    for tag in _SHEET_TAG_RE.findall(xml):
        kind = "embedded objects" if tag == b"oleObjects" else "form controls"
        found.setdefault(kind, f"remove the {kind}")
    # Sample of what Excel writes for a drop-down listing another sheet:
    # <extLst><ext uri="{CCE6A557-97BC-4b89-ADB6-D9C93CAAB3DF}" xmlns:x14="...">
    #   <x14:dataValidations count="1"><x14:dataValidation type="list">
    #   <x14:formula1><xm:f>Lists!$A$1:$A$3</xm:f></x14:formula1><xm:sqref>B2:B50</xm:sqref>
    #   </x14:dataValidation></x14:dataValidations></ext></extLst>
    for block in _extlst_blocks(xml):
        children = _EXT_CHILD_RE.findall(block) or [b"unknown"]
        for child in children:
            local = child.decode("ascii", "replace")
            feature, action = _EXT_FEATURES.get(
                local,
                (
                    f"an Excel extension this service cannot keep ({local})",
                    "save a copy without it or ask the administrator",
                ),
            )
            found.setdefault(feature, action)


def _defused(exc: BaseException | None) -> bool:
    """Whether defusedxml (which openpyxl parses with when installed) refused the XML;
    openpyxl re-raises it as a ValueError, so look down the chain."""
    while exc is not None:
        if isinstance(exc, DefusedXmlException):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _extlst_blocks(xml: bytes) -> Iterator[bytes]:
    """Each ``<extLst>…</extLst>`` in ``xml``, in linear time: one lazy regex spanning both tags
    rescans to the end for every unclosed opening tag, and a hostile sheet of them (a few KB
    zipped) would hold the writer for hours."""
    pos = 0
    while (start := _EXTLST_OPEN.search(xml, pos)) is not None:
        end = _EXTLST_CLOSE.search(xml, start.end())
        if end is None:
            return
        yield xml[start.start() : end.end()]
        pos = end.end()


def _lossy_message(path: Path, features: list[tuple[str, str]]) -> str:
    lost = "; ".join(f for f, _ in features)
    todo = "; ".join(a for _, a in features)
    return (
        f"not writing to {path.name}: saving it would delete {lost} (the local workbook "
        f"backend cannot keep them). To fix: {todo}. Or use a separate register workbook. "
        f"Nothing was changed; rows stay pending until then."
    )


# ------------------------------------------------------------------ locking


def owner_files(path: Path) -> list[Path]:
    """Owner/lock files that office programs create while a person has ``path`` open."""
    name = path.name
    candidates = [f"~${name}", f".~lock.{name}#"]
    if len(name) > 2:
        candidates.append(f"~${name[2:]}")  # long names: Office replaces the first two characters
    return [path.with_name(c) for c in candidates if path.with_name(c).exists()]


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def writer_lock(path: Path, wait_seconds: float) -> Iterator[None]:
    """Hold the exclusive writer lock on ``path``; ``LockedError`` after ``wait_seconds``."""
    lp = lock_path(path)
    with exclusive_lock(lp, wait_seconds=wait_seconds) as mine:
        if not mine:
            raise LockedError(
                f"{path.name} is being written by another prevent-service process "
                f"({holder(lp)}); will retry",
                retry_after=5,
            )
        yield


# ------------------------------------------------------------------ the backend


@dataclass
class _Layout:
    """Where a table's parts are on its sheet (1-based sheet rows and columns)."""

    headers: list[str]
    min_col: int
    max_col: int
    header_row: int
    first_row: int  # first data row
    last_row: int  # last row inside the table's ref (data)
    totals: int


class XlsxWorkbook:
    """A local ``.xlsx`` file as a ``Workbook`` (see the module docstring for the safety rules)."""

    def __init__(
        self,
        path: Path,
        *,
        tz: tzinfo = UTC,
        lock_wait_seconds: float = 5.0,
        backups: int = 10,
        streaming: bool = False,
    ) -> None:
        self.path = Path(path)
        self.tz = tz
        self.lock_wait_seconds = lock_wait_seconds
        self.backups = backups
        self._cache_key: tuple[int, int, int] | None = None
        self._tables: dict[str, Table] = {}
        self._lossy: list[tuple[str, str]] | None = None
        self._inspected: tuple[tuple[tuple[str, int, int], ...], list[tuple[str, str]]] | None
        self._inspected = None
        # ``streaming``: appends edit the zip in place of a load and save (connectors.xlsx_append;
        # same safety rules, openpyxl path for layouts it does not handle). The service turns it
        # on; a bare XlsxWorkbook keeps the openpyxl path.
        self._appender: Appender | None = None
        if streaming:
            from connectors.xlsx_append import Appender  # (it builds on this module)

            self._appender = Appender(self.path, tz)

    @classmethod
    def from_config(
        cls, section: XlsxWorkbookConfig, config: Config, ledger: Ledger | None = None
    ) -> XlsxWorkbook:
        return cls(section.path, tz=config.organisation.tz, streaming=True)

    @staticmethod
    def create(path: Path, specs: Sequence[TableSpec]) -> None:
        """Lay out a new workbook file (``prevent-service init``); see ``create_workbook``."""
        create_workbook(path, specs)

    def provision(self, specs: Sequence[TableSpec]) -> Iterator[CheckResult]:
        """``prevent-service provision``: lay the file out as ``init`` does if it is missing;
        an existing file is left alone."""
        label = f"workbook {self.path}"
        if self.path.exists():
            yield CheckResult(label, True, "left alone: the file exists and is never overwritten")
            return
        try:
            self.path.parent.mkdir(PRIVATE_DIR, parents=True, exist_ok=True)
            create_workbook(self.path, specs, tz=self.tz)
        except (OSError, PermanentError) as exc:
            yield CheckResult(label, False, str(exc))
            return
        yield CheckResult(
            label, True, f"created, with table(s) {', '.join(s.table for s in specs)}"
        )

    # -- Workbook protocol ---------------------------------------------------------------

    def read_table(self, table: str) -> Table:
        key = self._stat_key()
        if key != self._cache_key:
            self._cache_key, self._tables, self._lossy = key, {}, None
        cached = self._tables.get(table.casefold())
        if cached is not None:
            return cached
        wb = self._load(for_write=False)
        try:
            ws, tbl = self._locate(wb, table)
            lay = self._layout(ws, tbl)
            formulas = _formula_cells(ws, lay, range(lay.min_col, lay.max_col + 1))
            rows = self._data_rows(ws, lay, self._saved_values(ws.title, formulas))
            result = Table(
                name=tbl.displayName or tbl.name,
                headers=tuple(lay.headers),
                rows=tuple(r for _, r in rows),
                row_numbers=tuple(n for n, _ in rows),
                sheet=ws.title,
            )
        finally:
            wb.close()
        self._tables[table.casefold()] = result
        return result

    def append_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], *, key_column: str | None = None
    ) -> None:
        """Append under the lock; with ``key_column``, rows whose key is already in the table
        are skipped (so a retry never makes a second row)."""
        if not rows:
            return

        def mutate(wb: XlWorkbook) -> bool:
            ws, tbl = self._locate(wb, table)
            return self._append(ws, tbl, rows, key_column)

        appender = self._appender
        fast = None if appender is None else (lambda p: appender.plan(table, rows, key_column, p))
        self._write(mutate, fast)

    @contextlib.contextmanager
    def _streamed(
        self, table: str
    ) -> Iterator[tuple[tuple[str, int, int, int, int, list[str]], Any] | None]:
        """Where ``table`` is (read from the zip parts) and its sheet opened read-only, for the
        streaming reads; None where they do not apply (a layout the zip-level lookup does not
        handle, a file openpyxl cannot open): the caller reads the whole table instead."""
        from connectors.xlsx_append import locate_table

        try:
            with zipfile.ZipFile(self.path) as zf:
                check_unpacked_size(self.path, zf)
        except (zipfile.BadZipFile, OSError):
            yield None  # not a workbook, or missing: read_table names the file and the fix
            return
        where = locate_table(self.path, table)
        if where is None:
            yield None
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # extensions: reported by a write's full load
            try:
                wb = openpyxl.load_workbook(self.path, read_only=True, data_only=False)
            except Exception:
                wb = None
            try:
                yield None if wb is None else (where, wb[where[0]])
            finally:
                if wb is not None:
                    wb.close()

    def read_columns(self, table: str, columns: Sequence[str]) -> Table:
        """``read_table`` with only ``columns`` (those the table has), streamed row by row
        (openpyxl read-only): a fraction of the memory for a large register. Rows blank in
        all of ``columns`` are left out. Formula cells among them, or a layout the zip-level
        lookup does not handle, read the whole table instead (the same values)."""
        key = self._stat_key()
        if key != self._cache_key:
            self._cache_key, self._tables, self._lossy = key, {}, None
        cache = "\0".join([table.casefold(), *columns])
        cached = self._tables.get(cache) or self._tables.get(table.casefold())
        if cached is not None:
            return cached
        rows: list[dict[str, Any]] = []
        numbers: list[int] = []
        with self._streamed(table) as streamed:
            if streamed is None:
                return self.read_table(table)  # which says what is wrong with the file
            (sheet, first, last, min_col, max_col, headers), ws = streamed
            picked = sorted({i for c in columns if (i := find_header(headers, c)) is not None})
            names = [headers[i] for i in picked]
            grid = ws.iter_rows(min_row=first, max_row=last, min_col=min_col, max_col=max_col)
            for r, row in enumerate(grid, start=first):
                cells = [row[i] if i < len(row) else None for i in picked]
                if any(getattr(c, "data_type", None) == "f" for c in cells):
                    return self.read_table(table)  # saved values: the full read's pass
                values = [_read_cell(c) for c in cells]
                if all(is_blank(v) for v in values):
                    continue
                rows.append(dict(zip(names, values, strict=True)))
                numbers.append(r)
        result = Table(
            name=table,
            headers=tuple(names),
            rows=tuple(rows),
            row_numbers=tuple(numbers),
            sheet=sheet,
        )
        self._tables[cache] = result
        return result

    def read_rows_where(self, table: str, column: str, values: Sequence[str]) -> Table:
        """The rows whose ``column`` holds one of ``values`` (trimmed, any case), every column,
        found by streaming the sheet (openpyxl read-only) instead of loading the workbook: a
        case look-up in a large register. Formula cells read as in ``read_table`` (a second
        streaming pass over the rows found). A layout the zip-level lookup does not handle
        reads the whole table and filters it."""
        wanted = {v.strip().casefold() for v in values}
        fast = self._rows_matching(
            table, column, lambda v: str(v or "").strip().casefold() in wanted, saved=False
        )
        if fast is not None:
            return fast
        found: list[tuple[int, list[Any]]] = []
        formulas: dict[tuple[int, int], str] = {}
        with self._streamed(table) as streamed:
            key = None if streamed is None else find_header(streamed[0][5], column)
            if streamed is None or key is None:
                return rows_where(self.read_table(table), column, values)  # says what is wrong
            (sheet, first, last, min_col, _max_col, headers), ws = streamed
            grid = ws.iter_rows(
                min_row=first, max_row=last, min_col=min_col, max_col=min_col + len(headers) - 1
            )
            for r, row in enumerate(grid, start=first):
                cell = row[key] if key < len(row) else None
                if str(_read_cell(cell) or "").strip().casefold() not in wanted:
                    continue
                cells = [row[i] if i < len(row) else None for i in range(len(headers))]
                for i, c in enumerate(cells):
                    if getattr(c, "data_type", None) == "f":
                        value = c.value  # type: ignore[union-attr]
                        formulas[(r, min_col + i)] = str(getattr(value, "text", None) or value)
                found.append((r, [_read_cell(c) for c in cells]))
        saved = self._saved_values(sheet, formulas)
        rows = []
        for r, cells_read in found:
            for (row_number, col), value in saved.items():
                if row_number == r:
                    cells_read[col - min_col] = value
            rows.append(dict(zip(headers, cells_read, strict=True)))
        return Table(
            name=table,
            headers=tuple(headers),
            rows=tuple(rows),
            row_numbers=tuple(r for r, _ in found),
            sheet=sheet,
        )

    def read_rows_matching(self, table: str, column: str, match: Callable[[Any], bool]) -> Table:
        """The rows whose ``column`` value (as ``read_table`` gives it) passes ``match``, every
        column; found from the sheet's bytes where it can (``_rows_matching``), else from the
        table read whole."""
        fast = self._rows_matching(table, column, match, saved=True)
        if fast is not None:
            return fast
        return rows_matching(self.read_table(table), column, match)

    def _rows_matching(
        self, table: str, column: str, match: Callable[[Any], bool], *, saved: bool
    ) -> Table | None:
        """The rows found from the sheet's bytes (``connectors.xlsx_append.rows_matching``: the
        column's cells by one byte search, only the rows found parsed), or None where that
        does not apply: a case look-up in a large register costs a fraction of a second."""
        from connectors.xlsx_append import rows_matching as scan

        try:
            with zipfile.ZipFile(self.path) as zf:
                check_unpacked_size(self.path, zf)
        except (zipfile.BadZipFile, OSError):
            return None  # not a workbook, or missing: read_table names the file and the fix
        got = scan(self.path, table, column, match, saved=saved)
        if got is None:
            return None
        sheet, headers, found = got
        return Table(
            name=table,
            headers=tuple(headers),
            rows=tuple(dict(zip(headers, values, strict=True)) for _, values in found),
            row_numbers=tuple(n for n, _ in found),
            sheet=sheet,
        )

    def find_rows(self, table: str, column: str, values: Sequence[str]) -> dict[str, int]:
        return rows_with_keys(self.read_table(table), column, values, where=self.path.name)

    def update_cells(self, table: str, updates: Sequence[CellUpdate]) -> int:
        if not updates:
            return 0

        def mutate(wb: XlWorkbook) -> int:
            ws, tbl = self._locate(wb, table)
            return self._update(ws, tbl, updates)

        return self._write(mutate)

    def writable(self) -> str | None:
        try:
            self._precheck()
            if self._lossy is None or self._cache_key != self._stat_key():
                self._cache_key, self._tables = self._stat_key(), {}
                self._lossy = self._inspect()
            if self._lossy:
                return _lossy_message(self.path, self._lossy)
            with writer_lock(self.path, 0):
                pass
        except (LockedError, PermanentError, InputError) as exc:
            return str(exc)
        if not os.access(self.path.parent, os.W_OK):
            return f"cannot write in the folder {self.path.parent}; check its permissions"
        return None

    def ensure_table(self, spec: TableSpec) -> bool:
        """Add the table on a new sheet under the usual write rules (lock, owner file,
        features openpyxl would drop, atomic save, backup) when no table has its name. The
        check first reads only the zip's table parts, so an upgraded file costs no load."""
        if spec.table.casefold() in self._table_names():
            return False

        def mutate(wb: XlWorkbook) -> bool:
            names = {t.displayName.casefold() for ws in wb.worksheets for t in ws.tables.values()}
            if spec.table.casefold() in names:
                return False  # added meanwhile by another process
            sheets = {ws.title.casefold() for ws in wb.worksheets}
            sheet, n = spec.sheet, 1
            while sheet.casefold() in sheets:  # a person's sheet of that name: leave it be
                n += 1
                sheet = f"{spec.sheet} {n}"
            _lay_out_sheet(wb, replace(spec, sheet=sheet), self.tz)
            return True

        return bool(self._write(mutate))

    def _table_names(self) -> set[str]:
        """The workbook's table names (casefolded), from its ``xl/tables/*.xml`` parts."""
        self._stat_key()
        try:
            with zipfile.ZipFile(self.path) as zf:
                check_unpacked_size(self.path, zf)
                names = set()
                for part in zf.namelist():
                    if part.startswith("xl/tables/") and part.endswith(".xml"):
                        root = DefusedET.fromstring(zf.read(part))
                        names.add(str(root.get("displayName") or root.get("name")).casefold())
                return names
        except InputError:
            raise
        except Exception as exc:
            raise InputError(
                f"{self.path} is not a readable Excel workbook ({type(exc).__name__}); "
                "open it in Excel and save it as .xlsx, or restore a copy from the "
                f"{self.path.parent / '.backups'} folder"
            ) from exc

    def close(self) -> None:
        self._tables.clear()
        self._cache_key = None

    # -- reading -------------------------------------------------------------------------

    def _stat_key(self) -> tuple[int, int, int]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise PermanentError(
                f"workbook {self.path} not found; check the path in the config "
                "(or run `prevent-service init` to create it)"
            ) from None
        except OSError as exc:
            raise PermanentError(f"cannot read {self.path}: {exc.strerror}") from exc
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self, *, for_write: bool) -> XlWorkbook:
        """Load the whole workbook (tables are only available outside read-only mode)."""
        self._stat_key()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with zipfile.ZipFile(self.path) as zf:
                    check_unpacked_size(self.path, zf)
                wb = openpyxl.load_workbook(self.path, data_only=False)
            except PermissionError as exc:
                raise PermanentError(
                    f"cannot read {self.path}: permission denied; check its permissions"
                ) from exc
            except InputError:
                raise
            except Exception as exc:  # zip, XML, KeyError on missing parts, ValueError…
                if _defused(exc):
                    raise InputError(
                        f"{self.path} holds XML entity declarations (an entity bomb or an "
                        "external entity: Excel never writes them), so it was refused as unsafe; "
                        "open it in Excel and save it as .xlsx, or restore a copy from the "
                        f"{self.path.parent / '.backups'} folder"
                    ) from exc
                raise InputError(
                    f"{self.path} is not a readable Excel workbook ({type(exc).__name__}); "
                    "open it in Excel and save it as .xlsx, or restore a copy from the "
                    f"{self.path.parent / '.backups'} folder"
                ) from exc
        if for_write:
            dropped = [str(w.message) for w in caught if "removed" in str(w.message)]
            if dropped:  # defence in depth behind lossy_features()
                wb.close()
                raise PermanentError(
                    f"not writing to {self.path.name}: openpyxl reports it would drop parts of "
                    f"it ({'; '.join(sorted(set(dropped)))}). Nothing was changed."
                )
        return wb

    def _locate(self, wb: XlWorkbook, table: str) -> tuple[Worksheet, XlTable]:
        present: list[str] = []
        folded: tuple[Worksheet, XlTable] | None = None
        for ws in wb.worksheets:
            for tbl in ws.tables.values():  # (TableList.items() gives refs, not tables)
                name = tbl.displayName
                if name == table:
                    return ws, tbl
                if name.casefold() == table.casefold():
                    folded = (ws, tbl)
                present.append(f"{name} (sheet {ws.title})")
        if folded:
            return folded
        raise InputError(
            f"{self.path.name} has no table named {table!r}; tables in it: "
            f"{', '.join(present) or 'none'}. In Excel, Table Design > Table Name shows a "
            "table's name; correct it or the config."
        )

    def _layout(self, ws: Worksheet, tbl: XlTable) -> _Layout:
        min_col, min_row, max_col, max_row = range_boundaries(tbl.ref)
        header_rows = 1 if tbl.headerRowCount is None else int(tbl.headerRowCount)
        totals = int(tbl.totalsRowCount or 0)
        if tbl.tableColumns:
            headers = [str(c.name) for c in tbl.tableColumns]
        else:
            headers = [
                "" if ws.cell(min_row, c).value is None else str(ws.cell(min_row, c).value)
                for c in range(min_col, max_col + 1)
            ]
        return _Layout(
            headers=headers,
            min_col=min_col,
            max_col=max_col,
            header_row=min_row,
            first_row=min_row + header_rows,
            last_row=max_row - totals,
            totals=totals,
        )

    def _data_rows(
        self,
        ws: Worksheet,
        lay: _Layout,
        saved: Mapping[tuple[int, int], Any] | None = None,
    ) -> list[tuple[int, dict[str, Any]]]:
        """Non-blank data rows as (sheet row, values by header); formula cells in ``saved``
        read as their saved values.

        A row holding a formula is never blank, whatever the formula gives, so reads and
        writes (which see formulas) number rows alike. Looks cells up without creating them
        (``ws.iter_rows`` would add every empty cell)."""
        out: list[tuple[int, dict[str, Any]]] = []
        cells = ws._cells
        columns = range(lay.min_col, lay.max_col + 1)
        for r in range(lay.first_row, lay.last_row + 1):
            values = [_read_cell(cells.get((r, c))) for c in columns]
            if all(is_blank(v) for v in values):
                continue
            if saved:
                for i, c in enumerate(columns):
                    if (r, c) in saved:
                        values[i] = saved[(r, c)]
            out.append((r, dict(zip(lay.headers, values, strict=False))))
        return out

    def _saved_values(
        self, sheet: str, formulas: Mapping[tuple[int, int], str]
    ) -> dict[tuple[int, int], Any]:
        """The values Excel saved for ``formulas`` (cell → formula text), read with
        ``data_only=True``; a formula without one becomes an ``UnsavedFormula``.

        Only run when the range holds formulas: a second, streaming pass over one sheet.
        (openpyxl cannot tell "no saved value" from a saved empty text; both read as
        ``UnsavedFormula``.)"""
        if not formulas:
            return {}
        rows = [r for r, _ in formulas]
        cols = [c for _, c in formulas]
        min_row, min_col = min(rows), min(cols)
        out: dict[tuple[int, int], Any] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # extensions: reported by the full load already
            try:
                wb = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
            except Exception as exc:
                raise InputError(
                    f"{self.path} is not a readable Excel workbook ({type(exc).__name__}); "
                    "open it in Excel and save it as .xlsx"
                ) from exc
            try:
                grid = wb[sheet].iter_rows(
                    min_row=min_row, max_row=max(rows), min_col=min_col, max_col=max(cols)
                )
                for r, row in enumerate(grid, start=min_row):
                    for c, cell in enumerate(row, start=min_col):
                        if (r, c) in formulas:
                            value = _read_cell(cell)
                            out[(r, c)] = (
                                UnsavedFormula(formulas[(r, c)]) if is_blank(value) else value
                            )
            finally:
                wb.close()
        return out

    # -- writing -------------------------------------------------------------------------

    def _precheck(self) -> None:
        owners = owner_files(self.path)
        if owners:
            raise LockedError(
                f"{self.path.name} is open in Excel (owner file {owners[0].name} beside it); "
                "the change will be written after it is closed. If nobody has it open, "
                f"delete {owners[0].name}.",
                retry_after=60,
            )

    def _inspect(self, parts: Parts | None = None) -> list[tuple[str, str]]:
        try:
            # What would be lost depends on the parts' names and bytes only: not read again
            # while every part's CRC and size are the same (a flat cost for repeated appends).
            with zipfile.ZipFile(self.path) as zf:
                key = tuple((i.filename, i.CRC, i.file_size) for i in zf.infolist())
            if self._inspected is not None and self._inspected[0] == key:
                return self._inspected[1]
            found = lossy_features(self.path, parts)
            self._inspected = (key, found)
            return found
        except (zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
            raise InputError(
                f"{self.path} is not a readable Excel workbook ({type(exc).__name__}); "
                "open it in Excel and save it as .xlsx, or restore a copy from the "
                f"{self.path.parent / '.backups'} folder"
            ) from exc

    def _write(
        self,
        mutate: Callable[[XlWorkbook], T],
        fast: Callable[[Parts], Plan | None] | None = None,
    ) -> T:
        """Locked, checked, atomic read-modify-write; ``mutate`` returning falsy skips the save.

        ``fast`` (a streaming append) is tried first, under the same lock and checks; when it
        returns None the workbook is loaded and ``mutate``-d as usual."""
        self._precheck()
        with writer_lock(self.path, self.lock_wait_seconds):
            self._precheck()  # Excel may have opened it while we waited
            before = self._stat_key()
            parts = Parts()  # the sheets the check inflates, kept for the streaming append
            features = self._inspect(parts)
            if features:
                raise PermanentError(_lossy_message(self.path, features))
            plan = fast(parts) if fast is not None else None
            del parts
            if plan is not None:
                if plan.changed:
                    self._save(plan.write, before)
                    plan.commit()
                    # New rows and ranges add no part or tag that lossy_features looks for
                    # (cell text is escaped), so what it found still holds: nothing.
                    self._inspected = (plan.parts, features)
                self._cache_key, self._tables = None, {}
                return plan.changed  # type: ignore[return-value]  # (only appends are fast)
            wb = self._load(for_write=True)
            try:
                result = mutate(wb)
                if result:
                    self._save(wb.save, before)
            finally:
                wb.close()
        self._cache_key, self._tables = None, {}
        return result

    def _save(self, write: Callable[[Path], object], before: tuple[int, int, int]) -> None:
        """Write the new version with ``write(temp file)``, then swap it in (see module doc)."""
        folder = self.path.parent
        tmp = folder / f".{self.path.name}.{secrets.token_hex(4)}.tmp"
        try:
            try:
                create_private(tmp, like=self.path)  # never readable by others meanwhile
                write(tmp)
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise PermanentError(
                    f"cannot write a new version of {self.path.name} in {folder}: "
                    f"{exc.strerror}; check free space and the folder's permissions"
                ) from exc
            self._precheck()
            if self._stat_key() != before:
                raise TransientError(
                    f"{self.path.name} changed on disk while it was being updated; "
                    "nothing was written, will retry"
                )
            self._backup()
            try:
                os.replace(tmp, self.path)
            except PermissionError as exc:  # Windows: Excel holds the file open
                raise LockedError(
                    f"{self.path.name} is in use by another program; will retry", retry_after=60
                ) from exc
            except OSError as exc:
                raise TransientError(
                    f"cannot replace {self.path.name} with its new version: {exc.strerror}; "
                    "the old version is unchanged, will retry"
                ) from exc
            fsync_dir(folder)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _backup(self) -> None:
        """Keep the current version in ``.backups/`` (the newest ``self.backups`` are kept)."""
        if self.backups <= 0:
            return
        folder = self.path.parent / ".backups"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = folder / f"{self.path.stem}.{stamp}{self.path.suffix}"
        try:
            folder.mkdir(PRIVATE_DIR, exist_ok=True)
            try:  # os.replace swaps the directory entry, so a hard link keeps the old bytes
                os.link(self.path, target)
            except OSError:
                shutil.copy2(self.path, target)
            olds = sorted(folder.glob(f"{glob_escape(self.path.stem)}.*{self.path.suffix}"))
            for old in olds[: -self.backups]:
                old.unlink()
        except OSError as exc:
            raise PermanentError(
                f"cannot keep a backup of {self.path.name} in {folder}: {exc.strerror}; "
                "check free space and the folder's permissions"
            ) from exc

    def _append(
        self,
        ws: Worksheet,
        tbl: XlTable,
        rows: Sequence[Mapping[str, Any]],
        key_column: str | None,
    ) -> bool:
        lay = self._layout(ws, tbl)
        if lay.totals:
            raise PermanentError(
                f"{self.path.name}: table {tbl.displayName!r} has a Total Row, so rows cannot be "
                "added below it safely; turn it off (Table Design > Total Row)"
            )
        existing = self._data_rows(ws, lay)
        if key_column is not None:
            rows = new_keys_only(
                self.path.name,
                tbl.displayName,
                lay.headers,
                [r for _, r in existing],
                rows,
                key_column,
            )
            if not rows:
                return False
        mapped = [self._map_row(tbl.displayName, lay, row) for row in rows]
        start = existing[-1][0] + 1 if existing else lay.first_row
        end = start + len(mapped) - 1
        # Refuse to overwrite anything a person typed just below the table.
        typed = [
            r
            for r in range(max(start, lay.last_row + 1), end + 1)
            for c in range(lay.min_col, lay.max_col + 1)
            if not is_blank(_peek(ws, r, c))
        ]
        if typed:
            raise PermanentError(
                f"{self.path.name}: sheet {ws.title!r} row {typed[0]} just below table "
                f"{tbl.displayName!r} is not empty, so the new row cannot go there without "
                "overwriting it. Move what is typed there, or include it in the table "
                "(Table Design > Resize Table)."
            )
        above = existing[-1][0] if existing else None
        calculated = _calculated_columns(tbl, lay)
        # Rows grow with their wrapped text (connectors.xlsx_rows), unless the sheet's rows
        # have a fixed height.
        widths = None if ws.sheet_format.customHeight else column_widths(ws)
        for offset, values in enumerate(mapped):
            r = start + offset
            for c in range(lay.min_col, lay.max_col + 1):
                # Style from the row above: the table's last row, or the row just added
                # (a first batch into an empty table styles like its first row).
                style_src = ws.cell(r - 1, c) if above or offset else None
                value = values.get(c)
                if value is None and c in calculated:
                    value = calculated[c]  # as Excel fills a row it adds
                if value is None and style_src is None:
                    continue
                _put(ws.cell(r, c), value, style_src)
            if widths is not None:
                _fit_row(ws, r, values, widths)
        if end > lay.last_row:
            new_ref = (
                f"{get_column_letter(lay.min_col)}{lay.header_row}:"
                f"{get_column_letter(lay.max_col)}{end}"
            )
            tbl.ref = new_ref
            if tbl.autoFilter is not None:
                tbl.autoFilter.ref = new_ref
            _extend_validations(ws, lay, end)
            _extend_conditional_formats(ws, lay, end)
        return True

    def _map_row(self, table: str, lay: _Layout, row: Mapping[str, Any]) -> dict[int, Any]:
        return map_row(
            lay.headers,
            lay.min_col,
            row,
            self.tz,
            lambda key: missing_column(self.path.name, table, key, lay.headers),
        )

    def _update(self, ws: Worksheet, tbl: XlTable, updates: Sequence[CellUpdate]) -> int:
        lay = self._layout(ws, tbl)
        # The caller's ``expect`` values are what a read gave: saved values of formulas.
        guard = {find_header(lay.headers, column) for upd in updates for column in upd.expect}
        formulas = _formula_cells(ws, lay, [lay.min_col + i for i in guard if i is not None])
        rows = self._data_rows(ws, lay, self._saved_values(ws.title, formulas))
        written = 0
        for upd in updates:
            target = find_header(lay.headers, upd.column)
            if target is None:
                raise missing_column(self.path.name, tbl.displayName, upd.column, lay.headers)
            if not 0 <= upd.row_index < len(rows):
                continue
            sheet_row, current = rows[upd.row_index]
            if not _expect_matches(self.path.name, tbl.displayName, lay.headers, current, upd):
                continue
            cell = ws.cell(sheet_row, lay.min_col + target)
            if not upd.overwrite and not is_blank(cell.value):
                continue
            value = to_cell_value(upd.value, self.tz, column=upd.column)
            if upd.overwrite and key_text(cell.value) == key_text(value):
                continue  # already there: no save, no backup
            _put(cell, value, None)
            current[lay.headers[target]] = cell.value
            written += 1
        return written


def _expect_matches(
    where: str, table: str, headers: Sequence[str], current: Mapping[str, Any], upd: CellUpdate
) -> bool:
    for column, expected in upd.expect.items():
        index = find_header(headers, column)
        if index is None:
            raise missing_column(where, table, column, headers)
        if key_text(current.get(headers[index])) != key_text(expected):
            return False
    return True


def _formula_cells(
    ws: Worksheet, lay: _Layout, columns: Iterable[int]
) -> dict[tuple[int, int], str]:
    """The formula cells of the table's data rows in ``columns``: (row, col) → formula text."""
    cells = ws._cells
    out: dict[tuple[int, int], str] = {}
    for c in columns:
        for r in range(lay.first_row, lay.last_row + 1):
            cell = cells.get((r, c))
            if cell is not None and cell.data_type == "f":
                value = cell.value
                out[(r, c)] = str(getattr(value, "text", None) or value)  # ArrayFormula
    return out


def _calculated_columns(tbl: XlTable, lay: _Layout) -> dict[int, Formula]:
    """A person's calculated columns (a formula Excel keeps on the table column, e.g.
    ``<calculatedColumnFormula>TODAY()-Concerns[[#This Row],[Recorded at]]</…>``):
    sheet column → the formula for a new row."""
    out: dict[int, Formula] = {}
    for index, column in enumerate(tbl.tableColumns or ()):
        formula = column.calculatedColumnFormula
        text = getattr(formula, "attr_text", None) if formula is not None else None
        if text and not getattr(formula, "array", False):
            out[lay.min_col + index] = Formula(text if text.startswith("=") else f"={text}")
    return out


def column_widths(ws: Worksheet) -> dict[int, float | None]:
    """Column number → width (None: hidden), as connectors.xlsx_rows reads them from XML."""
    out: dict[int, float | None] = {}
    for dim in ws.column_dimensions.values():
        if not dim.min:
            continue
        for c in range(dim.min, (dim.max or dim.min) + 1):
            out[c] = None if dim.hidden else float(dim.width)
    return out


def _fit_row(ws: Worksheet, r: int, values: Mapping[int, Any], widths: Mapping[int, Any]) -> None:
    """Give row ``r`` (its cells already written) the height its wrapped text needs; a row
    that already has a height of its own keeps it."""
    if r in ws.row_dimensions and ws.row_dimensions[r].height is not None:
        return
    texts = [
        (value, widths.get(c, DEFAULT_WIDTH))
        for c, value in values.items()
        if isinstance(value, str)
        and widths.get(c, DEFAULT_WIDTH) is not None
        and (r, c) in ws._cells
        and ws._cells[(r, c)].alignment.wrap_text
    ]
    height = fitted_height(texts)
    if height is not None:
        ws.row_dimensions[r].height = height


def _peek(ws: Worksheet, row: int, col: int) -> Any:
    """A cell's value without creating the cell (``ws.cell`` would add empty cells)."""
    cell = ws._cells.get((row, col))
    return None if cell is None else cell.value


def _read_cell(cell: Any) -> Any:
    if cell is None:
        return None
    value = cell.value
    if (
        isinstance(value, datetime)
        and value.time() == time(0)
        and is_datetime(cell.number_format) == "date"
    ):
        return value.date()
    return value


def _put(cell: Cell, value: Any, style_src: Cell | None) -> None:
    """Write one value: style copied from the row above; text always stored as text."""
    if style_src is not None and style_src.has_style:
        cell._style = copy(style_src._style)
    if isinstance(value, Formula):  # only laid out by ``init``: a real formula
        cell.value = value.text
        cell.data_type = "f"
        return
    # The format the cell had before the value: openpyxl's setter gives a date in a General
    # cell its own ISO format ("yyyy-mm-dd h:mm:ss"), which must not count as the column's.
    before = is_datetime(cell.number_format)
    cell.value = value
    if isinstance(value, str):
        # openpyxl turns "=…" into a formula and "#N/A" into an error; we store text.
        cell.data_type = "s"
        cell.quotePrefix = looks_like_formula(value)
    elif cell.has_style and cell.quotePrefix:
        cell.quotePrefix = False
    if isinstance(value, datetime) and before != "datetime":
        cell.number_format = DATETIME_FORMAT
    elif isinstance(value, date) and not isinstance(value, datetime) and before != "date":
        cell.number_format = DATE_FORMAT  # (a date alone shows no "00:00")


def _extend_validations(ws: Worksheet, lay: _Layout, end: int) -> None:
    """Drop-downs that covered the table's last row cover the new rows too."""
    for dv in ws.data_validations.dataValidation:
        for rng in list(dv.sqref.ranges):
            if (
                rng.min_row <= lay.last_row <= rng.max_row < end
                and lay.min_col <= rng.min_col <= lay.max_col
            ):
                dv.sqref.add(
                    CellRange(
                        min_col=rng.min_col,
                        max_col=rng.max_col,
                        min_row=rng.max_row + 1,
                        max_row=end,
                    )
                )


def _extend_conditional_formats(ws: Worksheet, lay: _Layout, end: int) -> None:
    """Conditional formatting that covered the table's last row covers the new rows too, as
    Excel extends it when a table grows (a person's "Status is New → red" must colour a new
    concern). The rule list is keyed by range, so it is rebuilt in its order."""
    rules = ws.conditional_formatting._cf_rules
    rebuilt: dict[ConditionalFormatting, list[Any]] = {}
    changed = False
    for cf, cf_rules in rules.items():
        ranges = []
        for rng in cf.sqref.ranges:
            if (
                rng.min_row <= lay.last_row <= rng.max_row < end
                and lay.min_col <= rng.min_col <= lay.max_col
            ):
                rng = CellRange(
                    min_col=rng.min_col, max_col=rng.max_col, min_row=rng.min_row, max_row=end
                )
                changed = True
            ranges.append(rng)
        key = ConditionalFormatting(sqref=MultiCellRange(ranges), pivot=cf.pivot)
        rebuilt.setdefault(key, []).extend(cf_rules)
    if changed:
        rules.clear()
        rules.update(rebuilt)


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


# ------------------------------------------------------------------ laying out new workbooks

_TABLE_NAME_RE = re.compile(r"^[A-Za-z_\\][A-Za-z0-9_.]{0,254}$")
SERVICE_FILL = "DDEBF7"  # light blue: the service writes these columns
PERSON_FILL = "FFF2CC"  # light yellow: a person fills these in
_WIDTHS = {
    "text": 18.0,
    "long_text": 50.0,
    "date": 12.0,
    "datetime": 17.0,
    "number": 10.0,
    "choice": 18.0,
    "hidden": 12.0,
}
VALIDATION_ROWS = 2000  # drop-downs reach this far below the header (and grow with appends)


def create_workbook(path: Path, specs: Sequence[TableSpec], *, tz: tzinfo = UTC) -> None:
    """Lay out a new workbook: one sheet per spec holding one styled Excel table.

    Refuses to overwrite an existing file; writes atomically. Aware datetimes in starting rows
    are written in ``tz``."""
    path = Path(path)
    if path.exists():
        raise PermanentError(f"{path} already exists; not overwriting it")
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for spec in specs:
        _lay_out_sheet(wb, spec, tz)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        create_private(tmp)
        wb.save(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if the file appeared meanwhile: never overwrite
        except FileExistsError:
            raise PermanentError(f"{path} already exists; not overwriting it") from None
        except OSError:
            if path.exists():
                raise PermanentError(f"{path} already exists; not overwriting it") from None
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise PermanentError(f"cannot create {path}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _lay_out_sheet(wb: XlWorkbook, spec: TableSpec, tz: tzinfo) -> None:
    if not _TABLE_NAME_RE.match(spec.table):
        raise InputError(
            f"table name {spec.table!r} is not a valid Excel table name "
            "(letters, digits, _ and . only; starting with a letter or _)"
        )
    ws = wb.create_sheet(spec.sheet)
    ncols = len(spec.columns)
    # Every cell wraps at the top: text stays inside its cell (LibreOffice would otherwise let
    # it run over the empty cells beside it, and off the printed page), and its row grows with
    # it (connectors.xlsx_rows) unless the spec fixes the rows' height.
    fixed = spec.row_height is not None
    top_wrap = Alignment(vertical="top", wrap_text=True)
    for c, col in enumerate(spec.columns, start=1):
        cell = ws.cell(1, c, col.header)
        cell.data_type = "s"
        cell.font = Font(name="Calibri", bold=True, color="000000")
        fill = SERVICE_FILL if col.owner == "service" else PERSON_FILL
        cell.fill = PatternFill("solid", start_color=fill, end_color=fill)
        cell.alignment = top_wrap
        letter = get_column_letter(c)
        dim = ws.column_dimensions[letter]
        dim.width = col.width or _WIDTHS[col.kind]
        if col.kind == "hidden":
            dim.hidden = True
        if col.kind == "date":
            dim.number_format = DATE_FORMAT
        elif col.kind == "datetime":
            dim.number_format = DATETIME_FORMAT
        dim.alignment = top_wrap
        if col.kind == "choice":
            _add_choice_validation(ws, spec, c, len(spec.rows))
    for r, row in enumerate(spec.rows or ((None,) * ncols,), start=2):
        # With no starting rows, row 2 is the table's empty first row: styled here, so that
        # the first row the service appends (which takes its style from the row above, or
        # keeps the cell's own when there is none) wraps and formats as the rest will.
        texts: list[tuple[str, float | None]] = []
        for c, (value, col) in enumerate(zip(row, spec.columns, strict=False), start=1):
            cell = ws.cell(r, c)
            cell.alignment = top_wrap
            if col.kind == "date":
                cell.number_format = DATE_FORMAT
            elif col.kind == "datetime":
                cell.number_format = DATETIME_FORMAT
            if value is None and not spec.rows:
                continue
            if col.formula and value is None:
                value = Formula(f"={col.formula}")
            if not isinstance(value, Formula):
                value = to_cell_value(value, tz, column=col.header)
            _put(cell, value, None)
            if isinstance(value, str) and col.kind != "hidden":
                texts.append((value, ws.column_dimensions[get_column_letter(c)].width))
        height = None if fixed else fitted_height(texts)
        if height is not None:
            ws.row_dimensions[r].height = height
    last_row = max(2, len(spec.rows) + 1)  # an Excel table needs at least one data row
    ref = f"A1:{get_column_letter(ncols)}{last_row}"
    table = XlTable(displayName=spec.table, ref=ref)
    table.tableStyleInfo = TableStyleInfo(
        name="TableStyleMedium2", showRowStripes=True, showColumnStripes=False
    )
    table._initialise_columns()
    for column, col in zip(table.tableColumns, spec.columns, strict=True):
        column.name = col.header  # (openpyxl would name them from row 1 only if left empty)
        if col.formula:  # Excel fills a calculated column into each row added to the table
            column.calculatedColumnFormula = TableFormula(attr_text=col.formula)
    ws.add_table(table)
    ws.freeze_panes = spec.freeze
    if spec.row_height is not None:
        ws.sheet_format.defaultRowHeight = spec.row_height
        ws.sheet_format.customHeight = True
    if spec.header_height is not None:
        ws.row_dimensions[1].height = spec.header_height
    _print_setup(ws, spec)


# Column-width units a landscape A4 page holds at the smallest print scale worth reading
# (about 55 %: 112 units at 100 % with the margins below).
PRINT_UNITS_PER_PAGE = 210.0


def _print_setup(ws: Worksheet, spec: TableSpec) -> None:
    """Landscape A4, the header row on every page and, for a table that freezes columns,
    those columns too (a printed page of the register always shows the Reference).

    Scaled to as few pages across as keep the text readable (one for the Chronology and the
    compliance tables, four for the register's 37 columns), as many down as the rows take;
    a wide sheet prints across then down, so one set of rows reads on consecutive pages."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    width = sum(col.width or _WIDTHS[col.kind] for col in spec.columns if col.kind != "hidden")
    across = max(1, math.ceil(width / PRINT_UNITS_PER_PAGE))
    ws.page_setup.fitToWidth = across
    ws.page_setup.fitToHeight = 0  # as many pages down as it takes
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    if across > 1:
        ws.page_setup.pageOrder = "overThenDown"
    ws.print_title_rows = "1:1"
    frozen_cols = column_index_from_string(spec.freeze.rstrip("0123456789")) - 1
    if frozen_cols:
        ws.print_title_cols = f"A:{get_column_letter(frozen_cols)}"
    ws.print_options.gridLines = True
    ws.page_margins.left = ws.page_margins.right = 0.4
    ws.oddFooter.center.text = "Page &P of &N"


def _add_choice_validation(ws: Worksheet, spec: TableSpec, col: int, nrows: int) -> None:
    header = spec.columns[col - 1].header
    choices = spec.columns[col - 1].choices
    formula = '"' + ",".join(choices) + '"'
    if not choices or any("," in c or '"' in c for c in choices) or len(formula) > 257:
        raise InputError(
            f"column {header!r}: a drop-down needs 1+ choices without commas or quotes, "
            "255 characters in all"
        )
    dv = DataValidation(
        type="list",
        formula1=formula,
        allow_blank=True,
        showDropDown=False,  # (sic) False *shows* the in-cell arrow
        showErrorMessage=True,
        errorStyle="warning",
        errorTitle=header,
        error=f"Please choose one of: {', '.join(choices)}",
    )
    letter = get_column_letter(col)
    dv.add(f"{letter}2:{letter}{VALIDATION_ROWS + nrows + 1}")
    ws.add_data_validation(dv)
