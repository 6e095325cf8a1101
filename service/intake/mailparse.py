"""Turn the bytes of an inbound e-mail into what intake needs, whatever shape the mail is in.

Real mail is messy: encoded or raw 8-bit headers in the wrong charset, HTML-only bodies, broken
MIME, forwarded messages, bounces and out-of-office replies. ``parse_message`` copes with all of
that and raises ``InputError`` only when the bytes are not an e-mail at all; ``classify`` says
whether a message is automatic (and so must never become a concern or get an acknowledgement).

The stdlib ``email`` package parses with the lenient ``compat32`` policy (it never raises while
reading headers); every header and body is then decoded here with an explicit charset fallback
(declared → UTF-8 → cp1252 → Latin-1), so no single odd part can sink a whole message.
Nothing here logs, and ``defects`` names what was wrong without quoting any content.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.errors
import email.parser
import email.policy
import email.utils
import quopri
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

from service.errors import InputError

__all__ = [
    "Attachment",
    "ParsedMail",
    "classify",
    "display_filename",
    "html_to_text",
    "parse_message",
]

MAX_DEPTH = 12  # MIME nesting we follow; real mail rarely goes past 5
MAX_PARTS = 500  # leaf parts looked at per message
MAX_ATTACHMENTS = 200
MAX_HEADER_CHARS = 16_000  # of one raw header value that we decode
MAX_SUBJECT_CHARS = 1_000
MAX_NAME_CHARS = 200
MAX_FILENAME_CHARS = 120


@dataclass(frozen=True)
class Attachment:
    """One attachment, described for people. ``filename`` is a display name: never a path."""

    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class ParsedMail:
    """What intake needs from one message."""

    message_id: str | None  # "<local@domain>", or None when missing or garbage
    from_name: str  # decoded display name, one line ("" if none)
    from_address: str | None  # lower-case addr-spec, or None
    reply_to: str | None
    subject: str  # decoded, one line, control characters removed, bounded
    date: datetime | None  # aware (UTC when the header gives no zone); None if unparseable
    text: str  # the account as plain text (text/plain preferred, else HTML made readable)
    text_truncated: bool  # ``text`` was cut at ``max_text_chars`` (or a part at its bound)
    attachments: tuple[Attachment, ...]
    forwarded: bool  # Fwd:/FW: subject, a forwarded-message block, or an attached message
    forwarded_from: str | None  # the original sender, if the forward says (extra info only)
    auto: str | None  # "auto-reply" | "bounce" | "read-receipt": never a concern; else None
    bounce_of: tuple[str, ...]  # Message-IDs a bounce refers to (ours, when we sent them)
    defects: tuple[str, ...]  # short names of what was broken, never content
    auto_submitted: str | None = None  # Auto-Submitted token, for ``classify``'s own-mail check
    # In-Reply-To and References, so a reply to an acknowledgement can be tied to its concern.
    references: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------------------- charsets

# Labels that mail clients use loosely. Following the WHATWG encoding standard, "ISO-8859-1"
# and "ASCII" are decoded as windows-1252 (Outlook writes cp1252 quotes under those labels),
# and GB2312/GBK as GB18030, their superset.
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "iso-8859-8-i": "iso8859-8",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "ks_c_5601-1987": "cp949",
    "x-mac-roman": "mac-roman",
    "utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
}
# Python codecs that are not charsets a mail could honestly declare.
_REFUSED_CODECS = {
    "unicode_escape",
    "raw_unicode_escape",
    "idna",
    "punycode",
    "undefined",
    "mbcs",
    "oem",
}


def _codec_for(label: str | None) -> str | None:
    """The Python codec for a declared charset label, or None if unknown or unsafe."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = name.split("*", 1)[0]  # RFC 2231 language suffix: utf-8*en
    if not name or len(name) > 40:
        return None
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if (
        not getattr(info, "_is_text_encoding", True)
        or info.name.replace("-", "_") in _REFUSED_CODECS
    ):
        return None
    if info.name in ("iso8859-1", "latin-1"):
        return "cp1252"
    return info.name


def _decode_bytes(data: bytes, declared: str | None, *, partial: bool = False) -> tuple[str, bool]:
    """Decode with the declared charset, then UTF-8, cp1252 and Latin-1 (which never fails).

    Returns the text and whether a declared charset was unknown or wrong (for ``defects``).
    ``partial`` means ``data`` was cut short, so a character split at the end is dropped.
    """
    codec = _codec_for(declared)
    if not data:
        return "", declared is not None and codec is None
    first = codec
    if codec and _single_byte(codec) and _is_utf8(data, partial=partial):
        # Bytes that are valid UTF-8 (with at least one multi-byte character) under a
        # single-byte label are UTF-8 mislabelled — "café —" read as cp1252 would land as
        # "cafÃ© â€”". Real cp1252 or Latin-1 text is almost never valid UTF-8 by chance.
        first = "utf-8"
    for candidate in dict.fromkeys(c for c in (first, codec, "utf-8", "cp1252") if c):
        try:
            if partial:
                text = codecs.getincrementaldecoder(candidate)().decode(data, final=False)
            else:
                text = data.decode(candidate)
        except (UnicodeError, LookupError, ValueError, TypeError):
            continue
        return text, declared is not None and candidate != codec
    return data.decode("latin-1"), True


# Single-byte charsets (every byte is a character), where mislabelled UTF-8 decodes without
# error into mojibake instead of failing over to the next candidate.
_SINGLE_BYTE_PREFIXES = ("cp125", "iso8859", "ascii", "latin", "mac-", "koi8", "cp437", "cp850")


def _single_byte(codec: str) -> bool:
    return codec.replace("_", "-").startswith(_SINGLE_BYTE_PREFIXES)


def _is_utf8(data: bytes, *, partial: bool) -> bool:
    """Valid UTF-8 holding at least one non-ASCII character."""
    if data.isascii():
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=not partial)
    except UnicodeDecodeError:
        return False
    return True


def _header_bytes(value: str) -> bytes:
    """The bytes a header value came from (the parser keeps 8-bit bytes as surrogates)."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from a byte
        return value.encode("utf-8", "replace")


# ---------------------------------------------------------------------------- headers

# RFC 2047 encoded word: =?charset?B|Q?text?=
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,60})\?([bBqQ])\?([^?\s]*)\?=")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Bidirectional overrides and isolates can disguise a name ("cod.exe" shown as "exe.doc").
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_WS = re.compile(r"\s+")


def _decode_word(charset: str, encoding: str, text: str) -> bytes | None:
    """The bytes of one encoded word, or None when it cannot be decoded (kept literally)."""
    if encoding in "bB":
        if re.search(r"[^A-Za-z0-9+/=]", text):
            return None
        text = text.rstrip("=")
        if len(text) % 4 == 1:
            text = text[:-1]
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
    raw = text.replace("_", " ").encode("ascii", "replace")
    return re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)


def _decode_header(value: str | None, defects: list[str] | None = None) -> str:
    """Decode a raw header value: raw 8-bit bytes, then RFC 2047 encoded words.

    Adjacent encoded words in one charset are joined before decoding, because encoders split
    multi-byte characters across words.
    """
    if not value:
        return ""
    if not isinstance(value, str):  # compat32 may hand back a Header object
        value = str(value)
    value = value[:MAX_HEADER_CHARS]
    raw = _header_bytes(value)
    if any(b > 0x7F for b in raw):
        value, bad = _decode_bytes(raw, "utf-8")
        if bad and defects is not None:
            defects.append("raw-8bit-header")
    value = re.sub(r"\r?\n(?=[ \t])", "", value)
    out: list[str] = []
    pending: list[tuple[str, bytes]] = []  # run of adjacent encoded words

    def flush() -> None:
        while pending:
            charset = pending[0][0]
            chunk = b""
            while pending and pending[0][0] == charset:
                chunk += pending.pop(0)[1]
            text, bad = _decode_bytes(chunk, charset)
            if bad and defects is not None:
                defects.append("unknown-charset")
            out.append(text)

    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        gap = value[pos : match.start()]
        decoded = _decode_word(match.group(1), match.group(2), match.group(3))
        if decoded is None:
            flush()
            out.append(gap + match.group(0))
        else:
            if gap.strip() or not pending:
                flush()
                out.append(gap)
            pending.append((match.group(1).lower(), decoded))
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def _one_line(text: str, limit: int) -> str:
    """Control and bidi characters removed, whitespace collapsed, length bounded."""
    text = _BIDI.sub("", _CONTROL.sub("", text))
    return _WS.sub(" ", text).strip()[:limit]


class _Headers:
    """Top-level headers by lower-case name, read once (a message may carry thousands)."""

    def __init__(self, msg: Message) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in msg.raw_items():
            key = str(name).strip().lower()
            values = self._values.setdefault(key, [])
            if len(values) < 20:
                values.append(value if isinstance(value, str) else str(value))

    def get(self, name: str) -> str | None:
        values = self._values.get(name)
        return values[0] if values else None

    def has(self, name: str) -> bool:
        return name in self._values

    def all(self, name: str) -> list[str]:
        return self._values.get(name, [])

    def __len__(self) -> int:
        return len(self._values)


# addr-spec as people and mailers actually write it; no spaces, brackets or controls.
_ADDR = re.compile(
    r"[^\s@<>()\[\],;:\\\"\x00-\x1f\x7f]{1,64}@[^\s@<>()\[\],;:\\\"\x00-\x1f\x7f]{1,253}"
)
_ADDR_IN_TEXT = re.compile(r"[A-Za-z0-9._%+'=-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def _clean_address(addr: str) -> str | None:
    addr = addr.strip().strip("<>").strip().lower()
    if addr.startswith("mailto:"):
        addr = addr[7:]
    return addr if _ADDR.fullmatch(addr) else None


def _addresses(raw: str | None) -> list[tuple[str, str | None]]:
    """(display name, address or None) pairs from an address header, names decoded."""
    if not raw:
        return []
    text = raw[:MAX_HEADER_CHARS]
    if any(b > 0x7F for b in _header_bytes(text)):
        text = _decode_bytes(_header_bytes(text), "utf-8")[0]
    text = re.sub(r"\r?\n(?=[ \t])", "", text)
    try:
        pairs = email.utils.getaddresses([text])
    except Exception:  # stdlib address parser on hostile input
        pairs = []
    found = [
        (_one_line(_decode_header(name), MAX_NAME_CHARS).strip("\"' "), _clean_address(addr))
        for name, addr in pairs
        if name or addr
    ]
    if not any(addr for _, addr in found):
        # Unparseable, or a name alone ("From: Reception Desk"): take the first thing that
        # looks like an address, else keep the words as the name.
        match = _ADDR_IN_TEXT.search(text)
        if match:
            name = _one_line(_decode_header(text[: match.start()]), MAX_NAME_CHARS)
            found = [(name.strip("\"'< "), _clean_address(match.group(0)))]
        else:
            name = _one_line(_decode_header(re.sub(r"<[^<>]*>", " ", text)), MAX_NAME_CHARS)
            name = name.strip("\"'<>():; ")
            found = [(name, None)] if name else []
    return found


_MSGID = re.compile(r"<([!-;=?-~]{1,500}@[!-;=?-~]{1,500})>")
_BARE_MSGID = re.compile(r"\s*<?([!-;=?-~]{1,500}@[!-;=?-~]{1,500})>?\s*")


def _message_id(raw: str | None) -> str | None:
    """``<local@domain>`` from a Message-ID header, or None when missing or garbage."""
    if not raw:
        return None
    text = raw[:2000]
    match = _MSGID.search(text)
    if match:
        return f"<{match.group(1)}>"
    match = _BARE_MSGID.fullmatch(text)
    return f"<{match.group(1)}>" if match else None


def _message_ids(raw: str | None) -> list[str]:
    """Every ``<id@domain>`` in In-Reply-To / References."""
    if not raw:
        return []
    return [f"<{m.group(1)}>" for m in _MSGID.finditer(raw[:MAX_HEADER_CHARS])][:50]


def _date(raw: str | None) -> datetime | None:
    if not raw:
        return None
    text = _one_line(_decode_header(raw), 200)
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except Exception:  # stdlib date parser raises several types on junk
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _token(raw: str | None) -> str | None:
    """First token of a structured header, lower-case, comments dropped: 'auto-replied'."""
    if raw is None:
        return None
    text = re.sub(r"\([^)]*\)", " ", _decode_header(raw))
    token = re.split(r"[\s;]+", text.strip(), maxsplit=1)[0].lower()
    return token or None


# ---------------------------------------------------------------------------- HTML to text

_BLOCK = {
    "address", "article", "aside", "blockquote", "center", "dd", "details", "dialog", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
    "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary",
    "table", "tbody", "tfoot", "thead", "tr", "ul",
}  # fmt: skip
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "ul", "ol", "pre"}
_SKIP = {"script", "style", "head", "title", "template", "svg", "math", "iframe", "object"}


class _HTMLText(HTMLParser):
    """Readable text from HTML: scripts/styles dropped, blocks → lines, entities decoded.

    Block boundaries ask for line breaks that are written only before the next visible text,
    so nested blocks do not stack up blank lines. Outlook writes each line as
    ``<p class=MsoNormal>`` and a blank line as an empty one, so Mso paragraphs end a line and
    an empty paragraph makes the blank line.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip: list[str] = []
        self.pre = 0
        self.links: list[tuple[str, int]] = []
        self.chars = 0  # visible characters written so far
        self.pending = 0  # line breaks owed before the next visible text
        self.paragraphs: list[tuple[int, bool]] = []  # (``chars``, is Mso) at each open <p>

    def _break(self, count: int) -> None:
        self.pending = max(self.pending, count)

    def _write(self, text: str) -> None:
        if self.pending and self.chars:
            self.out.append("\n" * self.pending)
        self.pending = 0
        self.out.append(text)
        self.chars += len(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.skip = [t for t in self.skip if t not in ("head", "title")]
        if tag in _SKIP:
            self.skip.append(tag)
            return
        if self.skip:
            return
        if tag == "br":
            if self.pending:
                self.pending += 1
            else:
                self.out.append("\n")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag in _BLOCK:
            mso = any(k == "class" and (v or "").startswith("Mso") for k, v in attrs)
            self._break(2 if tag in _PARAGRAPH and not mso else 1)
            if tag == "p":
                self.paragraphs.append((self.chars, mso))
            if tag == "li":
                self._write("- ")
            elif tag == "hr":
                self._write("---")
                self._break(1)
            elif tag == "pre":
                self.pre += 1
        elif tag == "a":
            href = next((v for k, v in attrs if k == "href" and v), "")
            self.links.append((href, len(self.out)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            return
        self.handle_starttag(tag, attrs)
        if tag == "a" and self.links:
            self.links.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.skip:
            while self.skip and self.skip.pop() != tag:
                pass
            return
        if self.skip:
            return
        if tag in _BLOCK:
            lines = 2 if tag in _PARAGRAPH else 1
            if tag == "p" and self.paragraphs:
                start, mso = self.paragraphs.pop()
                lines = 2 if not mso or start == self.chars else 1
            self._break(lines)
            if tag == "pre" and self.pre:
                self.pre -= 1
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            url = _readable_url(href)
            shown = "".join(self.out[start:])
            if url and url.rstrip("/") not in shown:
                self._write(f" ({url})")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if not self.pre:
            data = _WS.sub(" ", data)
            if not data.strip():
                if self.out and not self.pending:
                    self.out.append(" ")
                return
        self._write(data)

    def text(self) -> str:
        return "".join(self.out)


def _readable_url(href: str) -> str | None:
    """An http(s) link target worth showing, unwrapped from Outlook Safe Links."""
    href = href.strip()
    if not href.lower().startswith(("http://", "https://")) or len(href) > 2000:
        return None
    try:
        parts = urlsplit(href)
        if (parts.hostname or "").endswith("safelinks.protection.outlook.com"):
            inner = parse_qs(parts.query).get("url", [""])[0]
            if inner.lower().startswith(("http://", "https://")):
                href = inner
    except ValueError:
        return None
    return href[:300]


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body."""
    return _html_to_text(html, None)[0]


def _html_to_text(html: str, max_chars: int | None) -> tuple[str, bool]:
    """The text, and whether it was cut short: the HTML is fed in chunks and parsing stops
    once ``max_chars`` of text are out, so a 5 MB HTML body costs no more than it yields."""
    parser = _HTMLText()
    cut = False
    try:
        for start in range(0, len(html), 65_536):
            parser.feed(html[start : start + 65_536])
            if max_chars is not None and parser.chars > max_chars:
                cut = start + 65_536 < len(html)
                break
        parser.close()
        text = parser.text()
    except Exception:  # html.parser on hostile markup: fall back to stripping tags
        text = re.sub(r"<[^>]{0,2000}>", " ", html[: (max_chars or len(html)) * 4])
    return _tidy(text, html=True), cut


# ---------------------------------------------------------------------------- body text


def _tidy(text: str, *, html: bool = False) -> str:
    """Normalise line ends and spaces, keep paragraphs (at most one blank line)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\xa0", " ").replace("\u200b", "").replace("\ufeff", "")
    text = _CONTROL.sub("", text)
    if html:
        text = re.sub(r"[ \t]*\n[ \t]*", "\n", re.sub(r"[ \t]{2,}", " ", text))
    else:
        text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n ").rstrip()


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: join soft line breaks (lines ending in a space)."""
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    joining = False
    for line in lines:
        quote = len(line) - len(line.lstrip(">"))
        body = line[quote:]
        if body.startswith(" "):
            body = body[1:]  # space-stuffing
        flowed = body.endswith(" ") and body != "-- "
        if flowed and delsp:
            body = body[:-1]
        if joining and out:
            out[-1] += body
        else:
            out.append(">" * quote + (" " if quote else "") + body)
        joining = flowed
    return "\n".join(out)


_META_CHARSET = re.compile(rb"<meta[^>]{0,200}charset=[\"']?([A-Za-z0-9_.:-]{1,40})", re.I)


@dataclass
class _Walk:
    """What the MIME walk collects."""

    max_bytes: int
    max_chars: int
    texts: list[str] = field(default_factory=list)
    truncated: bool = False
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    parts: int = 0
    report_types: set[str] = field(default_factory=set)
    content_types: set[str] = field(default_factory=set)
    bounce_of: list[str] = field(default_factory=list)
    attached_from: list[str] = field(default_factory=list)

    def defect(self, name: str) -> None:
        if name not in self.defects and len(self.defects) < 30:
            self.defects.append(name)


def _defect_name(defect: object) -> str:
    name = type(defect).__name__.removesuffix("Defect")
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower() or "defect"


def _payload(part: Message, walk: _Walk) -> bytes:
    """The decoded payload bytes of a leaf part (base64 and QP decoded, leniently)."""
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding must not sink the message
        walk.defect("undecodable-payload")
        return b""
    for defect in getattr(part, "defects", ()):
        walk.defect(_defect_name(defect))
    return data if isinstance(data, bytes) else b""


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "application/octet-stream"


def _param(part: Message, name: str, header: str = "content-type") -> str | None:
    try:
        value = part.get_param(name, None, header)
    except Exception:
        return None
    if isinstance(value, tuple):  # RFC 2231: (charset, language, value)
        value = email.utils.collapse_rfc2231_value(value)
    return str(value) if value is not None else None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


def _raw_filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # RFC 2231 continuations can trip the stdlib
        return None
    return name if isinstance(name, str) else None


def display_filename(name: str | None) -> str:
    """A safe display name: decoded, path parts and control characters gone, length bounded."""
    if not name:
        return ""
    text = _decode_header(name)
    text = _one_line(unicodedata.normalize("NFC", text), MAX_HEADER_CHARS)
    text = re.split(r"[\\/]", text)[-1]  # only the last path component, Windows or POSIX
    text = re.sub(r"^[A-Za-z]:", "", text).strip().strip(".").strip()
    if len(text) > MAX_FILENAME_CHARS:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            text = stem[: MAX_FILENAME_CHARS - len(ext) - 2] + "…." + ext
        else:
            text = text[: MAX_FILENAME_CHARS - 1] + "…"
    return text


def _text_of(part: Message, ctype: str, walk: _Walk) -> str:
    data = _payload(part, walk)
    html = ctype == "text/html"
    limit = walk.max_bytes * (10 if html else 1)
    partial = len(data) > limit
    if partial:
        data = data[:limit]
        walk.truncated = True
    charset = _param(part, "charset")
    if charset is None and html:
        match = _META_CHARSET.search(data[:4096])
        charset = match.group(1).decode("ascii") if match else None
    text, bad = _decode_bytes(data, charset, partial=partial)
    if bad:
        walk.defect("unknown-charset" if charset and not _codec_for(charset) else "wrong-charset")
    if html:
        text, cut = _html_to_text(text, walk.max_chars)
        walk.truncated |= cut
        return text
    if (_param(part, "format") or "").lower() == "flowed":
        text = _unflow(text, (_param(part, "delsp") or "").lower() == "yes")
    return _tidy(text)


def _add_attachment(walk: _Walk, name: str, ctype: str, size: int) -> None:
    if len(walk.attachments) >= MAX_ATTACHMENTS:
        walk.defect("too-many-attachments")
        return
    walk.attachments.append(
        Attachment(filename=name or "attachment", content_type=ctype, size=size)
    )


def _is_body(part: Message, ctype: str, top: bool) -> bool:
    if ctype not in ("text/plain", "text/html"):
        return False
    if top:
        return True
    return _disposition(part) != "attachment" and not _raw_filename(part)


def _walk(
    part: Message, walk: _Walk, depth: int, *, top: bool = False, in_report: bool = False
) -> None:
    walk.parts += 1
    if walk.parts > MAX_PARTS:
        walk.defect("too-many-parts")
        return
    if depth > MAX_DEPTH:
        walk.defect("nesting-too-deep")
        return
    for defect in getattr(part, "defects", ()):
        walk.defect(_defect_name(defect))
    ctype = _content_type(part)
    walk.content_types.add(ctype)

    if ctype.startswith("multipart/"):
        if ctype == "multipart/report":
            walk.report_types.add((_param(part, "report-type") or "").lower())
            in_report = True
        if not part.is_multipart():
            # No usable boundary: the stdlib leaves the body as one string. Read it as text
            # rather than lose it as an "attachment".
            walk.defect("multipart-without-parts")
            _body_text(part, "text/plain", walk)
            return
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        if ctype == "multipart/alternative":
            children = _best_alternative(children)
        for child in children:
            _walk(child, walk, depth + 1, in_report=in_report)
        return
    if ctype in ("message/rfc822", "message/global"):
        _attached_message(part, ctype, walk, depth, in_report)
        return
    if ctype in ("text/rfc822-headers", "message/global-headers"):
        headers = _parse_headers_only(_payload(part, walk))
        if headers is not None:
            walk.bounce_of.extend(filter(None, [_message_id(headers.get("message-id"))]))
        return
    if ctype.startswith("message/"):  # delivery-status, disposition-notification, partial…
        return
    if _is_body(part, ctype, top):
        _body_text(part, ctype, walk)
        return
    size = len(_payload(part, walk))
    _add_attachment(walk, display_filename(_raw_filename(part)), ctype, size)


def _body_text(part: Message, ctype: str, walk: _Walk) -> None:
    text = _text_of(part, ctype, walk)
    if text:
        walk.texts.append(text)


def _best_alternative(children: list[Message]) -> list[Message]:
    """Plain text when it has words, else HTML, else the last (richest) alternative."""
    by_type: dict[str, Message] = {}
    for child in children:
        by_type.setdefault(_content_type(child), child)
    plain = by_type.get("text/plain")
    if plain is not None:
        try:
            body = plain.get_payload(decode=True)
        except Exception:
            body = b""
        if isinstance(body, bytes) and body.strip():
            return [plain]
    if "text/html" in by_type:
        return [by_type["text/html"]]
    nested = [c for c in children if c.is_multipart()]
    return nested[:1] or children[-1:]


def _attached_message(part: Message, ctype: str, walk: _Walk, depth: int, in_report: bool) -> None:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if isinstance(inner, Message) and cte in ("base64", "quoted-printable"):
        # Not allowed by RFC 2046 but sent anyway: decode, then parse the message inside.
        body = inner.get_payload()
        data = _header_bytes(body) if isinstance(body, str) else b""
        try:
            data = base64.b64decode(data) if cte == "base64" else quopri.decodestring(data)
            inner = email.message_from_bytes(data, policy=email.policy.compat32)
        except Exception:
            walk.defect("undecodable-attached-message")
            inner = None
    if not isinstance(inner, Message):
        _add_attachment(walk, display_filename(_raw_filename(part)) or "message.eml", ctype, 0)
        return
    headers = _Headers(inner)
    message_id = _message_id(headers.get("message-id"))
    if in_report:
        if message_id:
            walk.bounce_of.append(message_id)
        return
    subject = _one_line(_decode_header(headers.get("subject"), walk.defects), MAX_SUBJECT_CHARS)
    sender = _addresses(headers.get("from"))
    if sender and sender[0][1]:
        walk.attached_from.append(sender[0][1])
    try:
        size = len(inner.as_bytes(policy=email.policy.compat32))
    except Exception:
        size = 0
    name = display_filename(_raw_filename(part)) or display_filename(
        (subject or "message") + ".eml"
    )
    _add_attachment(walk, name, ctype, size)
    # The forwarded account is part of the concern: its text goes after the forwarder's.
    sub = _Walk(max_bytes=walk.max_bytes, max_chars=walk.max_chars)
    _walk(inner, sub, depth + 1, top=True)
    lines = ["---------- Attached message ----------"]
    if sender:
        name_, addr = sender[0]
        lines.append(f"From: {name_} <{addr}>" if name_ and addr else f"From: {name_ or addr}")
    date = _date(headers.get("date"))
    if date:
        lines.append(f"Date: {email.utils.format_datetime(date)}")
    if subject:
        lines.append(f"Subject: {subject}")
    walk.texts.append("\n".join(lines) + ("\n\n" + "\n\n".join(sub.texts) if sub.texts else ""))
    walk.truncated |= sub.truncated
    walk.attachments.extend(sub.attachments[: max(0, MAX_ATTACHMENTS - len(walk.attachments))])
    walk.attached_from.extend(sub.attached_from)
    walk.parts += sub.parts
    for defect in sub.defects:
        walk.defect(defect)


def _parse_headers_only(data: bytes) -> _Headers | None:
    try:
        return _Headers(
            email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
        )
    except Exception:
        return None


# ---------------------------------------------------------------------------- forwarding

_FWD_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]{0,40}\]\s*)?(?:(?:re|aw|sv)\s*:\s*)*(?:fwd?|fw)\s*:", re.I
)
_REPLY_SUBJECT = re.compile(r"^\s*(?:\[[^\]]{0,40}\]\s*)?(?:re|aw|sv)\s*:", re.I)
# Gmail, Thunderbird, Apple Mail, Android and older Outlook markers, one per line.
_FWD_MARKER = re.compile(
    r"^[ >]*(?:-{2,}\s*(?:forwarded message|forwarded e-?mail)\s*-{2,}"
    r"|begin forwarded message:)[ \t]*$",
    re.I | re.M,
)
_ORIGINAL_MARKER = re.compile(r"^[ >]*[-_]{2,}\s*original message\s*[-_]{2,}[ \t]*$", re.I | re.M)
# Outlook's header block: "From: …" then "Sent:"/"Date:" on the next line(s).
_HEADER_BLOCK = re.compile(
    r"^[ >*]*From:\*?[ \t]*(?P<from>[^\n]{1,300})\n(?:[ >*]*[^\n:]{1,30}:[^\n]{0,300}\n)?"
    r"[ >*]*(?:Sent|Date):",
    re.I | re.M,
)
_FROM_LINE = re.compile(r"^[ >*]*From:\*?[ \t]*(?P<from>[^\n]{1,300})$", re.I | re.M)


def _forwarding(subject: str, text: str, attached_from: list[str]) -> tuple[bool, str | None]:
    """Whether the mail forwards another, and the original sender's address if it says."""
    head = text[:200_000]
    marker = _FWD_MARKER.search(head)
    is_reply = bool(_REPLY_SUBJECT.match(subject)) and not _FWD_SUBJECT.match(subject)
    if marker is None and not is_reply:
        marker = _ORIGINAL_MARKER.search(head) or _HEADER_BLOCK.search(head)
    forwarded = bool(_FWD_SUBJECT.match(subject) or marker or attached_from)
    if not forwarded:
        return False, None
    start = marker.start() if marker else 0
    line = _FROM_LINE.search(head, start, start + 5_000) if (marker or not attached_from) else None
    if line:
        match = _ADDR_IN_TEXT.search(line.group("from"))
        if match and (address := _clean_address(match.group(0))):
            return True, address
    return True, attached_from[0] if attached_from else None


# ---------------------------------------------------------------------------- automatic mail

_AUTO_SUBJECT = re.compile(
    r"^\s*(?:automatic reply|auto(?:matic)?[- ]?reply|auto[- ]?response|autoreply|"
    r"out of (?:the )?office|ooo\b|on (?:annual )?leave|away from (?:the|my) office)",
    re.I,
)
_NDR_SUBJECT = re.compile(
    r"undeliver|delivery status notification|delivery (?:has )?fail|failure notice|"
    r"returned mail|mail delivery|non-?delivery|could not be delivered|mail system error|"
    r"delivery failure",
    re.I,
)
_NDR_TEXT = re.compile(
    r"delivery has failed|could not be delivered|couldn't be delivered|wasn't delivered|"
    r"permanent(?:ly)? (?:error|fatal)|undeliverable|delivery to the following recipients? failed|"
    r"\b5\.\d\.\d{1,3}\b",
    re.I,
)
_DAEMON = re.compile(r"\b(?:mailer-daemon|postmaster|microsoftexchange[0-9a-f]{10,})\b", re.I)


def _auto_reason(
    headers: _Headers, walk: _Walk, subject: str, from_raw: str, text: str
) -> str | None:
    """Why this is automatic mail (RFC 3834, RFC 3464/6522, RFC 8098, Exchange), else None.

    Deliberately not signals on their own: ``X-Auto-Response-Suppress`` (Outlook and list
    servers put it on people's mail: it asks *us* not to auto-reply), ``Precedence: list`` and
    ``List-Id`` (a concern can reach the mailbox through a group). Treating them as automatic
    would drop real concerns, which is worse than one spurious entry the DSP can close.
    """
    if "disposition-notification" in walk.report_types or (
        "message/disposition-notification" in walk.content_types
    ):
        return "read-receipt"
    if (
        "delivery-status" in walk.report_types
        or walk.content_types & {"message/delivery-status", "message/global-delivery-status"}
        or headers.has("x-ms-exchange-message-is-ndr")
    ):
        return "bounce"
    null_sender = (headers.get("return-path") or "").strip() == "<>"
    if (_DAEMON.search(from_raw) or null_sender) and (
        _NDR_SUBJECT.search(subject) or _NDR_TEXT.search(text[:20_000])
    ):
        return "bounce"
    auto_submitted = _token(headers.get("auto-submitted"))
    if auto_submitted and auto_submitted != "no":
        return "auto-reply"
    for name in ("x-autoreply", "x-autorespond"):
        value = _token(headers.get(name))
        if headers.has(name) and value not in ("no", "false", "0"):
            return "auto-reply"
    if _token(headers.get("precedence")) in ("bulk", "junk", "auto_reply"):
        return "auto-reply"
    if walk.report_types:
        return "auto-reply"  # other machine reports (feedback, TLS) are not concerns either
    if _AUTO_SUBJECT.match(subject) and (
        headers.has("x-auto-response-suppress")
        or null_sender
        or headers.has("x-ms-exchange-inbox-rules-loop")
    ):
        return "auto-reply"
    return None


# ---------------------------------------------------------------------------- entry points

_HEADER_LINE = re.compile(rb"^[!-9;-~]{1,76}[ \t]*:")
# A message with none of these is not an e-mail (or not one a person sent).
_CORE_HEADERS = {
    "from", "sender", "to", "cc", "subject", "date", "message-id", "received", "return-path",
    "mime-version", "content-type", "reply-to", "delivered-to", "resent-from", "in-reply-to",
}  # fmt: skip


_OBS_COLON = re.compile(rb"^([!-9;-~]{1,76})[ \t]+:")


def _repair_header_block(raw: bytes, defects: list[str]) -> bytes:
    """Drop stray lines inside the header block and close up "Name  :" (obsolete syntax).

    The stdlib treats the first line that is not a header as the start of the body, so one
    garbled line would hide every header after it, From included.
    """
    end = re.search(rb"\r?\n\r?\n", raw)
    if end is None:
        return raw
    lines = raw[: end.start()].split(b"\n")
    headers = [n for n, line in enumerate(lines) if _HEADER_LINE.match(line)]
    if not headers:
        return raw
    last = headers[-1]
    kept: list[bytes] = []
    for n, line in enumerate(lines):
        if _HEADER_LINE.match(line):
            kept.append(_OBS_COLON.sub(rb"\1:", line))
        elif n > last or line[:1] in (b" ", b"\t") or (n == 0 and line.startswith(b"From ")):
            kept.append(line)
    if len(kept) < len(lines):
        defects.append("header-line-without-colon")
    return b"\n".join(kept) + raw[end.start() :]


def _first_line_is_header(raw: bytes) -> bool:
    first = raw.split(b"\n", 1)[0]
    return first.startswith(b"From ") or bool(_HEADER_LINE.match(first))


def parse_message(raw: bytes, *, max_text_chars: int = 100_000) -> ParsedMail:
    """Parse one RFC 5322 message. Raises ``InputError`` only when it is not an e-mail at all.

    Broken MIME, bad transfer encodings, wrong charsets, missing boundaries, very large bodies
    and very deep nesting all give a sensible result, with what was wrong named in ``defects``.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise InputError(f"expected the message as bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    stripped = raw.lstrip(b"\xef\xbb\xbf").lstrip(b"\r\n\t ")
    if not stripped:
        raise InputError("the message is empty (0 bytes of content); nothing to read")
    if not _first_line_is_header(stripped):
        raise InputError(
            "the message does not start with an e-mail header block (no 'Name: value' line)"
        )
    defects: list[str] = []
    stripped = _repair_header_block(stripped, defects)
    try:
        msg = email.message_from_bytes(stripped, policy=email.policy.compat32)
    except RecursionError:
        # The stdlib parser recurses per MIME level; a hostile nesting depth exhausts the
        # stack. Keep the headers and treat the body as text so the mail is still seen.
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            stripped, headersonly=True
        )
        defects.append("nesting-too-deep")
    except Exception as exc:  # translate at the boundary
        raise InputError(f"the message cannot be parsed as MIME ({type(exc).__name__})") from exc

    headers = _Headers(msg)
    if not any(headers.has(name) for name in _CORE_HEADERS):
        raise InputError(
            "the message has no e-mail headers (no From, To, Subject, Date or Message-ID)"
        )

    walk = _Walk(max_bytes=max(4 * max_text_chars + 4, 1024), max_chars=max_text_chars)
    walk.defects.extend(defects)
    if "nesting-too-deep" in defects:
        body = msg.get_payload()
        data = _header_bytes(body) if isinstance(body, str) else b""
        text, _ = _decode_bytes(data[: walk.max_bytes], "utf-8", partial=len(data) > walk.max_bytes)
        walk.texts.append(_tidy(text))
    else:
        _walk(msg, walk, 0, top=True)

    text = "\n\n".join(t for t in walk.texts if t)
    truncated = walk.truncated
    if len(text) > max_text_chars:
        cut = text.rfind(" ", max(0, max_text_chars - 200), max_text_chars)
        text = text[: cut if cut > 0 else max_text_chars].rstrip()
        truncated = True

    senders = _addresses(headers.get("from"))
    from_name = next((n for n, _ in senders if n), "")
    from_address = next((a for _, a in senders if a), None)
    if from_address is None:  # "From: Name" only: the Sender header may still say who
        from_address = next((a for _, a in _addresses(headers.get("sender")) if a), None)
    if from_address is None and not text and not walk.attachments:
        raise InputError(
            "the message has neither a sender address nor a body; it is not a concern e-mail"
        )
    reply_to = next((a for _, a in _addresses(headers.get("reply-to")) if a), None)
    subject = _one_line(_decode_header(headers.get("subject"), walk.defects), MAX_SUBJECT_CHARS)
    forwarded, forwarded_from = _forwarding(subject, text, walk.attached_from)
    auto = _auto_reason(headers, walk, subject, headers.get("from") or "", text)
    references = tuple(
        dict.fromkeys(
            _message_ids(headers.get("in-reply-to")) + _message_ids(headers.get("references"))
        )
    )
    bounce_of: tuple[str, ...] = ()
    if auto == "bounce":
        bounce_of = tuple(dict.fromkeys([*walk.bounce_of, *references]))
    return ParsedMail(
        message_id=_message_id(headers.get("message-id")),
        from_name=from_name,
        from_address=from_address,
        reply_to=reply_to,
        subject=subject,
        date=_date(headers.get("date")),
        text=text,
        text_truncated=truncated,
        attachments=tuple(walk.attachments),
        forwarded=forwarded,
        forwarded_from=forwarded_from,
        auto=auto,
        bounce_of=bounce_of,
        defects=tuple(dict.fromkeys(walk.defects)),
        auto_submitted=_token(headers.get("auto-submitted")),
        references=references,
    )


# The Message-IDs the service gives its own mail: "<kind.<24 hex>@domain>" (App.message_id).
_OUR_MESSAGE_ID = re.compile(r"^<[a-z][a-z0-9-]*\.[0-9a-f]{24}@")


def _sent_by_us(parsed: ParsedMail) -> bool:
    """Mail from the shared address is ours only if a machine sent it: a person sending *as*
    the shared mailbox (a DSP forwarding a concern into it) must still be heard."""
    if parsed.auto_submitted not in (None, "", "no"):
        return True
    return bool(parsed.message_id and _OUR_MESSAGE_ID.match(parsed.message_id))


def classify(parsed: ParsedMail, own_addresses: Iterable[str]) -> str | None:
    """Why this mail must never become a concern ("own-mail", "auto-reply", "bounce",
    "read-receipt"), or None for a person's mail.

    Own mail is mail from one of the service's addresses, or auto-generated mail (our
    ``Auto-Submitted: auto-generated``) from one of their domains.
    """
    own: set[str] = set()
    for item in own_addresses:
        _, addr = email.utils.parseaddr(item)
        cleaned = _clean_address(addr or item)
        if cleaned:
            own.add(cleaned)
    if parsed.from_address and parsed.from_address in own and _sent_by_us(parsed):
        return "own-mail"
    domains = {a.rsplit("@", 1)[1] for a in own}
    if (
        parsed.auto_submitted == "auto-generated"
        and parsed.from_address
        and parsed.from_address.rsplit("@", 1)[1] in domains
    ):
        return "own-mail"
    return parsed.auto
