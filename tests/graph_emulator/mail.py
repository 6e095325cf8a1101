"""Exchange Online through Graph: mail folders, messages, delta, MIME, move, drafts and sending.

Ids: every message has an immutable id (kept across moves) and a regular id (replaced on
every move), as Exchange does; responses use the immutable one when the request carries
`Prefer: IdType="ImmutableId"`. Both forms are accepted on input.
"""

from __future__ import annotations

import base64
import binascii
import email
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from . import odata
from .auth import MAIL_READ, MAIL_SEND, MAIL_WRITE, require_mail
from .common import (
    GraphError,
    Request,
    Response,
    Router,
    empty_response,
    iso,
    json_response,
    paged,
    select_fields,
    utcnow,
)
from .mime import attachment_from_json, build_mime, new_message_id, parse_mime

WELL_KNOWN = {
    "msgfolderroot": "Top of Information Store",
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "outbox": "Outbox",
    "archive": "Archive",
}
ID_PREFIX = "AAMkAG"  # regular (EWS-style) ids
IMMUTABLE_PREFIX = "AAkALg"  # immutable ids
FOLDER_PREFIX = "AQMkAD"
DEFAULT_PAGE = 10  # Graph's default page size for messages, folders and delta
# Properties Graph returns only when $select names them.
SELECT_ONLY = ("internetMessageHeaders", "uniqueBody")
DRAFT_ONLY = {
    "subject",
    "body",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "from",
    "sender",
    "internetMessageHeaders",
}
ALWAYS_UPDATABLE = {"isRead", "categories", "flag", "importance", "inferenceClassification"}


def _new_id(prefix: str) -> str:
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(33)).decode() + "AAA="


def _change_key() -> str:
    return "CQAAABYAAA" + base64.urlsafe_b64encode(secrets.token_bytes(12)).decode()


@dataclass
class Folder:
    id: str
    display_name: str
    parent_id: str | None
    well_known: str | None = None


@dataclass
class StoredMessage:
    immutable_id: str
    rest_id: str
    folder_id: str
    props: dict[str, Any]
    attachments: list[dict[str, Any]]
    raw: bytes | None  # None: rebuild from props (drafts edited through JSON)
    received: datetime
    created: datetime
    modified: datetime
    seq: int
    change_key: str = field(default_factory=_change_key)
    is_draft: bool = False
    is_read: bool = False
    categories: list[str] = field(default_factory=list)
    flag: dict[str, Any] = field(default_factory=lambda: {"flagStatus": "notFlagged"})
    conversation_id: str = field(default_factory=lambda: _new_id("AAQkAG"))

    def mime(self) -> bytes:
        if self.raw is None:
            self.raw = build_mime(self.props, self.attachments)
        return self.raw


@dataclass
class Mailbox:
    address: str
    folders: dict[str, Folder] = field(default_factory=dict)
    messages: dict[str, StoredMessage] = field(default_factory=dict)  # by immutable id
    rest_index: dict[str, str] = field(default_factory=dict)  # regular id -> immutable id
    seq: int = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


@dataclass
class OutgoingMail:
    """What left the organisation: the sending mailbox, envelope recipients and the MIME."""

    sender: str
    recipients: list[str]
    raw: bytes

    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class DeltaRound:
    """One delta round: entries computed when it starts, served page by page."""

    address: str
    folder_id: str
    entries: list[tuple[str, str, str]]  # (kind, immutable id, regular id when computed)
    snapshot: dict[str, str]  # what the client knows once it reaches the deltaLink
    seq: int
    select: list[str] | None
    change_types: set[str]
    filter_text: str | None


@dataclass
class DeltaToken:
    address: str
    folder_id: str
    snapshot: dict[str, str]
    seq: int
    select: list[str] | None
    change_types: set[str]
    filter_text: str | None


class MailService:
    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.mailboxes: dict[str, Mailbox] = {}
        self.outgoing: list[OutgoingMail] = []
        self.rounds: dict[str, tuple[DeltaRound, int]] = {}  # skiptoken -> (round, offset)
        self.delta_tokens: dict[str, DeltaToken] = {}
        self.router = Router()
        r = self.router
        r.add("GET", "mailFolders", self.list_folders)
        r.add("POST", "mailFolders", self.create_folder)
        r.add("GET", "mailFolders/{fid}", self.get_folder)
        r.add("DELETE", "mailFolders/{fid}", self.delete_folder)
        r.add("GET", "mailFolders/{fid}/childFolders", self.list_folders)
        r.add("POST", "mailFolders/{fid}/childFolders", self.create_folder)
        r.add("GET", "mailFolders/{fid}/messages", self.list_messages)
        r.add("GET", "mailFolders/{fid}/messages/delta", self.delta)
        r.add("GET", "messages", self.list_messages)
        r.add("POST", "messages", self.create_draft)
        r.add("POST", "mailFolders/{fid}/messages", self.create_draft)
        for prefix in ("messages/{mid}", "mailFolders/{fid}/messages/{mid}"):
            r.add("GET", prefix, self.get_message)
            r.add("PATCH", prefix, self.update_message)
            r.add("DELETE", prefix, self.delete_message)
            r.add("POST", prefix + "/permanentDelete", self.permanent_delete)
            r.add("GET", prefix + "/$value", self.get_mime)
            r.add("GET", prefix + "/attachments", self.list_attachments)
            r.add("POST", prefix + "/attachments", self.add_attachment)
            r.add("GET", prefix + "/attachments/{aid}", self.get_attachment)
            r.add("GET", prefix + "/attachments/{aid}/$value", self.get_attachment_value)
            r.add("POST", prefix + "/move", self.move)
            r.add("POST", prefix + "/copy", self.copy)
            r.add("POST", prefix + "/send", self.send_draft)
        r.add("POST", "sendMail", self.send_mail)

    def reset(self) -> None:
        self.mailboxes.clear()
        self.outgoing.clear()
        self.rounds.clear()
        self.delta_tokens.clear()

    # --- test-side API ------------------------------------------------------------------------

    def add_mailbox(self, address: str) -> str:
        with self.lock:
            mb = Mailbox(address)
            root = Folder(
                _new_id(FOLDER_PREFIX), WELL_KNOWN["msgfolderroot"], None, "msgfolderroot"
            )
            mb.folders[root.id] = root
            for name, display in WELL_KNOWN.items():
                if name != "msgfolderroot":
                    folder = Folder(_new_id(FOLDER_PREFIX), display, root.id, name)
                    mb.folders[folder.id] = folder
            self.mailboxes[address.lower()] = mb
        return address

    def add_folder(self, address: str, display_name: str, parent: str = "msgfolderroot") -> str:
        with self.lock:
            mb = self._mailbox(address)
            parent_folder = self._folder(mb, parent)
            folder = Folder(_new_id(FOLDER_PREFIX), display_name, parent_folder.id)
            mb.folders[folder.id] = folder
            return folder.id

    def deliver(self, address: str, raw: bytes, folder: str = "inbox") -> str:
        with self.lock:
            mb = self._mailbox(address)
            target = self._folder_by_name(mb, folder)
            props, attachments = parse_mime(raw)
            now = self._received_time(mb)
            msg = self._store(mb, target, props, attachments, raw, now)
            return msg.immutable_id

    def folder_messages(self, address: str, folder_name: str) -> list[dict[str, Any]]:
        with self.lock:
            mb = self._mailbox(address)
            folder = self._folder_by_name(mb, folder_name)
            return [
                self._render(mb, m, immutable=True, select=None, headers=True)
                for m in self._in_folder(mb, folder.id)
            ]

    def lose_delta_tokens(self) -> None:
        with self.lock:
            self.rounds.clear()
            self.delta_tokens.clear()

    # --- state helpers ------------------------------------------------------------------------

    def _mailbox(self, address: str) -> Mailbox:
        mb = self.mailboxes.get(address.lower())
        if mb is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{address}' is invalid.")
        return mb

    def _folder_by_name(self, mb: Mailbox, name: str) -> Folder:
        for folder in mb.folders.values():
            if name == folder.id or name.lower() in (
                folder.well_known or "",
                folder.display_name.lower(),
            ):
                return folder
        raise KeyError(f"{mb.address} has no folder '{name}'")

    def _folder(self, mb: Mailbox, ref: str) -> Folder:
        if ref in mb.folders:
            return mb.folders[ref]
        for folder in mb.folders.values():
            if folder.well_known and folder.well_known == ref.lower():
                return folder
        if ref.startswith(FOLDER_PREFIX):
            raise GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")

    def _message(self, mb: Mailbox, ref: str) -> StoredMessage:
        imm = ref if ref in mb.messages else mb.rest_index.get(ref)
        if imm is not None and imm in mb.messages:
            return mb.messages[imm]
        if ref.startswith((ID_PREFIX, IMMUTABLE_PREFIX)):
            raise GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")

    def _in_folder(self, mb: Mailbox, folder_id: str) -> list[StoredMessage]:
        found = [m for m in mb.messages.values() if m.folder_id == folder_id]
        return sorted(found, key=lambda m: (m.received, m.seq))

    def _received_time(self, mb: Mailbox) -> datetime:
        """Now, but strictly after the latest message, so ordering by time is stable."""
        now = utcnow().replace(microsecond=0)
        latest = max((m.received for m in mb.messages.values()), default=None)
        if latest is not None and now <= latest:
            now = latest + timedelta(seconds=1)
        return now

    def _store(
        self,
        mb: Mailbox,
        folder: Folder,
        props: dict[str, Any],
        attachments: list[dict[str, Any]],
        raw: bytes | None,
        received: datetime,
        *,
        draft: bool = False,
    ) -> StoredMessage:
        msg = StoredMessage(
            immutable_id=_new_id(IMMUTABLE_PREFIX),
            rest_id=_new_id(ID_PREFIX),
            folder_id=folder.id,
            props=props,
            attachments=attachments,
            raw=raw,
            received=received,
            created=received,
            modified=received,
            seq=mb.next_seq(),
            is_draft=draft,
        )
        mb.messages[msg.immutable_id] = msg
        mb.rest_index[msg.rest_id] = msg.immutable_id
        return msg

    def _touch(self, mb: Mailbox, msg: StoredMessage) -> None:
        msg.seq = mb.next_seq()
        msg.modified = utcnow()
        msg.change_key = _change_key()

    def _relocate(self, mb: Mailbox, msg: StoredMessage, folder: Folder) -> None:
        """A move: same immutable id, a new regular id (the old one stops working)."""
        mb.rest_index.pop(msg.rest_id, None)
        msg.rest_id = _new_id(ID_PREFIX)
        mb.rest_index[msg.rest_id] = msg.immutable_id
        msg.folder_id = folder.id
        self._touch(mb, msg)

    # --- rendering ----------------------------------------------------------------------------

    def _render(
        self,
        mb: Mailbox,
        msg: StoredMessage,
        *,
        immutable: bool,
        select: list[str] | None,
        headers: bool = False,
        expand_attachments: bool = False,
    ) -> dict[str, Any]:
        """A message resource (api-reference/v1.0/resources/message.md), e.g.
        {"@odata.etag": "W/\"CQAAABYAAAA…\"", "id": "AAMkAGUAAAwTW09AAA=",
         "receivedDateTime": "2024-05-01T10:00:00Z", "hasAttachments": false,
         "internetMessageId": "<…@….prod.outlook.com>", "subject": "…", "isRead": false,
         "webLink": "https://outlook.office365.com/owa/?ItemID=…&exvsurl=1&viewmodel=ReadMessageItem",
         "body": {"contentType": "html", "content": "…"},
         "sender": {"emailAddress": {"name": "…", "address": "…"}}, "from": {…},
         "toRecipients": [{"emailAddress": {…}}], "parentFolderId": "AQMkAD…", …}
        """
        mid = msg.immutable_id if immutable else msg.rest_id
        p = msg.props
        data: dict[str, Any] = {
            "@odata.etag": f'W/"{msg.change_key}"',
            "id": mid,
            "createdDateTime": iso(msg.created),
            "lastModifiedDateTime": iso(msg.modified),
            "changeKey": msg.change_key,
            "categories": list(msg.categories),
            "receivedDateTime": iso(msg.received),
            "sentDateTime": p.get("sentDateTime") if not msg.is_draft else None,
            "hasAttachments": any(not a.get("isInline") for a in msg.attachments),
            "internetMessageId": p.get("internetMessageId"),
            "subject": p.get("subject", ""),
            "bodyPreview": p.get("bodyPreview", ""),
            "importance": p.get("importance", "normal"),
            "parentFolderId": msg.folder_id,
            "conversationId": msg.conversation_id,
            "conversationIndex": base64.b64encode(msg.conversation_id.encode()[:22]).decode(),
            "isDeliveryReceiptRequested": False,
            "isReadReceiptRequested": False,
            "isRead": msg.is_read,
            "isDraft": msg.is_draft,
            "webLink": "https://outlook.office365.com/owa/?ItemID="
            + quote(mid, safe="")
            + "&exvsurl=1&viewmodel=ReadMessageItem",
            "inferenceClassification": "focused",
            "body": p.get("body", {"contentType": "text", "content": ""}),
            "sender": p.get("sender"),
            "from": p.get("from"),
            "toRecipients": p.get("toRecipients", []),
            "ccRecipients": p.get("ccRecipients", []),
            "bccRecipients": p.get("bccRecipients", []),
            "replyTo": p.get("replyTo", []),
            "flag": dict(msg.flag),
        }
        wanted = {s.lower() for s in select or []}
        if headers or "internetmessageheaders" in wanted:
            data["internetMessageHeaders"] = p.get("internetMessageHeaders", [])
        if "uniquebody" in wanted:
            data["uniqueBody"] = data["body"]
        if expand_attachments:
            data["attachments"] = [self._render_attachment(a) for a in msg.attachments]
        return select_fields(data, select, ("id",))

    @staticmethod
    def _render_attachment(att: dict[str, Any], content: bool = True) -> dict[str, Any]:
        """{"@odata.type": "#microsoft.graph.fileAttachment", "id": "AAMkAGUzY5QKjAAABEgAQ…",
        "lastModifiedDateTime": "2019-04-02T03:41:29Z", "name": "invoice.docx",
        "contentType": "application/vnd…", "size": 13068, "isInline": false,
        "contentId": null, "contentLocation": null, "contentBytes": "UEsDBBQABgAIAAAAIQ4AAAAA"}
        (itemAttachment: "contentType": null and no contentBytes)"""
        data = {k: v for k, v in att.items() if not k.startswith("_")}
        if content and att.get("@odata.type") == "#microsoft.graph.fileAttachment":
            data["contentBytes"] = base64.b64encode(att.get("_bytes", b"")).decode()
        return data

    @staticmethod
    def _render_folder(mb: Mailbox, folder: Folder) -> dict[str, Any]:
        """{"id": "AQMkAD…", "displayName": "Inbox", "parentFolderId": "AQMkAD…",
        "childFolderCount": 0, "unreadItemCount": 2, "totalItemCount": 5, "sizeInBytes": 0,
        "isHidden": false}"""
        inside = [m for m in mb.messages.values() if m.folder_id == folder.id]
        return {
            "id": folder.id,
            "displayName": folder.display_name,
            "parentFolderId": folder.parent_id,
            "childFolderCount": sum(1 for f in mb.folders.values() if f.parent_id == folder.id),
            "unreadItemCount": sum(1 for m in inside if not m.is_read),
            "totalItemCount": len(inside),
            "sizeInBytes": sum(len(m.raw or b"") for m in inside),
            "isHidden": False,
        }

    # --- request entry ------------------------------------------------------------------------

    def handle(self, req: Request, upn: str, rest: list[str]) -> Response | None:
        return self.router.dispatch(req, rest) if rest else None

    def _context(self, req: Request, kind: set[str]) -> Mailbox:
        upn = req.path.split("/")[3]
        require_mail(req.app, upn, kind)
        return self._mailbox(upn)

    def _page(
        self,
        req: Request,
        items: list[dict[str, Any]],
        context: str,
    ) -> Response:
        top = req.int_param("$top") or req.max_page_size or DEFAULT_PAGE
        skip = req.int_param("$skip", 0) or 0
        page, more = paged(items, skip, top)
        body: dict[str, Any] = {"@odata.context": context, "value": page}
        if more:
            params = dict(req.query)
            params["$skip"] = str(skip + top)
            if "$top" in req.query:
                params["$top"] = str(top)
            body["@odata.nextLink"] = req.url_with(req.raw_path, **params)
        return json_response(200, body)

    # --- folders ------------------------------------------------------------------------------

    def list_folders(self, req: Request, p: dict[str, str]) -> Response:
        """GET /users/{id}/mailFolders[?$filter=displayName eq 'Processed'] ->
        {"@odata.context": "…/$metadata#users('…')/mailFolders", "value": [{mailFolder}],
         "@odata.nextLink": "…/mailFolders?%24skip=10"}"""
        with self.lock:
            mb = self._context(req, MAIL_READ)
            parent = self._folder(mb, p.get("fid", "msgfolderroot"))
            node = odata.compile_filter(req.query.get("$filter"))
            folders = [
                self._render_folder(mb, f) for f in mb.folders.values() if f.parent_id == parent.id
            ]
            folders = [f for f in folders if odata.matches(node, f)]
            folders = [select_fields(f, req.select(), ("id",)) for f in folders]
            return self._page(
                req, folders, f"{req.base_url}/v1.0/$metadata#users('{mb.address}')/mailFolders"
            )

    def create_folder(self, req: Request, p: dict[str, str]) -> Response:
        """POST …/mailFolders {"displayName": "Processed", "isHidden": false} -> 201 mailFolder;
        409 {"error": {"code": "ErrorFolderExists",
                       "message": "A folder with the specified name already exists."}}"""
        body = req.json_object()
        with self.lock:
            mb = self._context(req, MAIL_WRITE)
            parent = self._folder(mb, p.get("fid", "msgfolderroot"))
            name = str(body.get("displayName") or "").strip()
            if not name:
                raise GraphError(400, "ErrorInvalidRequest", "The DisplayName field is required.")
            for folder in mb.folders.values():
                if folder.parent_id == parent.id and folder.display_name.lower() == name.lower():
                    raise GraphError(
                        409, "ErrorFolderExists", "A folder with the specified name already exists."
                    )
            folder = Folder(_new_id(FOLDER_PREFIX), name, parent.id)
            mb.folders[folder.id] = folder
            data = self._render_folder(mb, folder)
            data["@odata.context"] = (
                f"{req.base_url}/v1.0/$metadata#users('{mb.address}')/mailFolders/$entity"
            )
            return json_response(201, data)

    def get_folder(self, req: Request, p: dict[str, str]) -> Response:
        with self.lock:
            mb = self._context(req, MAIL_READ)
            folder = self._folder(mb, p["fid"])
            data = select_fields(self._render_folder(mb, folder), req.select(), ("id",))
            return json_response(200, data)

    def delete_folder(self, req: Request, p: dict[str, str]) -> Response:
        """DELETE …/mailFolders/{id} -> 204. As in Outlook, the folder (with its messages and
        id) moves under Deleted Items; only a delete from there (or permanentDelete) purges."""
        with self.lock:
            mb = self._context(req, MAIL_WRITE)
            folder = self._folder(mb, p["fid"])
            if folder.well_known:
                raise GraphError(
                    403,
                    "ErrorDeleteDistinguishedFolder",
                    "Distinguished folders cannot be deleted.",
                )
            folder.parent_id = self._folder(mb, "deleteditems").id
            mb.next_seq()
            return empty_response(204)

    # --- messages -----------------------------------------------------------------------------

    def list_messages(self, req: Request, p: dict[str, str]) -> Response:
        """GET …/mailFolders/{id}/messages?$select=sender,subject&$top=5 ->
        {"@odata.context": "…/messages(sender,subject)", "value": [{"@odata.etag": "W/\"…\"",
         "id": "AAMkAGUAAAwTW09AAA=", "subject": "…", "sender": {…}}],
         "@odata.nextLink": "https://graph.microsoft.com/v1.0/me/messages?%24select=…&%24skip=14"}"""
        with self.lock:
            mb = self._context(req, MAIL_READ)
            if "fid" in p:
                folder_id = self._folder(mb, p["fid"]).id
                messages = [m for m in mb.messages.values() if m.folder_id == folder_id]
            else:
                messages = list(mb.messages.values())
            node = odata.compile_filter(req.query.get("$filter"))
            expand = "attachments" in (req.query.get("$expand") or "").lower()
            rendered = []
            for msg in sorted(messages, key=lambda m: (m.received, m.seq), reverse=True):
                full = self._render(mb, msg, immutable=req.immutable_ids, select=None, headers=True)
                if odata.matches(node, full):
                    rendered.append(
                        self._render(
                            mb,
                            msg,
                            immutable=req.immutable_ids,
                            select=req.select(),
                            expand_attachments=expand,
                        )
                    )
            rendered = odata.order_by(rendered, req.query.get("$orderby"))
            return self._page(
                req, rendered, f"{req.base_url}/v1.0/$metadata#users('{mb.address}')/messages"
            )

    def get_message(self, req: Request, p: dict[str, str]) -> Response:
        with self.lock:
            mb = self._context(req, MAIL_READ)
            msg = self._message(mb, p["mid"])
            expand = "attachments" in (req.query.get("$expand") or "").lower()
            data = self._render(
                mb,
                msg,
                immutable=req.immutable_ids,
                select=req.select(),
                expand_attachments=expand,
            )
            data["@odata.context"] = (
                f"{req.base_url}/v1.0/$metadata#users('{mb.address}')/messages/$entity"
            )
            return json_response(200, data)

    def get_mime(self, req: Request, p: dict[str, str]) -> Response:
        """GET …/messages/{id}/$value -> 200 the message's MIME (RFC 822) content."""
        with self.lock:
            mb = self._context(req, MAIL_READ)
            msg = self._message(mb, p["mid"])
            return Response(200, msg.mime(), {"Content-Type": "text/plain"})

    def list_attachments(self, req: Request, p: dict[str, str]) -> Response:
        with self.lock:
            mb = self._context(req, MAIL_READ)
            msg = self._message(mb, p["mid"])
            value = [
                select_fields(self._render_attachment(a), req.select(), ("id",))
                for a in msg.attachments
            ]
            return json_response(
                200,
                {
                    "@odata.context": f"{req.base_url}/v1.0/$metadata#users('{mb.address}')"
                    "/messages('…')/attachments",
                    "value": value,
                },
            )

    def _attachment(self, msg: StoredMessage, aid: str) -> dict[str, Any]:
        for att in msg.attachments:
            if att["id"] == aid:
                return att
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )

    def get_attachment(self, req: Request, p: dict[str, str]) -> Response:
        with self.lock:
            mb = self._context(req, MAIL_READ)
            att = self._attachment(self._message(mb, p["mid"]), p["aid"])
            return json_response(200, self._render_attachment(att))

    def get_attachment_value(self, req: Request, p: dict[str, str]) -> Response:
        with self.lock:
            mb = self._context(req, MAIL_READ)
            att = self._attachment(self._message(mb, p["mid"]), p["aid"])
            content_type = att.get("contentType") or "message/rfc822"
            return Response(200, att.get("_bytes", b""), {"Content-Type": content_type})

    def add_attachment(self, req: Request, p: dict[str, str]) -> Response:
        """POST …/messages/{id}/attachments {"@odata.type": "#microsoft.graph.fileAttachment",
        "name": "…", "contentBytes": "…"} -> 201 the attachment."""
        body = req.json_object()
        with self.lock:
            mb = self._context(req, MAIL_WRITE)
            msg = self._message(mb, p["mid"])
            try:
                att = attachment_from_json(body)
            except ValueError as exc:
                raise GraphError(400, "ErrorInvalidRequest", str(exc)) from exc
            msg.attachments.append(att)
            msg.raw = None if msg.is_draft else msg.raw
            self._touch(mb, msg)
            return json_response(201, self._render_attachment(att))

    def update_message(self, req: Request, p: dict[str, str]) -> Response:
        """PATCH …/messages/{id} {"isRead": true} -> 200 the message. Subject, body and
        recipients are updatable only on drafts."""
        body = req.json_object()
        with self.lock:
            mb = self._context(req, MAIL_WRITE)
            msg = self._message(mb, p["mid"])
            for key, value in body.items():
                if key in ALWAYS_UPDATABLE:
                    if key == "isRead":
                        msg.is_read = value in (True, "true", "True")
                    elif key == "categories":
                        msg.categories = list(value or [])
                    elif key == "flag":
                        msg.flag = dict(value or {})
                    else:
                        msg.props[key] = value
                elif key in DRAFT_ONLY:
                    if not msg.is_draft:
                        raise GraphError(
                            400,
                            "ErrorInvalidPropertyUpdateSentMessage",
                            "Update operation is not supported for this property on a sent "
                            "message.",
                        )
                    if key == "internetMessageHeaders":
                        _check_custom_headers(value)
                    if key == "body" and isinstance(value, dict):
                        msg.props["bodyPreview"] = str(value.get("content", ""))[:255]
                    msg.props[key] = value
                    msg.raw = None
                elif not key.startswith("@"):
                    raise GraphError(
                        400, "ErrorInvalidRequest", f"The property '{key}' cannot be updated."
                    )
            self._touch(mb, msg)
            return json_response(
                200, self._render(mb, msg, immutable=req.immutable_ids, select=None)
            )

    def delete_message(self, req: Request, p: dict[str, str]) -> Response:
        """DELETE …/messages/{id} -> 204. As in Outlook, the message moves to Deleted Items
        (same immutable id, a new regular id); deleting it from Deleted Items moves it to the
        dumpster (Recoverable Items), which the messages API no longer shows."""
        with self.lock:
            mb = self._context(req, MAIL_WRITE)
            msg = self._message(mb, p["mid"])
            deleted_items = self._folder(mb, "deleteditems")
            if msg.folder_id == deleted_items.id:
                self._purge(mb, msg)
            else:
                self._relocate(mb, msg, deleted_items)
            return empty_response(204)

    def permanent_delete(self, req: Request, p: dict[str, str]) -> Response:
        """POST …/messages/{id}/permanentDelete -> 204 No Content; the message goes to the
        Purges folder of the dumpster, out of reach of the messages API."""
        with self.lock:
            mb = self._context(req, MAIL_WRITE)
            self._purge(mb, self._message(mb, p["mid"]))
            return empty_response(204)

    def _purge(self, mb: Mailbox, msg: StoredMessage) -> None:
        del mb.messages[msg.immutable_id]
        mb.rest_index.pop(msg.rest_id, None)
        mb.next_seq()

    def move(self, req: Request, p: dict[str, str]) -> Response:
        """POST …/messages/{id}/move {"destinationId": "deleteditems" | "<folder id>"} ->
        201 the message in its new folder (immutable ids keep their value)."""
        body = req.json_object()
        with self.lock:
            mb = self._context(req, MAIL_WRITE)
            msg = self._message(mb, p["mid"])
            dest = self._destination(mb, body)
            self._relocate(mb, msg, dest)
            data = self._render(mb, msg, immutable=req.immutable_ids, select=None)
            return json_response(201, data)

    def copy(self, req: Request, p: dict[str, str]) -> Response:
        body = req.json_object()
        with self.lock:
            mb = self._context(req, MAIL_WRITE)
            msg = self._message(mb, p["mid"])
            dest = self._destination(mb, body)
            clone = self._store(
                mb,
                dest,
                dict(msg.props),
                [dict(a) for a in msg.attachments],
                msg.raw,
                msg.received,
                draft=msg.is_draft,
            )
            clone.is_read = msg.is_read
            return json_response(
                201, self._render(mb, clone, immutable=req.immutable_ids, select=None)
            )

    def _destination(self, mb: Mailbox, body: dict[str, Any]) -> Folder:
        dest = str(body.get("destinationId") or "")
        if not dest:
            raise GraphError(400, "ErrorInvalidRequest", "The DestinationId field is required.")
        try:
            return self._folder(mb, dest)
        except GraphError as exc:
            raise GraphError(
                exc.status if exc.status != 404 else 404,
                "ErrorFolderNotFound" if exc.status == 404 else exc.code,
                "The specified folder could not be found in the store."
                if exc.status == 404
                else exc.message,
            ) from exc

    # --- drafts and sending -------------------------------------------------------------------

    def _props_from_request(self, req: Request, mb: Mailbox) -> tuple[dict, list, bytes | None]:
        """JSON message, or MIME sent base64-encoded with Content-Type: text/plain."""
        content_type = (req.header("Content-Type") or "").lower()
        if content_type.startswith("text/plain"):
            try:
                raw = base64.b64decode(req.body.strip(), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise GraphError(
                    400,
                    "ErrorMimeContentInvalidBase64String",
                    "Invalid base64 string for MIME content.",
                ) from exc
            props, attachments = parse_mime(raw)
            if "message-id" not in {h["name"].lower() for h in props["internetMessageHeaders"]}:
                raw = f"Message-ID: {props['internetMessageId']}\r\n".encode() + raw
            return props, attachments, raw
        data = req.json_object()
        message = data.get("message", data) if req.path.lower().endswith("/sendmail") else data
        if not isinstance(message, dict):
            raise GraphError(400, "ErrorInvalidRequest", "The message is missing.")
        headers = message.get("internetMessageHeaders") or []
        _check_custom_headers(headers)
        body = message.get("body") or {"contentType": "text", "content": ""}
        props: dict[str, Any] = {
            "subject": message.get("subject") or "",
            "body": {
                "contentType": str(body.get("contentType", "text")).lower(),
                "content": body.get("content", ""),
            },
            "bodyPreview": str(body.get("content", ""))[:255],
            "toRecipients": message.get("toRecipients") or [],
            "ccRecipients": message.get("ccRecipients") or [],
            "bccRecipients": message.get("bccRecipients") or [],
            "replyTo": message.get("replyTo") or [],
            "from": message.get("from"),
            "sender": message.get("sender") or message.get("from"),
            "importance": str(message.get("importance") or "normal").lower(),
            "internetMessageHeaders": headers,
            "internetMessageId": new_message_id(),
        }
        try:
            attachments = [attachment_from_json(a) for a in message.get("attachments") or []]
        except ValueError as exc:
            raise GraphError(400, "ErrorInvalidRequest", str(exc)) from exc
        return props, attachments, None

    def create_draft(self, req: Request, p: dict[str, str]) -> Response:
        """POST /users/{id}/messages (JSON message, or base64 MIME with Content-Type: text/plain)
        -> 201 the draft, in Drafts, with its id and internetMessageId."""
        with self.lock:
            mb = self._context(req, MAIL_WRITE)
            folder = self._folder(mb, p.get("fid", "drafts"))
            props, attachments, raw = self._props_from_request(req, mb)
            if not props.get("from"):
                props["from"] = props["sender"] = {
                    "emailAddress": {"name": mb.address, "address": mb.address}
                }
            msg = self._store(
                mb, folder, props, attachments, raw, self._received_time(mb), draft=True
            )
            msg.is_read = True
            data = self._render(mb, msg, immutable=req.immutable_ids, select=None)
            data["@odata.context"] = (
                f"{req.base_url}/v1.0/$metadata#users('{mb.address}')/messages/$entity"
            )
            return json_response(201, data)

    def send_draft(self, req: Request, p: dict[str, str]) -> Response:
        """POST …/messages/{id}/send -> 202 Accepted, no body; the message moves to Sent Items."""
        with self.lock:
            upn = req.path.split("/")[3]
            require_mail(req.app, upn, MAIL_SEND)
            mb = self._mailbox(upn)
            msg = self._message(mb, p["mid"])
            if not msg.is_draft:
                raise GraphError(400, "ErrorInvalidOperation", "Only a draft message can be sent.")
            self._check_recipients(msg.props)
            msg.props["sentDateTime"] = iso(utcnow())
            msg.is_draft = False
            if msg.raw is None:
                msg.raw = build_mime(msg.props, msg.attachments)
            self._record_outgoing(mb, msg.props, msg.raw)
            self._relocate(mb, msg, self._folder(mb, "sentitems"))
            msg.received = self._received_time(mb)
            return empty_response(202)

    def send_mail(self, req: Request, p: dict[str, str]) -> Response:
        """POST /users/{id}/sendMail {"message": {"subject": "…", "body": {"contentType": "Text",
        "content": "…"}, "toRecipients": [{"emailAddress": {"address": "…"}}]},
        "saveToSentItems": "false"} (or base64 MIME as text/plain) -> 202 Accepted, no body."""
        with self.lock:
            upn = req.path.split("/")[3]
            require_mail(req.app, upn, MAIL_SEND)
            mb = self._mailbox(upn)
            props, attachments, raw = self._props_from_request(req, mb)
            self._check_recipients(props)
            if not props.get("from"):
                props["from"] = {"emailAddress": {"name": mb.address, "address": mb.address}}
            if not props.get("sender"):
                props["sender"] = props["from"]
            props["sentDateTime"] = iso(utcnow())
            if raw is None:
                raw = build_mime(props, attachments)
            data = req.json if isinstance(req.json, dict) else {}
            save = data.get("saveToSentItems", True)
            self._record_outgoing(mb, props, raw)
            if save not in (False, "false", "False"):
                msg = self._store(
                    mb,
                    self._folder(mb, "sentitems"),
                    props,
                    attachments,
                    raw,
                    self._received_time(mb),
                )
                msg.is_read = True
            return empty_response(202)

    @staticmethod
    def _check_recipients(props: dict[str, Any]) -> None:
        recipients = (
            props.get("toRecipients", [])
            + props.get("ccRecipients", [])
            + props.get("bccRecipients", [])
        )
        if not recipients or any(
            not (r.get("emailAddress") or {}).get("address") for r in recipients
        ):
            raise GraphError(
                400,
                "ErrorInvalidRecipients",
                "At least one recipient isn't valid., A message can't be sent because it "
                "contains no recipients.",
            )

    def _record_outgoing(self, mb: Mailbox, props: dict[str, Any], raw: bytes) -> None:
        recipients = [
            r["emailAddress"]["address"]
            for key in ("toRecipients", "ccRecipients", "bccRecipients")
            for r in props.get(key, [])
        ]
        self.outgoing.append(OutgoingMail(mb.address, recipients, raw))

    # --- delta --------------------------------------------------------------------------------

    def delta(self, req: Request, p: dict[str, str]) -> Response:
        """GET …/mailFolders/{id}/messages/delta — pages of changes:
        {"@odata.context": "…/$metadata#Collection(message)",
         "@odata.nextLink": "https://…/mailfolders('AQMk…')/messages/delta?$skiptoken=GwcBoTm…",
         "value": [{"@odata.type": "#microsoft.graph.message", "@odata.etag": "W/\"CQAAABYAAAAR…\"",
                    "subject": "…", "isRead": false, "id": "AAMkADNkNAAASq35xAAA="}]}
        The last page has "@odata.deltaLink": "…/messages/delta?$deltatoken=…" instead; a later
        round also lists {"@odata.type": "#microsoft.graph.message", "id": "…",
        "@removed": {"reason": "deleted"}} for messages moved out or deleted. A lost token:
        410 Gone, code syncStateNotFound."""
        with self.lock:
            mb = self._context(req, MAIL_READ)
            folder = self._folder(mb, p["fid"])
            skiptoken = req.query.get("$skiptoken")
            deltatoken = req.query.get("$deltatoken")
            if skiptoken is not None:
                found = self.rounds.get(skiptoken)
                if found is None or found[0].address != mb.address.lower():
                    raise _sync_state_lost()
                delta_round, offset = found
            elif deltatoken is not None:
                if deltatoken == "latest":
                    delta_round = self._start_round(mb, folder, req, None)
                    delta_round.entries = []
                else:
                    token = self.delta_tokens.get(deltatoken)
                    if token is None or token.address != mb.address.lower():
                        raise _sync_state_lost()
                    delta_round = self._start_round(mb, folder, req, token)
                offset = 0
            else:
                delta_round = self._start_round(mb, folder, req, None)
                offset = 0
            size = req.max_page_size or req.int_param("$top") or DEFAULT_PAGE
            chunk = delta_round.entries[offset : offset + size]
            value = [self._render_delta_entry(mb, delta_round, e, req) for e in chunk]
            body: dict[str, Any] = {
                "@odata.context": f"{req.base_url}/v1.0/$metadata#Collection(message)",
                "value": value,
            }
            link_path = f"/v1.0/users/{mb.address}/mailFolders('{folder.id}')/messages/delta"
            if offset + size < len(delta_round.entries):
                token = secrets.token_urlsafe(24)
                self.rounds[token] = (delta_round, offset + size)
                body["@odata.nextLink"] = req.url_with(link_path, **{"$skiptoken": token})
            else:
                token = secrets.token_urlsafe(24)
                self.delta_tokens[token] = DeltaToken(
                    mb.address.lower(),
                    folder.id,
                    delta_round.snapshot,
                    delta_round.seq,
                    delta_round.select,
                    delta_round.change_types,
                    delta_round.filter_text,
                )
                body["@odata.deltaLink"] = req.url_with(link_path, **{"$deltatoken": token})
            applied = []
            if req.max_page_size:
                applied.append(f"odata.maxpagesize={req.max_page_size}")
            if req.immutable_ids:
                applied.append('IdType="ImmutableId"')
            headers = {"Preference-Applied": ", ".join(applied)} if applied else {}
            return json_response(200, body, headers)

    def _start_round(
        self, mb: Mailbox, folder: Folder, req: Request, token: DeltaToken | None
    ) -> DeltaRound:
        if token is not None:
            select, change_types, filter_text = token.select, token.change_types, token.filter_text
        else:
            select = req.select()
            kinds = (req.query.get("changeType") or "").lower()
            change_types = (
                {k.strip() for k in kinds.split(",") if k.strip()}
                if kinds
                else {"created", "updated", "deleted"}
            )
            filter_text = req.query.get("$filter")
        node = odata.compile_filter(filter_text)
        current = [
            m
            for m in self._in_folder(mb, folder.id)
            if odata.matches(node, self._render(mb, m, immutable=True, select=None))
        ]
        if (req.query.get("$orderby") or "").lower().endswith("desc"):
            current.reverse()
        snapshot = {m.immutable_id: m.rest_id for m in current}
        entries: list[tuple[str, str, str]] = []
        if token is None:
            entries = [("created", m.immutable_id, m.rest_id) for m in current]
        else:
            for m in current:
                if m.immutable_id not in token.snapshot:
                    entries.append(("created", m.immutable_id, m.rest_id))
                elif m.seq > token.seq:
                    entries.append(("updated", m.immutable_id, m.rest_id))
            for imm, rest in token.snapshot.items():
                if imm not in snapshot:
                    entries.append(("deleted", imm, rest))
        entries = [e for e in entries if e[0] in change_types]
        return DeltaRound(
            mb.address.lower(),
            folder.id,
            entries,
            snapshot,
            mb.seq,
            select,
            change_types,
            filter_text,
        )

    def _render_delta_entry(
        self, mb: Mailbox, delta_round: DeltaRound, entry: tuple[str, str, str], req: Request
    ) -> dict[str, Any]:
        kind, imm, rest = entry
        msg = mb.messages.get(imm)
        if kind == "deleted" or msg is None:
            return {
                "@odata.type": "#microsoft.graph.message",
                "id": imm if req.immutable_ids else rest,
                "@removed": {"reason": "deleted"},
            }
        data = self._render(mb, msg, immutable=req.immutable_ids, select=delta_round.select)
        return {"@odata.type": "#microsoft.graph.message", **data}


def _sync_state_lost() -> GraphError:
    return GraphError(
        410,
        "syncStateNotFound",
        "The sync state of the delta query is not found or has expired; start a new sync.",
        inner_code="SyncStateNotFound",
    )


def _check_custom_headers(headers: Any) -> None:
    """Graph accepts only custom `x-` headers in internetMessageHeaders."""
    if not isinstance(headers, list):
        raise GraphError(400, "ErrorInvalidRequest", "internetMessageHeaders must be a list.")
    for header in headers:
        name = str((header or {}).get("name", ""))
        if not name.lower().startswith("x-"):
            raise GraphError(
                400,
                "InvalidInternetMessageHeader",
                f"The internet message header name '{name}' should start with 'x-' or 'X-'.",
            )
