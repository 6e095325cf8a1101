"""Append rows to a table in a local ``.xlsx`` without loading and re-saving the workbook.

``XlsxWorkbook.append_rows`` asks ``Appender.plan`` first (under its lock, after its owner-file
and lost-feature checks); ``None`` means "a layout this path does not handle", and the caller
uses the openpyxl path, which behaves exactly as before. When it does handle the layout:

* every zip member except the table's sheet, its table part and (when a new cell style is
  needed) the styles part is copied byte for byte, still compressed;
* the sheet XML is edited as bytes: new ``<row>`` elements go before ``</sheetData>``; the
  ``<dimension>``, the table's ``ref`` and ``autoFilter ref``, and the drop-downs and
  conditional formats that covered the table's last row are extended (as the openpyxl path
  extends them);
* each new cell is made by openpyxl's own code: ``_put`` (formula text stays text with Excel's
  quote prefix, dates get a date format) on a scratch cell carrying the file's styles, written
  by openpyxl's cell writer (text as inline strings, dates as serial numbers in the workbook's
  date system); a style the file lacks (e.g. quote prefix on a date column's style) is added to
  ``styles.xml``;
* the sheet is stored as three independently deflated segments (head, rows, tail, each ending
  at a full flush), so the next append in this process copies the compressed rows as they are
  and only compresses the new rows: the cost stays flat as the register grows. The CRC is
  combined from the segments' CRCs.

The first append of a process reads the sheet once (``_read_sheet``), and keeps it cheap at
10,000 rows (24 MB of XML): the sheet is inflated once for the write's lost-feature check and
this read together (``connectors.xlsx_parts.Parts``, ISA-L where installed); a rows region of
only the tags office programs write there ("plain") is read by byte searches — the row
numbers, the rows from the last one up until the last one with data, and the key column's
cells — rather than row by row; the rows are compressed once, at ISA-L's fastest level.

Handled: a table with a header row and no Total Row, on a sheet whose XML has no comments,
CDATA, DTD or namespace prefixes on elements and whose rows and cells carry their ``r``
references. Rows already where the new rows go are filled if they are blank in the table's
columns (formatted blank rows, such as the first row ``init`` lays out): their cells keep
their own style where ``_put`` would, their other cells and the row's height stay, and rows
further down are kept after the new ones. Anything else — something typed in the table's
columns below it where a new row goes, or anything surprising while reading — goes to the
openpyxl path, which also gives the usual errors (missing table or column, Total Row, text
typed below the table).

Safety: the file's XML is parsed with defusedxml (workbook, relationships, tables, styles) or
checked by expat — well-formed, with any DTD, comment, CDATA or processing instruction refused
— (the sheet, the first time its bytes are seen), and its unpacked size is bounded by the
caller (``check_unpacked_size``) before anything is inflated.
"""

from __future__ import annotations

import logging
import operator
import posixpath
import re
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from copy import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, tostring

import openpyxl
from defusedxml.ElementTree import fromstring as safe_fromstring
from openpyxl.cell._writer import etree_write_cell
from openpyxl.reader.strings import read_string_table
from openpyxl.styles.cell_style import StyleArray
from openpyxl.styles.numbers import BUILTIN_FORMATS_REVERSE
from openpyxl.styles.stylesheet import apply_stylesheet
from openpyxl.utils import column_index_from_string, get_column_letter, range_boundaries
from openpyxl.utils.datetime import CALENDAR_MAC_1904
from openpyxl.utils.escape import unescape
from openpyxl.worksheet._reader import WorkSheetParser
from openpyxl.worksheet.cell_range import CellRange, MultiCellRange

from connectors import xlsx_parts
from connectors.base import Formula, UnsavedFormula
from connectors.xlsx import (
    _put,
    _read_cell,
    find_header,
    is_blank,
    key_text,
    map_row,
)
from connectors.xlsx_parts import PartError, Parts, SheetText, crc32, crc32_combine, deflate
from connectors.xlsx_rows import (
    DEFAULT_WIDTH,
    column_widths,
    custom_default_height,
    fitted_height,
    format_height,
)
from service.errors import InputError

log = logging.getLogger(__name__)

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
_R_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_M = "{%s}" % MAIN_NS  # noqa: UP031 - braces in an f-string would need escaping


class Unsupported(Exception):
    """A layout the streaming path does not handle; the openpyxl path takes the append."""


# ------------------------------------------------------------------ small byte-level helpers

_ROW_RE = re.compile(rb"<row\b([^>]*?)(/?)>")
_CELL_RE = re.compile(rb"<c\b([^>]*?)(?:/>|>(.*?)</c>)", re.S)
_R_ATTR = re.compile(rb"""\sr\s*=\s*["']([A-Z]{0,3})(\d+)["']""")
_S_ATTR = re.compile(rb"""\ss\s*=\s*["'](\d+)["']""")
_SHEETDATA_RE = re.compile(rb"<sheetData\b[^>]*?(/?)>")
_PREFIXED_ELEMENT = re.compile(rb"</?[A-Za-z_][\w.-]*:")
_ROOT_RE = re.compile(rb"""\A(?:\xef\xbb\xbf)?\s*(?:<\?xml\b[^>]*\?>\s*)?<(\w+)\b([^>]*)>""")


def _attr_re(name: bytes) -> re.Pattern[bytes]:
    return re.compile(rb"""(\s""" + name + rb"""\s*=\s*)(["'])(.*?)\2""", re.S)


_REF = _attr_re(b"ref")
_SQREF = _attr_re(b"sqref")
_COUNT = _attr_re(b"count")


def _escape_attr(value: str) -> bytes:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;").encode("utf-8")


def _set_attr(tag: bytes, pattern: re.Pattern[bytes], name: bytes, value: str) -> bytes:
    """``tag`` (a start tag) with attribute ``name`` set to ``value``."""
    new = _escape_attr(value)
    m = pattern.search(tag)
    if m:
        return tag[: m.start(3)] + new + tag[m.end(3) :]
    end = len(tag) - (2 if tag.endswith(b"/>") else 1)
    return tag[:end] + b" " + name + b'="' + new + b'"' + tag[end:]


def _get_attr(tag: bytes, pattern: re.Pattern[bytes]) -> str | None:
    m = pattern.search(tag)
    if m is None:
        return None
    if b"&" in m.group(3):
        raise Unsupported("an entity in a range attribute")
    return m.group(3).decode("ascii")


def _check_xml(data: bytes, what: str) -> None:
    """Well-formed, and no DTD (so no entity bombs or external entities), comments, CDATA or
    processing instructions (which the byte-level reading would not see past); C-speed."""
    problem = xlsx_parts.xml_problem(data)
    if problem is not None:
        raise Unsupported(f"{what}: {problem}")


def _parse(data: bytes, what: str) -> Element:
    try:
        return safe_fromstring(data)
    except Exception as exc:  # entities, syntax: the openpyxl path gives the real error
        raise Unsupported(f"{what}: {type(exc).__name__}") from None


def _raw_member(fh: Any, info: zipfile.ZipInfo) -> bytes:
    try:
        return xlsx_parts.raw_member(fh, info)
    except PartError as exc:
        raise Unsupported(str(exc)) from None


@dataclass
class _Member:
    info: zipfile.ZipInfo
    method: int
    crc: int
    size: int
    raw: bytes


def _write_zip(target: Path, members: Sequence[_Member]) -> None:
    """A plain (non-zip64) zip of ``members``, their data already compressed."""
    central: list[bytes] = []
    offset = 0
    with open(target, "wb") as out:
        for m in members:
            info = m.info
            utf8 = info.flag_bits & 0x800
            name = info.filename.encode("utf-8" if utf8 else "cp437")
            y, mo, d, hh, mi, ss = info.date_time
            dos_date = (max(y, 1980) - 1980) << 9 | mo << 5 | d
            dos_time = hh << 11 | mi << 5 | ss // 2
            fixed = (20, utf8, m.method, dos_time, dos_date, m.crc, len(m.raw), m.size)
            out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fixed, len(name), 0) + name)
            out.write(m.raw)
            central.append(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    (info.create_system << 8) | max(info.create_version, 20),
                    *fixed,
                    len(name),
                    0,
                    0,
                    0,
                    info.internal_attr,
                    info.external_attr,
                    offset,
                )
                + name
            )
            offset += 30 + len(name) + len(m.raw)
            if offset >= 0xFFFFFFFF:
                raise Unsupported("the workbook needs zip64")
        directory = b"".join(central)
        out.write(directory)
        n = len(members)
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(directory), offset, 0))


# ------------------------------------------------------------------ styles


class _OnePart:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, _name: str) -> bytes:
        return self.data


class _Collect:
    """Stands in for openpyxl's xmlfile: keeps the cell element openpyxl's writer makes."""

    def __init__(self) -> None:
        self.element: Element | None = None

    def write(self, element: Element) -> None:
        self.element = element


_XF_RE = re.compile(rb"<xf\b[^>]*?(?:/>|>.*?</xf>)", re.S)
_DEFAULT_XF = b'<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
_NUMFMT_ID = _attr_re(b"numFmtId")
_QUOTE = _attr_re(b"quotePrefix")
_APPLY_NUM = _attr_re(b"applyNumberFormat")


class _Styles:
    """The file's cell styles in a scratch openpyxl workbook, so that a new cell gets exactly
    the style and value form ``_put`` gives it on the openpyxl path."""

    def __init__(self, xml: bytes, date1904: bool) -> None:
        root = _ROOT_RE.match(xml)
        if root is None or root.group(1) != b"styleSheet" or b"<!" in xml:
            raise Unsupported("styles part has a prefix, comments or a DTD")
        tree = _parse(xml, "styles")
        self.xml = xml
        self.wb = openpyxl.Workbook()
        if date1904:
            self.wb.epoch = CALENDAR_MAC_1904
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            apply_stylesheet(_OnePart(xml), self.wb)
        self.ws = self.wb.active
        self.styles: Any = self.wb._cell_styles  # an openpyxl IndexedList
        span = re.search(rb"<cellXfs\b[^>]*>(.*?)</cellXfs>", xml, re.S)
        xfs = _XF_RE.findall(span.group(1)) if span else []
        if not xfs or len(xfs) != len(self.styles):
            raise Unsupported("cell styles not understood")
        self.xfs: list[bytes] = xfs
        self.index = {tuple(s): i for i, s in reversed(list(enumerate(self.styles)))}
        self.numfmts: dict[str, int] = {}
        for nf in tree.iter(f"{_M}numFmt"):
            code, nid = nf.get("formatCode"), nf.get("numFmtId")
            if code is not None and nid is not None and nid.isdigit():
                self.numfmts.setdefault(code, int(nid))
        self.new_xfs: list[bytes] = []
        self.new_numfmts: list[tuple[int, str]] = []
        self.date_formats: set[int] = self.wb._date_formats
        self.timedelta_formats: set[int] = self.wb._timedelta_formats

    def wraps(self, style: int | None) -> bool:
        """Whether cells of this style wrap their text (None: the default style)."""
        arr = self.styles[style or 0]
        return bool(self.wb._alignments[arr.alignmentId].wrapText)

    def number_format(self, style: int) -> str:
        cell = self.ws.cell(1, 1)
        cell._style = copy(self.styles[style])
        fmt: str = cell.number_format
        del self.ws._cells[(1, 1)]
        return fmt

    def cell(
        self,
        r: int,
        c: int,
        value: Any,
        above: bool,
        above_style: int | None,
        own_style: int | None = None,
    ) -> bytes:
        """The ``<c>`` element the openpyxl path would write for ``value`` at (r, c), with the
        style copied from the row above as ``_put`` does; b"" for no cell. ``own_style``: the
        style of an empty cell already there (a formatted blank row), which ``_put`` keeps
        when there is no style to copy."""
        if value is None and not above:
            return b""
        ws = self.ws
        src = None
        if above:
            src = ws.cell(1, 1)
            src._style = StyleArray() if above_style is None else copy(self.styles[above_style])
        try:
            dest = ws.cell(r, c)
            if own_style is not None:
                dest._style = copy(self.styles[own_style])
            _put(dest, value, src)
            style = 0
            if dest.has_style:
                style = self._file_style(dest, src, own_style)
            out = _Collect()
            etree_write_cell(out, ws, dest, styled=False)
        finally:
            ws._cells.pop((1, 1), None)
            ws._cells.pop((r, c), None)
        el = out.element
        if el is None:
            raise Unsupported("openpyxl wrote no cell")
        if style:
            el.set("s", str(style))
        try:
            return tostring(el, encoding="unicode").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: the openpyxl path says what it says
            raise Unsupported("text that UTF-8 cannot hold") from None

    def _file_style(self, dest: Any, src: Any, own_style: int | None) -> int:
        arr = tuple(dest._style)
        found = self.index.get(arr)
        if found is not None:
            return found
        # A style the file lacks: the source's (or the cell's own) with another number format
        # or quote prefix.
        if src is not None and src.has_style:
            base, base_i = src._style, self.index.get(tuple(src._style))
        elif own_style is not None:
            base, base_i = self.styles[own_style], own_style
        else:
            base, base_i = StyleArray(), None
        keep = ("fontId", "fillId", "borderId", "protectionId", "alignmentId", "xfId")
        if any(getattr(dest._style, k) != getattr(base, k) for k in keep):
            raise Unsupported("a new cell style beyond a number format or quote prefix")
        tag_end = None
        xf = [*self.xfs, *self.new_xfs][base_i] if base_i is not None else _DEFAULT_XF
        m = re.match(rb"<xf\b[^>]*?(/?)>", xf)
        if m is None:
            raise Unsupported("cell style not understood")
        tag_end = m.end()
        tag = xf[:tag_end]
        fmt_id = self._numfmt_id(dest.number_format)
        tag = _set_attr(tag, _NUMFMT_ID, b"numFmtId", str(fmt_id))
        if fmt_id:
            tag = _set_attr(tag, _APPLY_NUM, b"applyNumberFormat", "1")
        tag = _set_attr(tag, _QUOTE, b"quotePrefix", "1" if dest.quotePrefix else "0")
        self.new_xfs.append(tag + xf[tag_end:])
        index: int = self.styles.add(copy(dest._style))
        if index != len(self.xfs) + len(self.new_xfs) - 1:
            raise Unsupported("cell styles not understood")
        self.index[arr] = index
        return index

    def _numfmt_id(self, fmt: str) -> int:
        if fmt in BUILTIN_FORMATS_REVERSE:
            return int(BUILTIN_FORMATS_REVERSE[fmt])
        if fmt in self.numfmts:
            return self.numfmts[fmt]
        new = max([163, *self.numfmts.values()]) + 1
        self.numfmts[fmt] = new
        self.new_numfmts.append((new, fmt))
        return new

    def edited(self) -> bytes | None:
        """styles.xml with the added number formats and cell styles, or None if none."""
        if not self.new_xfs and not self.new_numfmts:
            return None
        xml = self.xml
        if self.new_numfmts:
            add = b"".join(
                b'<numFmt numFmtId="%d" formatCode="%s"/>' % (i, _escape_attr(code))
                for i, code in self.new_numfmts
            )
            m = re.search(rb"<numFmts\b[^>]*?(/?)>", xml)
            if m is None:
                root = _ROOT_RE.match(xml)
                assert root is not None
                block = b'<numFmts count="%d">%s</numFmts>' % (len(self.new_numfmts), add)
                xml = xml[: root.end()] + block + xml[root.end() :]
            else:
                count = len(re.findall(rb"<numFmt\b", xml)) + len(self.new_numfmts)
                tag = _set_attr(m.group(0), _COUNT, b"count", str(count))
                if m.group(1):
                    xml = xml[: m.start()] + tag[:-2] + b">" + add + b"</numFmts>" + xml[m.end() :]
                else:
                    close = xml.index(b"</numFmts>", m.end())
                    xml = xml[: m.start()] + tag + xml[m.end() : close] + add + xml[close:]
        if self.new_xfs:
            m = re.search(rb"<cellXfs\b[^>]*>", xml)
            if m is None:
                raise Unsupported("cell styles not understood")
            close = xml.index(b"</cellXfs>", m.end())
            count = len(self.xfs) + len(self.new_xfs)
            tag = _set_attr(m.group(0), _COUNT, b"count", str(count))
            xml = (
                xml[: m.start()] + tag + xml[m.end() : close] + b"".join(self.new_xfs) + xml[close:]
            )
        return xml


# ------------------------------------------------------------------ what is remembered


@dataclass
class _TableRows:
    """What a table's rows hold, as far as appending needs to know."""

    last_data: int | None  # last non-blank data row
    above: dict[int, int | None]  # that row's cell styles by column (None: no cell)
    keys: dict[int, set[str]]  # key texts by column, for the columns asked about so far


@dataclass
class _Sheet:
    """A worksheet part as this process last wrote it (valid while its bytes are the same)."""

    fingerprint: tuple[int, int, int, int]  # CRC, compressed size, size, CRC of the raw bytes
    head: bytes  # up to and including <sheetData>
    tail: bytes  # from </sheetData>
    head_raw_len: int  # the compressed head segment's length
    rows_raw_len: int  # the compressed rows segment's length
    rows_crc: int
    rows_len: int
    last_r: int  # the sheet's last <row> number (0: none)
    tables: dict[str, _TableRows] = field(default_factory=dict)


@dataclass
class _Located:
    sheet_part: str
    table_part: str
    styles_part: str
    strings_part: str | None
    date1904: bool
    sheet_name: str


@dataclass
class _TableInfo:
    name: str
    ref: str
    headers: list[str]
    min_col: int
    max_col: int
    header_row: int
    first_row: int
    last_row: int
    autofilter: bool
    calculated: dict[int, Formula]


@dataclass
class Plan:
    """What ``Appender.plan`` worked out: ``changed`` False means nothing to write (every row's
    key is in the table already); else ``write`` makes the new file and ``commit`` (after it
    replaced the old one) lets the next append reuse what was learnt."""

    changed: bool
    write: Callable[[Path], None]
    commit: Callable[[], None]
    parts: tuple[tuple[str, int, int], ...] = ()  # the new file's (name, CRC, size) per part


def _nothing(_target: Path) -> None:  # pragma: no cover - never called when nothing changed
    raise AssertionError("nothing to write")


# ------------------------------------------------------------------ the appender


class Appender:
    """Streaming appends to one workbook file; remembers, per sheet, what it wrote last."""

    def __init__(self, path: Path, tz: tzinfo) -> None:
        self.path = path
        self.tz = tz
        self._sheets: dict[str, _Sheet] = {}
        self._styles: tuple[tuple[int, int], bytes, bool] | None = None
        self._strings: tuple[tuple[int, int], list[str]] | None = None
        self.last_fallback: str | None = None  # why the last plan was None (tests, bench)

    def plan(
        self,
        table: str,
        rows: Sequence[Mapping[str, Any]],
        key_column: str | None,
        parts: Parts | None = None,
    ) -> Plan | None:
        """``parts``: what the write's lost-feature check inflated (the sheet, usually)."""
        self.last_fallback = None
        try:
            return self._plan(table, rows, key_column, parts or Parts())
        except Unsupported as exc:
            self.last_fallback = str(exc)
            log.info("%s: appending with openpyxl (%s)", self.path.name, exc)
            return None

    # -- locating -------------------------------------------------------------------------

    @staticmethod
    def _locate(zf: zipfile.ZipFile, table: str) -> tuple[_Located, _TableInfo, bytes]:
        def rels(part: str) -> dict[str, tuple[str, str]]:
            folder, name = posixpath.split(part)
            rel_part = posixpath.join(folder, "_rels", name + ".rels")
            try:
                data = zf.read(rel_part)
            except KeyError:
                return {}
            out = {}
            for rel in _parse(data, rel_part).iter(_PKG_REL):
                if rel.get("TargetMode") == "External":
                    continue
                target = rel.get("Target", "")
                full = (
                    target.lstrip("/")
                    if target.startswith("/")
                    else posixpath.normpath(posixpath.join(folder, target))
                )
                out[rel.get("Id", "")] = (rel.get("Type", "").rsplit("/", 1)[-1], full)
            return out

        office = [p for kind, p in rels("").values() if kind == "officeDocument"]
        if len(office) != 1:
            raise Unsupported("no single workbook part")
        wb_part = office[0]
        wb_xml = _parse(zf.read(wb_part), wb_part)
        if wb_xml.tag != f"{_M}workbook":
            raise Unsupported("not a transitional SpreadsheetML workbook")
        pr = wb_xml.find(f"{_M}workbookPr")
        date1904 = pr is not None and pr.get("date1904", "0").lower() in ("1", "true")
        wb_rels = rels(wb_part)
        styles = [p for kind, p in wb_rels.values() if kind == "styles"]
        strings = [p for kind, p in wb_rels.values() if kind == "sharedStrings"]
        if len(styles) != 1:
            raise Unsupported("no single styles part")
        exact: tuple[str, str, bytes, str] | None = None
        folded: tuple[str, str, bytes, str] | None = None
        for sheet in wb_xml.iter(f"{_M}sheet"):
            kind, sheet_part = wb_rels.get(sheet.get(_R_ID, ""), ("", ""))
            if kind != "worksheet":
                continue
            for kind, table_part in rels(sheet_part).values():
                if kind != "table":
                    continue
                data = zf.read(table_part)
                name = _parse(data, table_part).get("displayName", "")
                title = sheet.get("name", "")
                if name == table and exact is None:
                    exact = (sheet_part, table_part, data, title)
                elif name.casefold() == table.casefold() and folded is None:
                    folded = (sheet_part, table_part, data, title)
        found = exact or folded
        if found is None:
            raise Unsupported("no such table")  # the openpyxl path lists the tables present
        sheet_part, table_part, data, title = found
        located = _Located(
            sheet_part, table_part, styles[0], strings[0] if strings else None, date1904, title
        )
        return located, Appender._table_info(data, table_part), data

    @staticmethod
    def _table_info(data: bytes, part: str) -> _TableInfo:
        root = _ROOT_RE.match(data)
        if root is None or root.group(1) != b"table" or b"<!" in data:
            raise Unsupported("table part has a prefix, comments or a DTD")
        tree = _parse(data, part)
        if tree.tag != f"{_M}table":
            raise Unsupported("table part not understood")
        ref = tree.get("ref", "")
        min_col, min_row, max_col, max_row = range_boundaries(ref)
        if tree.get("headerRowCount", "1") != "1":
            raise Unsupported("a table without a header row")
        if int(tree.get("totalsRowCount") or 0):
            raise Unsupported("a table with a Total Row")  # the openpyxl path says what to do
        columns = tree.findall(f"{_M}tableColumns/{_M}tableColumn")
        if len(columns) != max_col - min_col + 1:
            raise Unsupported("table columns not understood")
        calculated: dict[int, Formula] = {}
        for index, column in enumerate(columns):
            # A person's (or the register's) calculated column: a new row gets its formula,
            # as Excel fills it (the openpyxl path's _calculated_columns).
            formula = column.find(f"{_M}calculatedColumnFormula")
            text = formula.text if formula is not None else None
            if formula is not None and text and formula.get("array") not in ("1", "true"):
                calculated[min_col + index] = Formula(text if text.startswith("=") else f"={text}")
        return _TableInfo(
            name=tree.get("displayName", ""),
            ref=ref,
            headers=[unescape(str(c.get("name", ""))) for c in columns],  # as openpyxl reads
            min_col=min_col,
            max_col=max_col,
            header_row=min_row,
            first_row=min_row + 1,
            last_row=max_row,
            autofilter=tree.find(f"{_M}autoFilter") is not None,
            calculated=calculated,
        )

    # -- planning ---------------------------------------------------------------------------

    def _plan(
        self,
        table: str,
        rows: Sequence[Mapping[str, Any]],
        key_column: str | None,
        parts: Parts,
    ) -> Plan | None:
        with open(self.path, "rb") as fh:
            zf = zipfile.ZipFile(fh)
            infos = zf.infolist()
            by_name = {i.filename: i for i in infos}
            if len(by_name) != len(infos):
                raise Unsupported("repeated part names")
            for i in infos:
                if i.flag_bits & 0x1 or i.compress_type not in (
                    zipfile.ZIP_STORED,
                    zipfile.ZIP_DEFLATED,
                ):
                    raise Unsupported(f"{i.filename} is encrypted or oddly compressed")
                if max(i.file_size, i.compress_size, i.header_offset) >= 0xFFFFFFFF:
                    raise Unsupported("zip64")
            located, info, table_xml = self._locate(zf, table)
            styles = self._load_styles(zf, by_name[located.styles_part], located.date1904)
            sheet_info = by_name.get(located.sheet_part)
            if sheet_info is None:
                raise Unsupported("sheet part missing")
            raw = _raw_member(fh, sheet_info)
            fingerprint = (
                sheet_info.CRC,
                sheet_info.compress_size,
                sheet_info.file_size,
                crc32(raw),
            )
            sheet = self._sheets.get(located.sheet_part)
            warm = (
                sheet is not None
                and sheet.fingerprint == fingerprint
                and located.table_part in sheet.tables
                and (
                    key_column is None
                    or self._key_col(info, key_column) in sheet.tables[located.table_part].keys
                )
            )
            rows_raw = b""
            cold: _Cold | None = None
            if warm:
                assert sheet is not None
                rows_raw = raw[sheet.head_raw_len : sheet.head_raw_len + sheet.rows_raw_len]
            else:
                text = parts.sheet(zf, sheet_info)
                sheet, cold = self._read_sheet(
                    zf, located, info, styles, key_column, text, fingerprint
                )
            known = sheet.tables[located.table_part]
            # Which rows are new (the same rule as the openpyxl path's key check).
            if key_column is not None:
                col = self._key_col(info, key_column)
                header = info.headers[col - info.min_col]
                seen = set(known.keys[col])
                fresh = []
                for row in rows:
                    value = next((v for k, v in row.items() if find_header([header], k) == 0), None)
                    key = key_text(value)
                    if key and key in seen:
                        continue
                    seen.add(key)
                    fresh.append(row)
                rows = fresh
                if not rows:
                    return Plan(False, _nothing, lambda: None)
            mapped = [self._map(info, row) for row in rows]
            start = known.last_data + 1 if known.last_data else info.first_row
            end = start + len(mapped) - 1
            # Rows already where the new rows go: empty ones (a formatted blank row, as
            # ``init`` lays out an empty table's first row) are filled as the openpyxl path
            # fills them; cells typed there below the table go to that path, which refuses.
            trailing = cold.trailing if cold is not None else []
            if cold is None and start <= sheet.last_r:
                raise Unsupported("rows already in the sheet where the new rows go")
            fill = {row[0]: row for row in trailing if row[0] <= end}
            rest = [row for row in trailing if row[0] > end]
            assert cold is not None or not fill
            own: dict[int, dict[int, tuple[bytes, int]]] = {}  # row → column → (cell, style)
            for number, _, cells_at, cells_end, _ in fill.values():
                assert cold is not None
                own[number] = _all_cells(cold.data[cells_at:cells_end], number)
                if number > info.last_row and any(
                    not is_blank(cold.reader.value(*_attrs_inner(raw_cell), number))
                    for c, (raw_cell, _) in own[number].items()
                    if info.min_col <= c <= info.max_col
                ):
                    raise Unsupported("rows already in the sheet where the new rows go (typed)")
            # The new rows, cell by cell as the openpyxl path makes them.
            above = known.last_data is not None
            prev = known.above
            last_styles = known.above
            pieces: list[bytes] = []
            last_data = known.last_data
            written_last = sheet.last_r
            # Rows grow with their wrapped text, as on the openpyxl path (connectors.xlsx_rows).
            widths = None if custom_default_height(sheet.head) else column_widths(sheet.head)
            for offset, given in enumerate(mapped):
                r = start + offset
                values: dict[int, Any] = dict(given)
                for c, formula in info.calculated.items():
                    if values.get(c) is None:
                        values[c] = formula  # as Excel fills a row it adds
                there = own.get(r, {})  # the cells of a row already there
                cells: dict[int, bytes] = {c: cell for c, (cell, _) in there.items()}
                styles_now: dict[int, int | None] = {}
                for c in range(info.min_col, info.max_col + 1):
                    # Style from the row above: the table's last row, or the row just added
                    # (the openpyxl path's rule; a first batch into an empty table keeps the
                    # style of its formatted first row, else none).
                    own_style = there[c][1] if c in there else None
                    cell = styles.cell(
                        r, c, values.get(c), above or offset > 0, prev.get(c), own_style
                    )
                    s = _S_ATTR.search(cell[: cell.find(b">")]) if cell else None
                    # None: no cell (default style)
                    styles_now[c] = int(s.group(1)) if s else (own_style if not cell else None)
                    if cell:
                        cells[c] = cell
                ht = b""
                if widths is not None:
                    height = fitted_height(
                        (v, widths.get(c, DEFAULT_WIDTH))
                        for c, v in values.items()
                        if isinstance(v, str)
                        and widths.get(c, DEFAULT_WIDTH) is not None
                        and c in cells
                        and styles.wraps(styles_now.get(c))
                    )
                    if height is not None:
                        ht = b' ht="%s" customHeight="1"' % format_height(height).encode()
                if r in fill:
                    assert cold is not None
                    number, at, s_at, _, end_at = fill[r]
                    tag = _SPANS.sub(b"", cold.data[at:s_at]).rstrip(b"/>").rstrip()
                    if ht and not re.search(rb"\sht\s*=", tag):
                        tag += ht
                    if cells:
                        body = b"".join(cells[c] for c in sorted(cells))
                        pieces.append(tag + b">" + body + b"</row>")
                    else:
                        pieces.append(cold.data[at:end_at])
                elif cells:
                    body = b"".join(cells[c] for c in sorted(cells))
                    pieces.append(b'<row r="%d"%s>' % (r, ht) + body + b"</row>")
                    written_last = r
                prev = styles_now
                if any(not is_blank(v) for v in values.values()):
                    # The next append copies this row's styles, as the openpyxl path would.
                    last_data, last_styles = r, styles_now
            if rest:  # rows below the new ones, as they were
                assert cold is not None
                pieces.append(cold.data[rest[0][1] : cold.hi])
            new_rows = b"".join(pieces)
            if cold is not None:
                # The rows before the new ones, compressed once (at the fastest level: this is
                # the bulk of a large sheet); later appends in this process copy them.
                cut = trailing[0][1] if trailing else cold.hi
                before = memoryview(cold.data)[cold.lo : cut]
                rows_raw = deflate(before, last=False, bulk=True)
                sheet.rows_raw_len = len(rows_raw)
                sheet.rows_crc, sheet.rows_len = crc32(before), len(before)
            head = self._new_head(sheet.head, info, end)
            tail = self._new_tail(sheet.tail, info, end) if end > info.last_row else sheet.tail
            replaced: dict[str, bytes] = {}
            if end > info.last_row:
                replaced[located.table_part] = self._new_table(table_xml, info, end)
            new_styles = styles.edited()
            if new_styles is not None:
                replaced[located.styles_part] = new_styles
            # The sheet: head and tail compressed afresh, the rows region copied.
            head_raw = deflate(head, last=False)
            new_raw = deflate(new_rows, last=False)
            tail_raw = deflate(tail, last=True)
            rows_crc = crc32(new_rows, sheet.rows_crc)  # (CRC-32 runs on)
            rows_len = sheet.rows_len + len(new_rows)
            crc = crc32(tail, crc32_combine(crc32(head), rows_crc, rows_len))
            size = len(head) + rows_len + len(tail)
            sheet_raw = head_raw + rows_raw + new_raw + tail_raw
            members: list[_Member] = []
            for i in infos:
                if i.filename == located.sheet_part:
                    members.append(_Member(i, zipfile.ZIP_DEFLATED, crc, size, sheet_raw))
                elif i.filename in replaced:
                    data = replaced[i.filename]
                    members.append(
                        _Member(
                            i,
                            zipfile.ZIP_DEFLATED,
                            crc32(data),
                            len(data),
                            deflate(data, last=True),
                        )
                    )
                else:
                    members.append(
                        _Member(i, i.compress_type, i.CRC, i.file_size, _raw_member(fh, i))
                    )
        new_sheet = _Sheet(
            fingerprint=(crc, len(sheet_raw), size, crc32(sheet_raw)),
            head=head,
            tail=tail,
            head_raw_len=len(head_raw),
            rows_raw_len=len(rows_raw) + len(new_raw),
            rows_crc=rows_crc,
            rows_len=rows_len,
            last_r=max(sheet.last_r, written_last),
        )
        new_known = _TableRows(last_data, last_styles if last_data else {}, {})
        for col, keys in known.keys.items():
            added = [m.get(col) for m in mapped]
            if col not in info.calculated and all(v is None or isinstance(v, str) for v in added):
                new_known.keys[col] = keys | {key_text(v) for v in added} - {""}
        new_sheet.tables[located.table_part] = new_known
        styles_key = (crc32(new_styles), len(new_styles)) if new_styles is not None else None

        def write(target: Path) -> None:
            _write_zip(target, members)

        def commit() -> None:
            if rest:  # rows after the new ones: the next append reads the sheet again
                self._sheets.pop(located.sheet_part, None)
            else:
                self._sheets[located.sheet_part] = new_sheet
            if styles_key is not None and new_styles is not None:
                self._styles = (styles_key, new_styles, located.date1904)

        listing = tuple((m.info.filename, m.crc, m.size) for m in members)
        return Plan(True, write, commit, listing)

    def _key_col(self, info: _TableInfo, key_column: str) -> int:
        index = find_header(info.headers, key_column)
        if index is None:
            raise Unsupported("no such key column")  # the openpyxl path names the columns
        return info.min_col + index

    def _map(self, info: _TableInfo, row: Mapping[str, Any]) -> dict[int, Any]:
        # Either problem sends the write down the openpyxl path, whose error names it.
        try:
            return map_row(
                info.headers, info.min_col, row, self.tz, lambda _: Unsupported("no such column")
            )
        except InputError:
            raise Unsupported("a value a cell cannot hold") from None

    def _load_styles(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, date1904: bool) -> _Styles:
        """The file's styles (parsed once while the styles part is unchanged); a fresh copy
        each time, as a plan adds to it."""
        key = (info.CRC, info.file_size)
        if self._styles is None or self._styles[0] != key or self._styles[2] != date1904:
            self._styles = (key, zf.read(info.filename), date1904)
        return _Styles(self._styles[1], date1904)

    # -- reading a sheet the first time -----------------------------------------------------

    def _read_sheet(
        self,
        zf: zipfile.ZipFile,
        located: _Located,
        info: _TableInfo,
        styles: _Styles,
        key_column: str | None,
        text: SheetText,
        fingerprint: tuple[int, int, int, int],
    ) -> tuple[_Sheet, _Cold]:
        data = text.data
        root = _ROOT_RE.match(data)
        if (
            root is None
            or root.group(1) != b"worksheet"
            or (
                b'xmlns="' + MAIN_NS.encode() + b'"' not in root.group(2)
                and b"xmlns='" + MAIN_NS.encode() + b"'" not in root.group(2)
            )
        ):
            raise Unsupported("the sheet's root is prefixed or not SpreadsheetML")
        # Well-formed, without a DTD, comments, CDATA or processing instructions: so every
        # "<" below starts a tag, and the byte searches read what an XML parser would.
        _check_xml(data, "the sheet")
        if text.head_end < 0:
            raise Unsupported("no single sheetData")
        # The rows region is read in place (positions in ``data``): no 24 MB copy.
        lo, hi = text.head_end, text.tail_start
        head, tail = data[:lo], data[hi:]
        if text.head_end == text.tail_start:  # <sheetData/>
            sd = _SHEETDATA_RE.search(head)
            assert sd is not None
            head = head[: sd.start()] + b"<sheetData>"
            tail = b"</sheetData>" + tail
        if _SHEETDATA_RE.search(tail):
            raise Unsupported("no single sheetData")
        reader = _CellReader(self, zf, located, styles)
        if text.plain:
            numbers, from_end = _plain_rows(data, lo, hi)
        else:
            numbers, from_end = _any_rows(data, lo, hi)
        known = _TableRows(None, {}, {})
        visited: list[_RowAt] = []  # from the last row up: those at or below the new rows
        for row in from_end:
            number, _, s, e, _ = row
            visited.append(row)
            if number > info.last_row:
                continue
            if number < info.first_row:
                break
            cells = reader.cells(data[s:e], number, info)
            if any(not is_blank(reader.value(a, inner, number)) for a, inner in cells.values()):
                known.last_data = number
                known.above = {
                    c: (int(sm.group(1)) if (sm := _S_ATTR.search(cells[c][0])) else 0)
                    if c in cells
                    else None
                    for c in range(info.min_col, info.max_col + 1)
                }
                break
        if key_column is not None:
            col = self._key_col(info, key_column)
            known.keys[col] = self._keys(data, lo, hi, text.plain, col, info, reader)
        start = known.last_data + 1 if known.last_data else info.first_row
        trailing = [row for row in reversed(visited) if row[0] >= start]
        sheet = _Sheet(
            fingerprint=fingerprint,
            head=head,
            tail=tail,
            head_raw_len=-1,
            rows_raw_len=-1,
            rows_crc=0,
            rows_len=0,
            last_r=numbers[-1] if numbers else 0,
        )
        sheet.tables[located.table_part] = known
        return sheet, _Cold(data, lo, hi, trailing, reader)

    @staticmethod
    def _keys(
        data: bytes,
        lo: int,
        hi: int,
        plain: bool,
        col: int,
        info: _TableInfo,
        reader: _CellReader,
    ) -> set[str]:
        """The key texts in column ``col`` of the table's data rows (``data[lo:hi]``)."""
        letters = get_column_letter(col).encode()
        if plain:  # every cell's reference comes first (as Excel and openpyxl write cells)
            start = rb'<c r="' + letters + rb'(\d+)"'
        else:
            if _CELL_WITHOUT_R.search(data, lo, hi):
                raise Unsupported("a cell without its reference")
            start = rb"<c\b(?=[^>]*?\sr\s*=\s*[\"']" + letters + rb"(\d+)[\"'])"
        pattern = re.compile(start + rb"([^>]*?)(?:/>|>(.*?)</c>)", re.S)
        keys: set[str] = set()
        first, last = info.first_row, info.last_row
        kinds: dict[bytes, bytes] = {}  # a cell's attributes → its type (a handful of forms)
        for digits, attrs, inner in pattern.findall(data, lo, hi):
            number = int(digits)
            if not first <= number <= last:
                continue
            kind = kinds.get(attrs)
            if kind is None:
                t = _T_ATTR.search(attrs)
                kind = kinds[attrs] = t.group(1) if t else b"n"
            # An inline string, as openpyxl writes text: ``reader.value`` and ``key_text``
            # in short (its text, trimmed); any other cell takes the long way.
            if kind == b"inlineStr" and (m := _SIMPLE_INLINE.fullmatch(inner)):
                keys.add(_xml_text(m.group(1)).strip())
            else:
                keys.add(key_text(reader.value(attrs, inner or None, number)))
        return keys - {""}

    def shared_strings(self, zf: zipfile.ZipFile, part: str | None) -> list[str]:
        if part is None:
            raise Unsupported("a shared string without a shared strings part")
        info = zf.getinfo(part)
        key = (info.CRC, info.file_size)
        if self._strings is None or self._strings[0] != key:
            data = zf.read(part)
            if b"<!" in data:
                raise Unsupported("shared strings with a DTD, comments or CDATA")
            from io import BytesIO

            try:
                strings = read_string_table(BytesIO(data))
            except Exception as exc:
                raise Unsupported(f"shared strings: {type(exc).__name__}") from None
            self._strings = (key, strings)
        return self._strings[1]

    # -- new head, tail and table part ------------------------------------------------------

    @staticmethod
    def _new_head(head: bytes, info: _TableInfo, end: int) -> bytes:
        m = re.search(rb"<dimension\b[^>]*?/?>", head)
        if m is None:
            return head
        ref = _get_attr(m.group(0), _REF)
        if not ref:
            return head
        try:
            min_col, min_row, max_col, max_row = range_boundaries(ref)
        except ValueError:
            raise Unsupported("dimension not understood") from None
        new = CellRange(
            min_col=min(min_col or 1, info.min_col),
            min_row=min(min_row or 1, info.header_row),
            max_col=max(max_col or 1, info.max_col),
            max_row=max(max_row or 1, end),
        ).coord
        return head[: m.start()] + _set_attr(m.group(0), _REF, b"ref", new) + head[m.end() :]

    @staticmethod
    def _new_tail(tail: bytes, info: _TableInfo, end: int) -> bytes:
        """Drop-downs and conditional formats that covered the table's last row cover the new
        rows too (the openpyxl path's ``_extend_validations`` and
        ``_extend_conditional_formats``)."""
        last = info.last_row

        def covers(rng: CellRange) -> bool:
            return (
                rng.min_row <= last <= rng.max_row < end
                and info.min_col <= rng.min_col <= info.max_col
            )

        def edit(m: re.Match[bytes], extend: Callable[[MultiCellRange], MultiCellRange]) -> bytes:
            tag = m.group(0)
            sqref = _get_attr(tag, _SQREF)
            if sqref is None:
                return tag
            try:
                ranges = MultiCellRange(sqref)
            except (ValueError, TypeError):
                raise Unsupported("a range not understood") from None
            new = extend(ranges)
            return tag if str(new) == str(ranges) else _set_attr(tag, _SQREF, b"sqref", str(new))

        def validations(ranges: MultiCellRange) -> MultiCellRange:
            for rng in list(ranges.ranges):
                if covers(rng):
                    ranges.add(
                        CellRange(
                            min_col=rng.min_col,
                            max_col=rng.max_col,
                            min_row=rng.max_row + 1,
                            max_row=end,
                        )
                    )
            return ranges

        def formats(ranges: MultiCellRange) -> MultiCellRange:
            out = []
            for rng in ranges.ranges:
                if covers(rng):
                    rng = CellRange(
                        min_col=rng.min_col, max_col=rng.max_col, min_row=rng.min_row, max_row=end
                    )
                out.append(rng)
            return MultiCellRange(out)

        tail = re.sub(rb"<dataValidation\b[^>]*>", lambda m: edit(m, validations), tail)
        return re.sub(rb"<conditionalFormatting\b[^>]*>", lambda m: edit(m, formats), tail)

    @staticmethod
    def _new_table(xml: bytes, info: _TableInfo, end: int) -> bytes:
        first, last = get_column_letter(info.min_col), get_column_letter(info.max_col)
        ref = f"{first}{info.header_row}:{last}{end}"
        root = _ROOT_RE.match(xml)
        assert root is not None
        tag = xml[root.start(1) - 1 : root.end()]
        xml = xml[: root.start(1) - 1] + _set_attr(tag, _REF, b"ref", ref) + xml[root.end() :]
        if info.autofilter:
            m = re.search(rb"<autoFilter\b[^>]*?/?>", xml)
            if m is None:
                raise Unsupported("autoFilter not found")
            xml = xml[: m.start()] + _set_attr(m.group(0), _REF, b"ref", ref) + xml[m.end() :]
        return xml


_T_ATTR = re.compile(rb"""\st\s*=\s*["'](\w+)["']""")
_SIMPLE_INLINE = re.compile(rb"""<is><t(?:\s+xml:space=["']preserve["'])?>([^<]*)</t></is>""")
_SIMPLE_SHARED = re.compile(rb"<v>(\d+)</v>")
_ENTITY = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|lt|gt|amp|quot|apos);")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


def _entity(m: re.Match[str]) -> str:
    name = m.group(1)
    if name.startswith("#x"):
        return chr(int(name[2:], 16))
    if name.startswith("#"):
        return chr(int(name[1:]))
    return _NAMED[name]


def _xml_text(raw: bytes) -> str:
    """Element text as an XML parser gives it (line ends normalised, references resolved)."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").decode("utf-8")
    return _ENTITY.sub(_entity, text) if "&" in text else text


class _CellReader:
    """Cell values as the openpyxl path reads them (openpyxl's own cell parser)."""

    def __init__(
        self, appender: Appender, zf: zipfile.ZipFile, located: _Located, styles: _Styles
    ) -> None:
        self.styles = styles
        appender_ref = appender

        class _Strings:
            loaded: list[str] | None = None

            def __getitem__(self, index: int) -> str:
                if self.loaded is None:
                    self.loaded = appender_ref.shared_strings(zf, located.strings_part)
                return self.loaded[index]

        strings = _Strings()
        self.parser = WorkSheetParser(
            None,
            strings,
            epoch=styles.wb.epoch,
            date_formats=styles.date_formats,
            timedelta_formats=styles.timedelta_formats,
        )
        # What a read gives a formula cell: the value Excel saved (``XlsxWorkbook._saved_values``).
        self.saved_parser = WorkSheetParser(
            None,
            strings,
            data_only=True,
            epoch=styles.wb.epoch,
            date_formats=styles.date_formats,
            timedelta_formats=styles.timedelta_formats,
        )

    def read(self, attrs: bytes, inner: bytes | None, number: int) -> Any:
        """The cell's value as ``XlsxWorkbook.read_table`` gives it: a formula's saved value,
        or an ``UnsavedFormula`` when it has none."""
        if inner is None or b"<f" not in inner:  # (in a plain region "<f" starts <f>)
            return self.value(attrs, inner, number)
        formula = self.value(attrs, inner, number)
        value = self._parsed(attrs, inner, self.saved_parser)
        if is_blank(value):
            return UnsavedFormula(str(getattr(formula, "text", None) or formula))
        return value

    @staticmethod
    def cells(row: bytes, number: int, info: _TableInfo) -> dict[int, tuple[bytes, bytes | None]]:
        out: dict[int, tuple[bytes, bytes | None]] = {}
        for m in _CELL_RE.finditer(row):
            r = _R_ATTR.search(m.group(1))
            if r is None or not r.group(1) or int(r.group(2)) != number:
                raise Unsupported("a cell without its reference")
            col = column_index_from_string(r.group(1).decode())
            if info.min_col <= col <= info.max_col:
                out[col] = (m.group(1), m.group(2))
        return out

    def value(self, attrs: bytes, inner: bytes | None, number: int) -> Any:
        # The two forms nearly every text cell takes, read without building elements: what
        # openpyxl writes (an inline string) and what Excel writes (a shared string).
        if inner is not None:
            t = _T_ATTR.search(attrs)
            kind = t.group(1) if t else b"n"
            if kind == b"inlineStr" and (m := _SIMPLE_INLINE.fullmatch(inner)):
                return _xml_text(m.group(1))
            if kind == b"s" and (m := _SIMPLE_SHARED.fullmatch(inner)):
                try:
                    return self.parser.shared_strings[int(m.group(1))]
                except IndexError:
                    raise Unsupported("a shared string index out of range") from None
        return self._parsed(attrs, inner, self.parser)

    def _parsed(self, attrs: bytes, inner: bytes | None, parser: WorkSheetParser) -> Any:
        xml = (
            b'<c xmlns="'
            + MAIN_NS.encode()
            + b'"'
            + attrs
            + (b"/>" if inner is None else b">" + inner + b"</c>")
        )
        try:
            parsed = parser.parse_cell(safe_fromstring(xml))
            style = int(parsed["style_id"] or 0)
            cell = self.styles.ws.cell(1, 1)
            cell._style = copy(self.styles.styles[style])
            cell._value = parsed["value"]
            cell.data_type = parsed["data_type"]
            value = _read_cell(cell)
        except Unsupported:
            raise
        except Exception as exc:
            raise Unsupported(f"a cell not understood ({type(exc).__name__})") from None
        finally:
            self.styles.ws._cells.pop((1, 1), None)
        if isinstance(value, datetime) and value.tzinfo is not None:
            raise Unsupported("an aware datetime")
        return value


_ROW_NUMBER = re.compile(rb'<row r="(\d+)"')
_CELL_WITHOUT_R = re.compile(rb"<c(?![^>]*?\sr\s*=)[\s/>]")

# A row where it is in the sheet's bytes: its number, where its tag starts, where its cells
# start and end, and where the row ends.
_RowAt = tuple[int, int, int, int, int]
RowSpans = Iterable[_RowAt]
_SPANS = re.compile(rb"""\sspans\s*=\s*(["'])[^"']*\1""")


@dataclass
class _Cold:
    """A sheet read for the first time: its XML, where its rows are, and the rows at or below
    where the new rows go (from ``_read_sheet``, for ``_plan``)."""

    data: bytes
    lo: int
    hi: int
    trailing: list[_RowAt]
    reader: _CellReader


def _all_cells(row: bytes, number: int) -> dict[int, tuple[bytes, int]]:
    """Every cell of a row: column → (its element, its style)."""
    out: dict[int, tuple[bytes, int]] = {}
    for m in _CELL_RE.finditer(row):
        r = _R_ATTR.search(m.group(1))
        if r is None or not r.group(1) or int(r.group(2)) != number:
            raise Unsupported("a cell without its reference")
        sm = _S_ATTR.search(m.group(1))
        out[column_index_from_string(r.group(1).decode())] = (
            m.group(0),
            int(sm.group(1)) if sm else 0,
        )
    return out


def _attrs_inner(cell: bytes) -> tuple[bytes, bytes | None]:
    m = _CELL_RE.fullmatch(cell)
    if m is None:
        raise Unsupported("a cell not understood")
    return m.group(1), m.group(2)


def _plain_rows(data: bytes, lo: int = 0, hi: int | None = None) -> tuple[list[int], RowSpans]:
    """A plain rows region's (``data[lo:hi]``) row numbers (checked: rising), and its rows from
    the last one up as (number, start, end of their cells in ``data``), found by searching back
    from the end: the first append of a process reads only the rows it needs besides the
    numbers."""
    hi = len(data) if hi is None else hi
    numbers = [int(n) for n in _ROW_NUMBER.findall(data, lo, hi)]
    if numbers and (numbers[0] < 1 or not all(map(operator.lt, numbers, numbers[1:]))):
        raise Unsupported("rows out of order")

    def from_end() -> Iterator[_RowAt]:
        pos = hi
        while (at := data.rfind(b"<row", lo, pos)) >= 0:
            m = _ROW_RE.match(data, at, hi)
            r = _R_ATTR.search(m.group(1)) if m else None
            if m is None or r is None or r.group(1):
                raise Unsupported("a row without its number")
            if m.group(2):
                yield int(r.group(2)), at, m.end(), m.end(), m.end()
            else:
                close = data.find(b"</row>", m.end(), hi)
                if close < 0:
                    raise Unsupported("a row not closed")
                yield int(r.group(2)), at, m.end(), close, close + 6
            pos = at

    return numbers, from_end()


def _any_rows(data: bytes, lo: int = 0, hi: int | None = None) -> tuple[list[int], RowSpans]:
    """``_plain_rows`` for any other rows region: every row read in order."""
    hi = len(data) if hi is None else hi
    if _PREFIXED_ELEMENT.search(data, lo, hi):
        raise Unsupported("prefixed elements in the sheet's rows")
    if _SHEETDATA_RE.search(data, lo, hi):
        raise Unsupported("no single sheetData")
    spans: list[_RowAt] = []
    last = 0
    for m in _ROW_RE.finditer(data, lo, hi):
        r = _R_ATTR.search(m.group(1))
        if r is None or r.group(1):
            raise Unsupported("a row without its number")
        number = int(r.group(2))
        if number <= last:
            raise Unsupported("rows out of order")
        last = number
        if m.group(2):
            spans.append((number, m.start(), m.end(), m.end(), m.end()))
        else:
            close = data.find(b"</row>", m.end(), hi)
            if close < 0:
                raise Unsupported("a row not closed")
            spans.append((number, m.start(), m.end(), close, close + 6))
    return [n for n, *_ in spans], reversed(spans)


def rows_matching(
    path: Path, table: str, column: str, match: Callable[[Any], bool], *, saved: bool = True
) -> tuple[str, list[str], list[tuple[int, list[Any]]]] | None:
    """The data rows of ``table`` whose ``column`` value (as ``read_table`` gives it; with
    ``saved`` False a formula as its text, as a write sees it) passes ``match``: (sheet name,
    headers, [(sheet row, values by column)]), read from the sheet's bytes — the column's
    cells found by one byte search, only the rows found parsed whole — rather than row by
    row: a case look-up in a large register, or its chronology. None for a sheet this does
    not read (its rows not plain, not well-formed XML, ...), a column the table lacks, or a
    ``match`` that takes an empty cell: the caller reads the table."""
    if match(None):
        return None  # every row without the cell would match: the caller's read says which
    try:
        with zipfile.ZipFile(path) as zf:
            located, info, _ = Appender._locate(zf, table)
            index = find_header(info.headers, column)
            if index is None:
                return None
            styles = _Styles(zf.read(located.styles_part), located.date1904)
            text = Parts().sheet(zf, zf.getinfo(located.sheet_part))
            if not text.plain or text.head_end < 0 or xlsx_parts.xml_problem(text.data):
                return None
            reader = _CellReader(Appender(path, UTC), zf, located, styles)
            data, lo, hi = text.data, text.head_end, text.tail_start
            letters = get_column_letter(info.min_col + index).encode()
            pattern = re.compile(rb'<c r="' + letters + rb'(\d+)"([^>]*?)(?:/>|>(.*?)</c>)', re.S)
            found: list[int] = []
            for digits, attrs, inner in pattern.findall(data, lo, hi):
                number = int(digits)
                value = (reader.read if saved else reader.value)(attrs, inner or None, number)
                if info.first_row <= number <= info.last_row and match(value):
                    found.append(number)
            rows: list[tuple[int, list[Any]]] = []
            for number in found:
                at = data.find(b'<row r="%d"' % number, lo, hi)
                m = _ROW_RE.match(data, at, hi) if at >= 0 else None
                if m is None:
                    return None
                end = m.end() if m.group(2) else data.find(b"</row>", m.end(), hi)
                cells = reader.cells(data[m.end() : end], number, info)
                rows.append(
                    (
                        number,
                        [
                            reader.read(*cells[c], number) if c in cells else None
                            for c in range(info.min_col, info.max_col + 1)
                        ],
                    )
                )
    except (Unsupported, PartError, zipfile.BadZipFile, KeyError, OSError, ValueError):
        return None
    return located.sheet_name, info.headers, rows


def locate_table(path: Path, table: str) -> tuple[str, int, int, int, int, list[str]] | None:
    """Where table ``table`` is, read from the zip parts alone (a read-only openpyxl load has
    no tables): (sheet name, first and last data row, first and last column, headers), or
    None for a layout this module does not handle (the caller reads the whole table)."""
    try:
        with zipfile.ZipFile(path) as zf:
            located, info, _ = Appender._locate(zf, table)
    except (Unsupported, zipfile.BadZipFile, KeyError, OSError, ValueError):
        return None
    return (
        located.sheet_name,
        info.first_row,
        info.last_row,
        info.min_col,
        info.max_col,
        info.headers,
    )
