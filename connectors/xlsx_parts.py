"""Reading a workbook's zip parts quickly, for the local register's writes.

A register's sheet at 10,000 rows is about 24 MB of XML in a 3 MB zip part. The first write
of a process inflates it once (``Parts``: the lost-feature check and the streaming append share
it), finds its rows region (``SheetText``) and, for a streaming append, compresses the rows once
more so that later appends can copy them (``connectors.xlsx_append``). ISA-L (the ``isal``
package) inflates, deflates and checksums several times faster than zlib, with output any zip
reader inflates; zlib is used where ``isal`` is absent.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO
from xml.parsers import expat

try:  # a wheel on Linux, macOS and Windows; zlib does the same, only slower
    from isal import isal_zlib as _fast
except ImportError:  # pragma: no cover - isal is a dependency; kept for odd platforms
    _fast = None  # type: ignore[assignment]

FAST = _fast is not None
LEVEL = 6  # zlib's default, as zipfile and openpyxl compress: the small parts
# The big rows region the first append in a process compresses: ISA-L's level 1 is about three
# times zlib level 1's speed at a slightly smaller size; zlib's level 1 without it.
BULK_LEVEL = 1


class PartError(Exception):
    """A zip part that could not be read as its directory entry describes."""


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A+B from crc(A), crc(B) and len(B): lets the rows segment's CRC be
    reused without its bytes."""
    if _fast is not None:
        return int(_fast.crc32_combine(crc1, crc2, len2))
    return _crc32_combine(crc1, crc2, len2)


def _crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """zlib's crc32_combine, which Python's zlib module does not expose."""
    if len2 <= 0:
        return crc1

    def times(mat: list[int], vec: int) -> int:
        out, i = 0, 0
        while vec:
            if vec & 1:
                out ^= mat[i]
            vec >>= 1
            i += 1
        return out

    def square(mat: list[int]) -> list[int]:
        return [times(mat, mat[n]) for n in range(32)]

    odd = [0xEDB88320] + [1 << (n - 1) for n in range(1, 32)]  # one zero bit
    even = square(odd)  # two zero bits
    odd = square(even)  # four zero bits
    while True:
        even = square(odd)
        if len2 & 1:
            crc1 = times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = square(even)
        if len2 & 1:
            crc1 = times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def crc32(data: bytes | memoryview, value: int = 0) -> int:
    if _fast is not None:
        return int(_fast.crc32(data, value))
    return zlib.crc32(data, value)


def deflate(
    data: bytes | memoryview, *, last: bool, level: int = LEVEL, bulk: bool = False
) -> bytes:
    """Raw deflate of ``data``; unless ``last``, ended by a full flush, so what follows may be
    compressed (and later replaced) independently. ``bulk``: the fastest setting, for the
    large rows region."""
    mode = zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH
    if bulk and _fast is not None:
        comp = _fast.compressobj(BULK_LEVEL, _fast.DEFLATED, -15)
        return bytes(comp.compress(data) + comp.flush(mode))
    zcomp = zlib.compressobj(BULK_LEVEL if bulk else level, zlib.DEFLATED, -15)
    return zcomp.compress(data) + zcomp.flush(mode)


def raw_member(fh: BinaryIO, info: zipfile.ZipInfo) -> bytes:
    """A member's stored (still compressed) bytes."""
    fh.seek(info.header_offset)
    header = fh.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise PartError(f"bad local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    fh.seek(info.header_offset + 30 + name_len + extra_len)
    raw: bytes = fh.read(info.compress_size)
    if len(raw) != info.compress_size:
        raise PartError(f"{info.filename} is cut short")
    return raw


def inflate(raw: bytes, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes from its stored ones, checked against its size and CRC (as
    ``ZipFile.read`` checks them); never inflates past the size the directory declares."""
    if info.flag_bits & 0x1:
        raise PartError(f"{info.filename} is encrypted")
    if info.compress_type == zipfile.ZIP_STORED:
        data = raw
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        try:
            if _fast is not None:
                dec = _fast.decompressobj(-15)
                data = bytes(dec.decompress(raw, info.file_size + 1))
            else:
                zdec = zlib.decompressobj(-15)
                data = zdec.decompress(raw, info.file_size + 1)
        except Exception as exc:  # (zlib.error, isal's IsalError): a damaged part
            raise PartError(f"{info.filename} does not inflate ({exc})") from None
    else:
        raise PartError(f"{info.filename} is compressed in a way this reader does not handle")
    if len(data) != info.file_size or crc32(data) != info.CRC:
        raise PartError(f"{info.filename} does not match its size or CRC")
    return data


def read_member(fh: BinaryIO, info: zipfile.ZipInfo) -> bytes:
    return inflate(raw_member(fh, info), info)


def xml_problem(data: bytes) -> str | None:
    """Why ``data`` is not plain well-formed XML — a DTD (so entity bombs and external
    entities), a comment, CDATA or a processing instruction, or a syntax error — or None.
    Expat, at C speed; the handlers only run when such a thing is there."""
    parser = expat.ParserCreate()

    class Found(Exception):
        pass

    def found(what: str) -> Callable[..., None]:
        def handler(*_: object) -> None:
            raise Found(what)

        return handler

    parser.StartDoctypeDeclHandler = found("a DTD")
    parser.EntityDeclHandler = found("a DTD")
    parser.CommentHandler = found("a comment")
    parser.StartCdataSectionHandler = found("CDATA")
    parser.ProcessingInstructionHandler = found("a processing instruction")
    try:
        parser.Parse(data, True)
    except Found as exc:
        return str(exc)
    except expat.ExpatError as exc:
        return f"not well-formed XML ({exc})"
    return None


_SHEETDATA_RE = re.compile(rb"<sheetData\b[^>]*?(/?)>")
# In a plain rows region every "<" starts one of the tags Excel, LibreOffice and openpyxl write
# there, each row and cell with its reference first: <row r="…">, <c r="…">, <v>, <f>, <is>,
# <t> and their ends. One pass finds anything else (a prefixed element, an extension list, a
# cell without its reference, rich text); a plain region is read by fast byte searches.
_NOT_PLAIN = re.compile(rb'<(?!c r="|/?(?:t|is|v|f)[\s/>]|/c>|row r="|/row>)')  # (most used first)


@dataclass(frozen=True)
class SheetText:
    """A worksheet part's XML and where its rows are."""

    data: bytes
    head_end: int  # just after <sheetData…> (-1: no sheetData found)
    tail_start: int  # at </sheetData> (for <sheetData/>: head_end)
    plain: bool  # the rows region holds only the tags of _NOT_PLAIN (empty: plain)
    frame_ok: bool  # the sheet without its rows is plain well-formed XML (``xml_problem``)

    @property
    def region(self) -> bytes:
        return self.data[self.head_end : self.tail_start]

    def frame(self) -> bytes:
        """The sheet without its rows: ``<sheetData>`` directly followed by its end."""
        if self.head_end == self.tail_start:
            return self.data
        return self.data[: self.head_end] + self.data[self.tail_start :]


def sheet_text(data: bytes) -> SheetText:
    sd = _SHEETDATA_RE.search(data)
    if sd is None:
        return SheetText(data, -1, -1, False, False)
    if sd.group(1):  # <sheetData/>: no rows
        head_end = tail_start = sd.end()
        plain = True
    else:
        head_end, tail_start = sd.end(), data.rfind(b"</sheetData>")
        if tail_start < head_end:
            return SheetText(data, -1, -1, False, False)
        plain = _NOT_PLAIN.search(data, head_end, tail_start) is None
    text = SheetText(data, head_end, tail_start, plain, False)
    frame_ok = plain and xml_problem(text.frame()) is None
    return SheetText(data, head_end, tail_start, plain, frame_ok)


class Parts:
    """Inflated parts of one file, shared by the checks of one write (the lost-feature scan and
    the streaming append read the same sheet): keyed by name, CRC and size, so a part that
    changed in between is read again."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, int, int], bytes] = {}
        self._sheets: dict[tuple[str, int, int], SheetText] = {}

    def read(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
        key = (info.filename, info.CRC, info.file_size)
        data = self._data.get(key)
        if data is None:
            fp = zf.fp
            try:
                if fp is None:
                    raise PartError("no file")
                data = read_member(fp, info)  # type: ignore[arg-type]
            except PartError:
                data = zf.read(info)  # zipfile's own reader, and its errors
            self._data[key] = data
        return data

    def sheet(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> SheetText:
        key = (info.filename, info.CRC, info.file_size)
        text = self._sheets.get(key)
        if text is None:
            text = self._sheets[key] = sheet_text(self.read(zf, info))
        return text
