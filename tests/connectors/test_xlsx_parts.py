"""The fast reads behind a streaming append's first write (connectors.xlsx_parts and the first
read of a sheet in connectors.xlsx_append) give what the whole-file reads they replace give."""

from __future__ import annotations

import shutil
import zipfile
import zlib
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connectors.xlsx as xlsx_mod
import connectors.xlsx_append as append_mod
from connectors import xlsx_parts
from connectors.xlsx import XlsxWorkbook, create_workbook, key_text
from connectors.xlsx_parts import Parts, sheet_text
from tests.connectors.test_xlsx_append import SPEC, make, snapshot

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"

# ---------------------------------------------------------------- lost features, from the frame

# What a worksheet's parts may hold, around and inside its rows: the tags the lost-feature
# check looks for (in the tail, in the head, inside a row), look-alikes in cell text, and
# damaged XML (an unclosed extension list, a "<" inside an attribute).
X14 = (
    '<extLst><ext uri="{CCE6A557-97BC-4b89-ADB6-D9C93CAAB3DF}" xmlns:x14="urn:x14">'
    '<x14:dataValidations count="1"/></ext></extLst>'
)
TAIL_BITS = [
    "",
    X14,
    '<extLst><ext uri="{1}"><x14:sparklineGroups xmlns:x14="urn:x14"/></ext></extLst>',
    "<extLst><ext uri='{2}'><foo/></ext></extLst>",
    "<extLst></extLst>",
    '<oleObjects><oleObject progId="x"/></oleObjects>',
    "<controls/>",
    '<x:controls xmlns:x="urn:x"/>',
    "<extLst>",  # damaged: never closed
    '<tableParts count="0"/>',
]
HEAD_BITS = [
    "",
    '<sheetViews><sheetView workbookViewId="0"><extLst><ext uri="{3}"><v/></ext></extLst>'
    "</sheetView></sheetViews>",
    '<sheetFormatPr defaultRowHeight="15"/>',
    "<ext ",  # damaged: an unclosed tag just before the rows
]
CELL_TEXT = ["plain", "extLst", "parental controls", "&lt;extLst&gt;", "oleObjects", "a &amp; b"]
ROW_EXTRAS = [
    "",
    "<extLst><ext uri='{4}'><mine/></ext></extLst>",  # a row's own extension list
    '<c r="Z{n}" t="inlineStr"><is><r><t>rich</t></r></is></c>',  # rich text: not plain
    '<x14ac:thing xmlns:x14ac="urn:x14ac"/>',
    '<c r="Y{n}" s="<v>"/>',  # damaged: "<" in an attribute
]


@st.composite
def sheets(draw: st.DrawFn) -> bytes:
    head = draw(st.sampled_from(HEAD_BITS))
    rows = []
    for n in range(2, 2 + draw(st.integers(0, 4))):
        cells = "".join(
            f'<c r="{col}{n}" t="inlineStr"><is><t>{draw(st.sampled_from(CELL_TEXT))}</t></is></c>'
            for col in "AB"[: draw(st.integers(0, 2))]
        )
        extra = draw(st.sampled_from(ROW_EXTRAS)).replace("{n}", str(n))
        rows.append(f'<row r="{n}">{cells}{extra}</row>')
    tail = "".join(draw(st.lists(st.sampled_from(TAIL_BITS), max_size=3)))
    body = "".join(rows)
    sheet_data = draw(st.sampled_from([f"<sheetData>{body}</sheetData>", "<sheetData/>"]))
    return (
        f'<?xml version="1.0"?><worksheet xmlns="{MAIN}"><dimension ref="A1"/>{head}'
        f"{sheet_data}{tail}</worksheet>"
    ).encode()


def losses(xml: bytes) -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    xlsx_mod._sheet_losses(xml, found)
    return list(found.items())


@settings(max_examples=300, deadline=None)
@given(xml=sheets())
def test_lost_features_from_the_sheet_without_its_rows_equal_a_scan_of_the_whole_sheet(
    xml: bytes,
) -> None:
    """What ``lossy_features`` reads (the frame when the rows are plain and the rest is
    well-formed XML, else every byte) finds the same features, in the same order."""
    text = sheet_text(xml)
    read = text.frame() if text.frame_ok else text.data
    assert losses(read) == losses(xml)


def test_plain_rows_and_a_well_formed_frame_are_what_office_programs_write(tmp_path: Path) -> None:
    """The frame is what the check reads for a register as openpyxl (so the service, and
    ``init``) and Excel write it; a rows region with anything else is read whole."""
    path = make(tmp_path / "register.xlsx")
    with zipfile.ZipFile(path) as zf:
        text = sheet_text(zf.read("xl/worksheets/sheet1.xml"))
    assert text.plain and text.frame_ok
    assert b"<row" not in text.frame() and b"<row" in text.data
    excel_row = (
        b'<row r="2" spans="1:8" x14ac:dyDescent="0.25"><c r="A2" s="3" t="s"><v>0</v></c>'
        b'<c r="B2" s="4"><f>NOW()</f><v>46000.5</v></c><c r="C2" s="5"/></row>'
    )
    excel = text.data.replace(b"<sheetData>", b"<sheetData>" + excel_row, 1)
    assert sheet_text(excel).plain
    rich = excel.replace(b"<v>0</v>", b"<is><r><t>x</t></r></is>")
    assert not sheet_text(rich).plain and not sheet_text(rich).frame_ok


def test_lossy_features_inflates_each_sheet_once_for_the_whole_write(tmp_path: Path) -> None:
    path = make(tmp_path / "register.xlsx")
    parts = Parts()
    calls: list[str] = []
    real = xlsx_parts.read_member

    def counting(fh: Any, info: zipfile.ZipInfo) -> bytes:
        calls.append(info.filename)
        return real(fh, info)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(xlsx_parts, "read_member", counting)
        assert xlsx_mod.lossy_features(path, parts) == []
        wb = XlsxWorkbook(path, streaming=True)
        assert wb._appender is not None
        plan = wb._appender.plan("Concerns", [{"Reference": "PRV-2026-0003"}], None, parts)
    assert plan is not None and plan.changed
    assert calls == ["xl/worksheets/sheet1.xml"]


# ---------------------------------------------------------------- inflate, deflate, CRC


@pytest.fixture(params=["isal", "zlib"])
def codec(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test below runs with ISA-L and with zlib alone (as on a machine without isal)."""
    if request.param == "isal":
        assert xlsx_parts.FAST, "isal is a dependency (pyproject.toml)"
        yield "isal"
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(xlsx_parts, "_fast", None)
        yield "zlib"


def test_parts_read_as_zipfile_reads_them(tmp_path: Path, codec: str) -> None:
    path = make(tmp_path / "register.xlsx")
    with zipfile.ZipFile(path) as zf:
        parts = Parts()
        for info in zf.infolist():
            assert parts.read(zf, info) == zf.read(info)
    damaged = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        raw = xlsx_parts.raw_member(fh, zf.getinfo("xl/worksheets/sheet1.xml"))
    at = damaged.find(raw) + len(raw) // 2
    damaged[at] ^= 0xFF
    bad = tmp_path / "damaged.xlsx"
    bad.write_bytes(bytes(damaged))
    # The error zipfile gives (the caller names the file).
    with zipfile.ZipFile(bad) as zf, pytest.raises((zipfile.BadZipFile, zlib.error)):
        Parts().read(zf, zf.getinfo("xl/worksheets/sheet1.xml"))


def test_segments_and_crcs_make_one_valid_part(codec: str) -> None:
    head, rows, more, tail = b"<head>" * 50, b"<row r='2'>x</row>" * 5000, b"<row/>" * 9, b"</t>"
    raw = (
        xlsx_parts.deflate(head, last=False)
        + xlsx_parts.deflate(rows, last=False, bulk=True)
        + xlsx_parts.deflate(more, last=False)
        + xlsx_parts.deflate(tail, last=True)
    )
    assert zlib.decompress(raw, -15) == head + rows + more + tail
    crc = xlsx_parts.crc32(
        tail,
        xlsx_parts.crc32_combine(
            xlsx_parts.crc32(head), xlsx_parts.crc32(more, xlsx_parts.crc32(rows)), len(rows + more)
        ),
    )
    assert crc == zlib.crc32(head + rows + more + tail)
    assert xlsx_parts._crc32_combine(zlib.crc32(head), zlib.crc32(rows), len(rows)) == zlib.crc32(
        head + rows
    )


def test_appends_with_either_codec_give_the_openpyxl_paths_workbook(
    tmp_path: Path, codec: str
) -> None:
    old = make(tmp_path / "old" / "register.xlsx")
    new = tmp_path / "new" / "register.xlsx"
    new.parent.mkdir()
    shutil.copy2(old, new)
    wbs = (XlsxWorkbook(old), XlsxWorkbook(new, streaming=True))
    for n in range(3, 6):
        for wb in wbs:
            wb.append_rows("Concerns", [{"Reference": f"PRV-2026-000{n}", "Count": n}])
        assert wbs[1]._appender is not None and wbs[1]._appender.last_fallback is None
    assert snapshot(new) == snapshot(old)
    with zipfile.ZipFile(new) as zf:
        assert zf.testzip() is None


# ---------------------------------------------------------------- the first read of a sheet


plain_rows = st.lists(
    st.tuples(
        st.integers(1, 3),  # gap to the row before
        st.sampled_from(["", '<c r="A{n}" t="inlineStr"><is><t>x</t></is></c>', '<c r="B{n}"/>']),
        st.booleans(),  # a self-closing row
        st.sampled_from(["", ' spans="1:3"', ' ht="30" customHeight="1"']),
    ),
    max_size=8,
)


@given(rows=plain_rows)
def test_plain_rows_found_from_the_end_are_every_rows_found_in_order(
    rows: list[tuple[int, str, bool, str]],
) -> None:
    region, n = b"", 0
    for gap, cell, empty, attrs in rows:
        n += gap
        body = "" if empty else cell.replace("{n}", str(n))
        region += (
            f'<row r="{n}"{attrs}/>' if empty else f'<row r="{n}"{attrs}>{body}</row>'
        ).encode()
    numbers, from_end = append_mod._plain_rows(region)
    all_numbers, all_from_end = append_mod._any_rows(region)
    assert numbers == all_numbers
    assert list(from_end) == list(all_from_end)
    swapped = region.replace(b'r="', b'r="9', 1) if len(rows) > 1 else b'<row r="0"/>'
    for read in (append_mod._plain_rows, append_mod._any_rows):
        with pytest.raises(append_mod.Unsupported, match="out of order"):
            read(swapped)


KEY_VALUES = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from([" mail:a ", "a & b <c>", "line\r\nbreak", "=1+1", "7", "  ", "\t"]),
    # (numbers a date-formatted cell can show: the row above's date style is copied)
    st.integers(min_value=0, max_value=2_000_000),
    st.floats(min_value=0, max_value=2e6, allow_nan=False, width=32),
    st.booleans(),
    st.dates(min_value=date(1900, 3, 1), max_value=date(2100, 1, 1)),
    st.datetimes(min_value=datetime(1900, 3, 1), max_value=datetime(2100, 1, 1)),
    st.none(),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(keys=st.lists(KEY_VALUES, min_size=1, max_size=8), shared=st.booleans())
def test_keys_read_from_the_bytes_are_the_keys_openpyxl_reads(
    tmp_path_factory: pytest.TempPathFactory, keys: list[Any], shared: bool
) -> None:
    """The key column's texts as the streaming path's first read finds them (the inline-string
    shortcut included) are those the openpyxl path compares with, whether the cells are inline
    strings (openpyxl, the service) or shared strings (Excel, LibreOffice: ``shared``)."""
    folder = tmp_path_factory.mktemp("keys")
    path = folder / "register.xlsx"
    create_workbook(path, [SPEC])
    wb = XlsxWorkbook(path)
    wb.append_rows("Concerns", [{"Reference": "R", "Source key": k} for k in keys])
    if shared:
        _to_shared_strings(path)
    book = openpyxl.load_workbook(path)
    lay = wb._layout(book["Register"], book["Register"].tables["Concerns"])
    expected = {key_text(r["Source key"]) for _, r in wb._data_rows(book["Register"], lay)} - {""}
    streaming = XlsxWorkbook(path, streaming=True)
    assert streaming._appender is not None
    plan = streaming._appender.plan("Concerns", [{"Reference": "new"}], "Source key")
    assert plan is not None, streaming._appender.last_fallback
    plan.commit()  # what the first read learnt, kept for the next append
    (sheet,) = streaming._appender._sheets.values()
    (known,) = sheet.tables.values()
    assert known.keys[7] == expected  # (column G, Source key; the new row has none)


def _to_shared_strings(path: Path) -> None:
    """Rewrite the sheet's inline strings as shared strings, as Excel saves text."""
    import re

    with zipfile.ZipFile(path) as zf:
        items = [(i, zf.read(i)) for i in zf.infolist()]
    strings: list[bytes] = []

    def share(m: re.Match[bytes]) -> bytes:
        strings.append(m.group(3))
        return m.group(1) + b't="s"' + m.group(2) + b"<v>%d</v></c>" % (len(strings) - 1)

    out = []
    for info, data in items:
        if info.filename == "xl/worksheets/sheet1.xml":
            data = re.sub(
                rb'(<c r="G\d+"[^>]*?)t="inlineStr"([^>]*>)<is>(<t[^>]*>[^<]*</t>)</is></c>',
                share,
                data,
            )
        out.append((info, data))
    sst = b'<sst xmlns="%s">%s</sst>' % (
        MAIN.encode(),
        b"".join(b"<si>%s</si>" % s for s in strings),
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in out:
            if info.filename == "xl/_rels/workbook.xml.rels":
                data = data.replace(
                    b"</Relationships>",
                    b'<Relationship Id="rIdS" Type="http://schemas.openxmlformats.org/'
                    b'officeDocument/2006/relationships/sharedStrings" '
                    b'Target="sharedStrings.xml"/></Relationships>',
                )
            if info.filename == "[Content_Types].xml":
                data = data.replace(
                    b"</Types>",
                    b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
                )
            zf.writestr(info, data)
        zf.writestr("xl/sharedStrings.xml", sst)
