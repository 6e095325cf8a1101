"""MIME <-> Graph message JSON, the way Exchange derives one from the other."""

from __future__ import annotations

import base64
import email
import email.header
import email.utils
import html
import re
import uuid
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message
from typing import Any

from .common import iso, utcnow


def _addr(name: str, address: str) -> dict[str, Any]:
    return {"emailAddress": {"name": name or address, "address": address}}


def _addresses(msg: Message, header: str) -> list[dict[str, Any]]:
    values = msg.get_all(header) or []
    result = []
    for name, address in email.utils.getaddresses([str(v) for v in values]):
        if address:
            result.append(_addr(name, address))
    return result


def _text_preview(content: str, is_html: bool) -> str:
    if is_html:
        content = re.sub(r"(?is)<(script|style).*?</\1>", " ", content)
        content = html.unescape(re.sub(r"<[^>]+>", " ", content))
    return re.sub(r"\s+", " ", content).strip()[:255]


def new_message_id() -> str:
    """Exchange's own form, e.g. <AM9PR01MB1234…@AM9PR01MB1234.eurprd01.prod.outlook.com>."""
    token = uuid.uuid4().hex.upper()
    return f"<{token}@EMULATOR.prod.outlook.example.org>"


def parse_mime(raw: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Graph properties and attachments (with `_bytes`) for a raw RFC 5322 message."""
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    subject = _header_text(msg.get("Subject"))
    from_list = _addresses(msg, "From")
    sender_list = _addresses(msg, "Sender") or from_list
    date = _parse_date(msg.get("Date"))
    body_text, body_type = _body(msg)
    attachments = _attachments(msg)
    headers = [
        {"name": name, "value": re.sub(r"\r?\n[ \t]+", " ", _header_text(value))}
        for name, value in msg.items()
    ]
    props: dict[str, Any] = {
        "subject": subject,
        "from": from_list[0] if from_list else None,
        "sender": sender_list[0] if sender_list else None,
        "toRecipients": _addresses(msg, "To"),
        "ccRecipients": _addresses(msg, "Cc"),
        "bccRecipients": _addresses(msg, "Bcc"),
        "replyTo": _addresses(msg, "Reply-To"),
        "internetMessageId": (msg.get("Message-ID") or "").strip() or new_message_id(),
        "sentDateTime": iso(date),
        "body": {"contentType": body_type, "content": body_text},
        "bodyPreview": _text_preview(body_text, body_type == "html"),
        "importance": _importance(msg),
        "internetMessageHeaders": headers,
    }
    return props, attachments


def _header_text(value: Any) -> str:
    if value is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except (ValueError, LookupError):
        return str(value)


def _parse_date(value: Any) -> datetime:
    if value:
        try:
            parsed = email.utils.parsedate_to_datetime(str(value))
            if parsed.tzinfo is not None:
                return parsed
        except (TypeError, ValueError):
            pass
    return utcnow()


def _importance(msg: Message) -> str:
    value = str(msg.get("Importance") or msg.get("X-Priority") or "").lower()
    if value.startswith(("high", "1", "2")):
        return "high"
    if value.startswith(("low", "4", "5")):
        return "low"
    return "normal"


def _decode_part(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _is_attachment(part: Message) -> bool:
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    if disposition == "attachment":
        return True
    return bool(part.get_filename()) and not part.get_content_type().startswith("text/")


def _body(msg: Message) -> tuple[str, str]:
    html_part = text_part = None
    for part in msg.walk():
        if part.is_multipart() or _is_attachment(part):
            continue
        if part.get_content_type() == "text/html" and html_part is None:
            html_part = part
        elif part.get_content_type() == "text/plain" and text_part is None:
            text_part = part
    if html_part is not None:
        return _decode_part(html_part), "html"
    if text_part is not None:
        return _decode_part(text_part), "text"
    return "", "text"


def _attachments(msg: Message) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for part in _walk_skipping_rfc822(msg):
        if part is msg or (part.is_multipart() and part.get_content_type() != "message/rfc822"):
            continue
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            inner_msg = inner[0] if isinstance(inner, list) and inner else None
            data = inner_msg.as_bytes() if isinstance(inner_msg, Message) else b""
            result.append(
                {
                    "@odata.type": "#microsoft.graph.itemAttachment",
                    "id": _attachment_id(),
                    "lastModifiedDateTime": iso(utcnow()),
                    "name": _header_text(inner_msg.get("Subject")) if inner_msg else "message",
                    "contentType": None,
                    "size": len(data),
                    "isInline": False,
                    "_bytes": data,
                }
            )
            continue
        if not _is_attachment(part) and not part.get("Content-ID"):
            continue
        if not _is_attachment(part) and part.get_content_maintype() == "text":
            continue
        data = part.get_payload(decode=True) or b""
        disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
        result.append(
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "id": _attachment_id(),
                "lastModifiedDateTime": iso(utcnow()),
                "name": _header_text(part.get_filename()) or "attachment",
                "contentType": part.get_content_type(),
                "size": len(data),
                "isInline": disposition == "inline",
                "contentId": (part.get("Content-ID") or "").strip("<> ") or None,
                "contentLocation": None,
                "_bytes": data,
            }
        )
    return result


def _walk_skipping_rfc822(msg: Message) -> list[Message]:
    """Parts of this message, not descending into attached messages."""
    parts: list[Message] = []

    def visit(part: Message) -> None:
        parts.append(part)
        if part.get_content_type() == "message/rfc822":
            return
        if part.is_multipart():
            for child in part.get_payload():
                visit(child)

    visit(msg)
    return parts


def _attachment_id() -> str:
    return "AAMkAGAtt" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=") + "="


def file_attachment(name: str, content_type: str, data: bytes, inline: bool = False) -> dict:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "id": _attachment_id(),
        "lastModifiedDateTime": iso(utcnow()),
        "name": name,
        "contentType": content_type,
        "size": len(data),
        "isInline": inline,
        "contentId": None,
        "contentLocation": None,
        "_bytes": data,
    }


def _format(recipient: dict[str, Any]) -> str:
    address = recipient.get("emailAddress") or {}
    return email.utils.formataddr((address.get("name") or "", address.get("address") or ""))


def build_mime(props: dict[str, Any], attachments: list[dict[str, Any]]) -> bytes:
    """The MIME Exchange would produce for a JSON-created message (for $value and sending)."""
    msg = EmailMessage(policy=policy.SMTP)
    if props.get("from"):
        msg["From"] = _format(props["from"])
    for header, key in (("To", "toRecipients"), ("Cc", "ccRecipients"), ("Reply-To", "replyTo")):
        if props.get(key):
            msg[header] = ", ".join(_format(r) for r in props[key])
    msg["Subject"] = props.get("subject") or ""
    msg["Date"] = email.utils.format_datetime(
        datetime.fromisoformat(props.get("sentDateTime") or iso(utcnow()))
    )
    msg["Message-ID"] = props.get("internetMessageId") or new_message_id()
    for header in props.get("internetMessageHeaders") or []:
        msg[header["name"]] = header["value"]
    body = props.get("body") or {}
    content = body.get("content") or ""
    if str(body.get("contentType", "text")).lower() == "html":
        msg.set_content(content, subtype="html")
    else:
        msg.set_content(content)
    for att in attachments:
        data = att.get("_bytes", b"")
        if att.get("@odata.type") == "#microsoft.graph.itemAttachment":
            msg.add_attachment(email.message_from_bytes(data, policy=policy.SMTP))
            continue
        maintype, _, subtype = (att.get("contentType") or "application/octet-stream").partition("/")
        msg.add_attachment(
            data,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=att.get("name") or "attachment",
            disposition="inline" if att.get("isInline") else "attachment",
        )
    return msg.as_bytes()


def attachment_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """A fileAttachment from a request body: {"@odata.type": "#microsoft.graph.fileAttachment",
    "name": "attachment.txt", "contentType": "text/plain", "contentBytes": "SGVsbG8gV29ybGQh"}"""
    content = data.get("contentBytes") or ""
    try:
        raw = base64.b64decode(content, validate=True)
    except ValueError as exc:
        raise ValueError("contentBytes is not valid base64") from exc
    return file_attachment(
        data.get("name") or "attachment",
        data.get("contentType") or "application/octet-stream",
        raw,
        bool(data.get("isInline")),
    )
