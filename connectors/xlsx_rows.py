"""How tall a row the service appends must be for its wrapped text to show, and print, whole.

Neither Excel nor LibreOffice grows a row by itself when a program wrote the file (the rows
keep the sheet's default height and wrapped text runs into the next row on paper), so the
service sets the height of each row it writes from its text, as the board report does.
Both append paths (``connectors.xlsx`` and ``connectors.xlsx_append``) use these, so they
give the same heights.

Only where the sheet has no custom default row height: a sheet laid out with fixed-height
rows (a register made by an earlier version: three lines each) keeps that layout.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable

LINE_HEIGHT = 15.0  # points: one line of 11-point Calibri as Excel draws it (LibreOffice: 13)
MAX_HEIGHT = 409.0  # Excel's tallest row
DEFAULT_WIDTH = 8.43  # a column with no width of its own
# Characters of ordinary text per unit of column width (a unit is one digit's width; text is
# narrower): as the board report counts them (connectors.report_xlsx), a little under what
# LibreOffice fits even when it scales a page down to print, so a row errs towards a spare
# line, never a cut one.
CHARS_PER_UNIT = 1.1


def lines_of(text: str, width: float) -> int:
    """How many lines ``text`` takes wrapped at word breaks in a column ``width`` wide."""
    room = max(4, int(width * CHARS_PER_UNIT))
    paragraphs = text.splitlines() or [""]
    return sum(max(1, len(textwrap.wrap(p, room, break_long_words=True))) for p in paragraphs)


def fitted_height(texts: Iterable[tuple[str, float | None]]) -> float | None:
    """The height (points) of a row whose wrapped text cells are ``(text, column width)``
    (a width of None, a hidden column, does not count); None when one line is enough (the
    sheet's default height)."""
    lines = max(
        (lines_of(text, width) for text, width in texts if text and width is not None),
        default=1,
    )
    return None if lines <= 1 else min(MAX_HEIGHT, LINE_HEIGHT * lines)


def format_height(height: float) -> str:
    """A height as openpyxl writes it in ``<row ht="...">``."""
    return f"{height:g}"


_COL = re.compile(rb"<col\b([^>]*?)/?>")
_ATTR = re.compile(rb"""\s([A-Za-z]+)\s*=\s*(["'])([^"']*)\2""")
_FORMAT_PR = re.compile(rb"<sheetFormatPr\b([^>]*?)/?>")


def _attrs(raw: bytes) -> dict[bytes, bytes]:
    return {m.group(1): m.group(3) for m in _ATTR.finditer(raw)}


def column_widths(head: bytes) -> dict[int, float | None]:
    """Column number → width from a sheet's ``<cols>`` (None: hidden), as XML bytes."""
    out: dict[int, float | None] = {}
    for m in _COL.finditer(head):
        a = _attrs(m.group(1))
        lo, hi = int(a.get(b"min", b"0")), int(a.get(b"max", b"0"))
        hidden = a.get(b"hidden", b"0") in (b"1", b"true")
        width = None if hidden else float(a.get(b"width", DEFAULT_WIDTH))
        for c in range(lo, min(hi, lo + 16384) + 1):
            out[c] = width
    return out


def custom_default_height(head: bytes) -> bool:
    """Whether a sheet's XML gives every row a custom default height."""
    m = _FORMAT_PR.search(head)
    return m is not None and _attrs(m.group(1)).get(b"customHeight") in (b"1", b"true")
