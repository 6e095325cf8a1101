"""The shared mailbox over Microsoft Graph: intake by delta query, and sending from it.

Reading uses the messages delta query on the intake folder (O365 has no delta, so it goes
through the connection), with immutable ids so an item keeps its id when it is moved to
``Processed``. The read flag is never used: people open the shared mailbox too.

Sending creates a draft from the MIME message (so the text and HTML parts and the
``Auto-Submitted`` header go out exactly as built), records the draft's id in the ledger, then
sends it; the copy lands in the mailbox's Sent Items. After an unclear failure the sender looks
in Sent Items (by ``internetMessageId``) and at the draft before sending again, so a retry never
sends twice. A draft that vanished unsent (a person deleted it for good) and is not in Sent Items
after a settling wait is made again and sent: a possible duplicate beats a lost alert.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from connectors.base import CheckResult, InboundItem, OutboundMessage
from connectors.graph_auth import certificate_expiry
from connectors.graph_batch import Reply, Sub
from connectors.graph_http import (
    RIDE_PREFIX,
    AmbiguousWrite,
    Call,
    GraphConflict,
    GraphHttp,
    GraphNotFound,
    SyncStateLost,
    connect,
)
from service.config import Config, GraphMailboxConfig, GraphSenderConfig
from service.errors import ConnectorError, InputError, PreventServiceError, TransientError
from service.ledger import Ledger

log = logging.getLogger("prevent_service.graph")

# Folder names Graph accepts in place of an id (learn.microsoft.com/graph/api/resources/mailfolder).
WELL_KNOWN_FOLDERS = frozenset(
    {
        "inbox",
        "archive",
        "clutter",
        "deleteditems",
        "drafts",
        "junkemail",
        "outbox",
        "sentitems",
        "recoverableitemsdeletions",
        "scheduled",
        "searchfolders",
    }
)

# Ledger states of a send (key graph.send:{mailbox}:{Message-ID}): "planned:{time}" (a draft
# may be being made), "draft:{id}", "sent:{time}".
PLANNED = "planned:"
SENT = "\0sent"


# Messages whose send requests go in one batch (Exchange runs four of a batch at once).
SEND_GROUP = 4

# Messages whose MIME is read in one batch (Graph allows 20). A batch answer holds every body
# in memory, base64-encoded, and delta entries give no size: 10 keeps the worst case (ten
# messages at intake.max_message_bytes) bounded while a burst still takes few round trips.
BATCH_READS = 10


def _user_path(address: str) -> str:
    return f"users/{quote(address, safe='@')}"


def _odata_quote(value: str) -> str:
    return value.replace("'", "''")


def _short(item_id: str) -> str:
    """A log-friendly tail of a Graph id (ids are long; the tail is enough to find it)."""
    return f"…{item_id[-12:]}"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _MailboxBase:
    """What reading and sending share: the mailbox address and its folders."""

    def __init__(self, http: GraphHttp, address: str) -> None:
        self.http = http
        self.address = address
        self.user = _user_path(address)
        self._folder_ids: dict[str, str] = {}
        # Cached folder ids to confirm by name this cycle (a person may have deleted or
        # renamed the folder since): the check rides in the same round trip as the move.
        self._unverified: set[str] = set()

    def _call(self, what: str, permission: str = "Mail.ReadWrite", kind: str = "mailbox") -> Call:
        return Call(what=what, permission=permission, kind=kind, subject=self.address)

    def folder_id(self, name: str, *, create: bool) -> str | None:
        """The id of a top-level folder by display name (looked up once, then cached)."""
        if name.lower() in WELL_KNOWN_FOLDERS:
            return name.lower()
        cached = self._folder_ids.get(name)
        if cached and name not in self._unverified:
            return cached
        self._unverified.discard(name)
        lookup = self._lookup(name)
        # GET users/{upn}/mailFolders?$filter=displayName eq 'Processed'&$top=1
        # → {"value": [{"id": "AAMkAG…", "displayName": "Processed", …}]}
        data = self.http.get_json(lookup.path, lookup.call, params=lookup.params)
        found = self._found(name, data)
        if found:
            self._folder_ids[name] = found
            return found
        self._folder_ids.pop(name, None)
        if not create:
            return None
        create_call = self._call(f"create the folder {name!r} in {self.address}")
        try:
            response = self.http.request(
                "POST", f"{self.user}/mailFolders", create_call, json={"displayName": name}
            )
            self._folder_ids[name] = str(response.json()["id"])
            log.info("graph: created mail folder %r in %s", name, self.address)
        except (GraphConflict, AmbiguousWrite):
            # Created by a concurrent run, or by our own attempt that timed out: look again.
            return self.folder_id(name, create=False) or self._missing_folder(name)
        return self._folder_ids[name]

    def _lookup(self, name: str) -> Sub:
        return Sub(
            "GET",
            f"{self.user}/mailFolders",
            self._call(f"find the folder {name!r} in {self.address}"),
            params={"$filter": f"displayName eq '{_odata_quote(name)}'", "$top": "1"},
        )

    @staticmethod
    def _found(name: str, data: dict[str, Any]) -> str | None:
        # Exchange compares (and keeps unique) folder names regardless of case.
        for folder in data.get("value", []):
            if str(folder.get("displayName")).lower() == name.lower() and folder.get("id"):
                return str(folder["id"])
        return None

    def _check_with(self, name: str) -> str | None:
        """The cached id of ``name`` when it is to be confirmed this cycle (the check then
        goes in the same batch as the moves into it), else None."""
        if name in self._unverified and self._folder_ids.get(name):
            return self._folder_ids[name]
        return None

    def _confirmed(self, name: str, cached: str, lookup: Any) -> bool:
        """Whether the check that rode along found ``name`` still at ``cached``. If not (the
        folder was deleted, renamed or made again, or the check failed) the cache is dropped:
        moves into the old id are done again into the folder found (or made) by name."""
        self._unverified.discard(name)
        if isinstance(lookup, Reply) and self._found(name, lookup.json()) == cached:
            return True
        self._folder_ids.pop(name, None)
        log.info("graph: the folder %r changed since it was last looked up; using it by name", name)
        return False

    def _missing_folder(self, name: str) -> str:
        raise TransientError(f"folder {name!r} in {self.address} could not be created or found")


# ---------------------------------------------------------------------------- reading


class GraphMailbox(_MailboxBase):
    """``connectors.base.Mailbox`` over Graph: delta query on the intake folder."""

    page_size = 50
    # What the pipeline needs besides the MIME: the id, when it arrived, a link for the register.
    select = "id,receivedDateTime,webLink"

    def __init__(
        self,
        http: GraphHttp,
        ledger: Ledger,
        *,
        address: str,
        folder: str = "inbox",
        processed_folder: str = "Processed",
        quarantine_folder: str = "Quarantine",
    ) -> None:
        super().__init__(http, address)
        self.ledger = ledger
        self.folder = folder
        self.processed_folder = processed_folder
        self.quarantine_folder = quarantine_folder
        self.cursor_key = f"graph.delta:{address.lower()}:{folder.lower()}"

    @classmethod
    def from_config(
        cls, section: GraphMailboxConfig, config: Config, ledger: Ledger
    ) -> GraphMailbox:
        return cls(
            connect(config.m365),
            ledger,
            address=section.address,
            folder=section.folder,
            processed_folder=section.processed_folder,
            quarantine_folder=section.quarantine_folder,
        )

    # -- intake --------------------------------------------------------------------------

    def _initial_delta_url(self) -> str:
        folder = self.folder_id(self.folder, create=False)
        if folder is None:
            raise ConnectorError(
                f"the intake folder {self.folder!r} does not exist in {self.address}: check "
                "intake.mailbox.folder (default: inbox)"
            )
        query = urlencode({"changeType": "created", "$select": self.select}, safe="$,")
        return self.http.url(f"{self.user}/mailFolders/{quote(folder)}/messages/delta?{query}")

    def fetch_new(self) -> Iterator[InboundItem]:
        """Yield messages new since the last round, page by page.

        A page's ``@odata.nextLink`` / ``@odata.deltaLink`` is saved only when the consumer
        asks for more after the page's last item, so a crash mid-page replays that page.
        """
        self.http.ensure_token()
        # Confirm the folders by name again each cycle (in the same round trip as the first
        # move): a person may have deleted Processed (Outlook keeps it, id and all, under
        # Deleted Items, where moves would still land) or renamed it since the worker started.
        self._unverified = set(self._folder_ids)
        url = self.ledger.get(self.cursor_key)
        resynced = False
        if url is None:
            url = self._initial_delta_url()
        call = self._call(f"read new mail in {self.address}")
        page_count = 0
        while True:
            try:
                # {"@odata.context": "…", "value": [{"id": "AAMk…", "receivedDateTime":
                #  "2026-03-02T09:15:00Z", "webLink": "https://outlook.office365.com/owa/?…"},
                #  {"id": "AAMk…", "@removed": {"reason": "deleted"}}],
                #  "@odata.nextLink": "…/messages/delta?$skiptoken=…"}  (last page: deltaLink)
                page = self._page(url, call, first=not resynced and page_count == 0)
                page_count += 1
            except SyncStateLost:
                if resynced:
                    raise TransientError(
                        f"read new mail in {self.address}: the delta query failed twice; will retry"
                    ) from None
                log.warning("graph: delta link for %s expired; full resync", self.address)
                self.ledger.delete(self.cursor_key)
                resynced = True
                url = self._initial_delta_url()
                continue
            # moved out (by us) or deleted entries: nothing to take in
            entries = [e for e in page.get("value", []) if "@removed" not in e and e.get("id")]
            yield from self._inbound_many(entries)
            next_link = page.get("@odata.nextLink")
            if next_link:
                self.ledger.set(self.cursor_key, str(next_link))
                url = str(next_link)
                continue
            delta_link = page.get("@odata.deltaLink")
            if delta_link:
                self.ledger.set(self.cursor_key, str(delta_link))
            return

    def _page(self, url: str, call: Call, *, first: bool) -> dict[str, Any]:
        """One delta page. The first of a cycle carries, in the same batch, the small reads
        other Graph backends asked to ride along (the Forms workbook's cTag)."""
        headers = {"Prefer": f"odata.maxpagesize={self.page_size}"}
        if first:
            self.http.want_remembered(self.ledger.kv_with_prefix(RIDE_PREFIX))
        wanted = self.http.wanted() if first and url.startswith(self.http.base_url) else {}
        if not wanted:
            return self.http.get_json(url, call, headers=headers)
        subs = [Sub("GET", url, call, headers=headers)] + [
            Sub("GET", path, Call(what=f"read {key} (with the mailbox's delta)"))
            for key, path in wanted.items()
        ]
        delta, *others = self.http.batch(subs)
        for key, outcome in zip(wanted, others, strict=True):
            self.http.keep(key, outcome)
        if isinstance(delta, PreventServiceError):
            raise delta
        data = delta.json()
        if not data:
            raise TransientError(f"{call.what}: Graph sent an unexpected reply")
        return data

    def _inbound_many(self, entries: list[dict[str, Any]]) -> Iterator[InboundItem]:
        """The MIME of a page's messages, read ``BATCH_READS`` per round trip (JSON batching)
        and handed on in order; one message alone is a plain request."""
        for at in range(0, len(entries), BATCH_READS):
            group = entries[at : at + BATCH_READS]
            if len(group) == 1:
                item = self._inbound(group[0])
                if item is not None:
                    yield item
                continue
            subs = [
                Sub(
                    "GET",
                    f"{self.user}/messages/{quote(str(e['id']))}/$value",
                    self._call(
                        f"read message {_short(str(e['id']))} in {self.address}", kind="message"
                    ),
                )
                for e in group
            ]
            for entry, outcome in zip(group, self.http.batch(subs), strict=True):
                if isinstance(outcome, GraphNotFound):
                    log.info(
                        "graph: message %s was deleted before it could be read",
                        _short(str(entry["id"])),
                    )
                    continue
                if isinstance(outcome, PreventServiceError):
                    raise outcome
                yield self._inbound_item(str(entry["id"]), outcome.content, entry)

    def _inbound(self, entry: dict[str, Any]) -> InboundItem | None:
        item_id = str(entry["id"])
        try:
            return self._item(item_id, entry)
        except GraphNotFound:
            log.info("graph: message %s was deleted before it could be read", _short(item_id))
            return None

    def _item(self, item_id: str, entry: dict[str, Any]) -> InboundItem:
        """The message's MIME plus what ``entry`` (a delta or message entry) says about it."""
        response = self.http.request(
            "GET",
            f"{self.user}/messages/{quote(item_id)}/$value",
            self._call(f"read message {_short(item_id)} in {self.address}", kind="message"),
        )
        return self._inbound_item(item_id, bytes(response.content), entry)

    def _inbound_item(self, item_id: str, raw: bytes, entry: dict[str, Any]) -> InboundItem:
        return InboundItem(
            item_id=item_id,
            raw=raw,
            received_at=_parse_time(entry.get("receivedDateTime")),
            web_link=entry.get("webLink") or None,
        )

    def fetch(self, item_id: str) -> InboundItem:
        call = self._call(f"read message {_short(item_id)} in {self.address}", kind="message")
        try:
            entry = self.http.get_json(
                f"{self.user}/messages/{quote(item_id)}", call, params={"$select": self.select}
            )
            return self._item(item_id, entry)
        except GraphNotFound as exc:
            raise InputError(
                f"message {_short(item_id)} is no longer in {self.address} (deleted, or moved "
                "to another mailbox, or deleted from Deleted Items too); an admin can recover it "
                "from the mailbox's Recoverable Items"
            ) from exc

    # -- moving --------------------------------------------------------------------------

    def mark_processed(self, item_id: str) -> None:
        self._move(item_id, self.processed_folder)

    def quarantine(self, item_id: str, reason: str) -> None:
        # The reason goes to the DSP and the admin by e-mail (pipeline); Graph has no
        # place for it that people would see, so the move is the whole job here.
        self._move(item_id, self.quarantine_folder)

    def mark_processed_many(self, item_ids: Sequence[str]) -> dict[str, Exception | None]:
        """Move several messages to Processed in as few round trips as batching allows: each
        id's outcome (None: moved; else the error ``mark_processed`` would raise). A move is
        idempotent (immutable ids), so an unclear answer is simply repeated; a 404 goes the
        one-by-one way, which tells a deleted folder from a purged message."""
        self.http.ensure_token()
        folder = self.processed_folder
        check = self._check_with(folder)
        folder_id = check or self.folder_id(folder, create=True)
        subs = [self._move_sub(item_id, folder, str(folder_id)) for item_id in item_ids]
        if check is not None:
            lookup, *outcomes = self.http.batch([self._lookup(folder), *subs])
            if not self._confirmed(folder, check, lookup):
                return {item_id: self._move_or_error(item_id, folder) for item_id in item_ids}
        else:
            outcomes = self.http.batch(subs)
        out: dict[str, Exception | None] = {}
        for item_id, outcome in zip(item_ids, outcomes, strict=True):
            if isinstance(outcome, GraphNotFound):
                try:
                    self._move(item_id, folder)
                except (ConnectorError, InputError) as exc:
                    out[item_id] = exc
                    continue
                out[item_id] = None
            elif isinstance(outcome, Exception):
                out[item_id] = outcome
            else:
                out[item_id] = None
        return out

    def _move_sub(self, item_id: str, folder: str, folder_id: str) -> Sub:
        # POST users/{upn}/messages/{id}/move {"destinationId": "AAMk…"} → 201 message
        return Sub(
            "POST",
            f"{self.user}/messages/{quote(item_id)}/move",
            self._call(
                f"move message {_short(item_id)} to {folder!r} in {self.address}", kind="message"
            ),
            json={"destinationId": folder_id},
            retry_ambiguous=True,  # moving twice lands it in the same place
        )

    def _move_or_error(self, item_id: str, folder: str) -> Exception | None:
        try:
            self._move(item_id, folder)
        except (ConnectorError, InputError) as exc:
            return exc
        return None

    def _move(self, item_id: str, folder: str) -> None:
        """Move to ``folder`` (created if missing). Moving an item already there is a no-op
        for Graph, and with immutable ids the id stays the same, so this is idempotent."""
        self.http.ensure_token()
        check = self._check_with(folder)
        if check is not None:
            # The cycle's check of the cached folder id and the move, in one round trip.
            lookup, outcome = self.http.batch(
                [self._lookup(folder), self._move_sub(item_id, folder, check)]
            )
            if self._confirmed(folder, check, lookup):
                if not isinstance(outcome, PreventServiceError):
                    return
                if not isinstance(outcome, GraphNotFound):
                    raise outcome
            # else, or a 404: the careful way below (into the folder found or made by name)
        for attempt in range(2):
            folder_id = self.folder_id(folder, create=True)
            call = self._call(
                f"move message {_short(item_id)} to {folder!r} in {self.address}", kind="message"
            )
            try:
                # POST users/{upn}/messages/{id}/move {"destinationId": "AAMk…"} → 201 message
                self.http.request(
                    "POST",
                    f"{self.user}/messages/{quote(item_id)}/move",
                    call,
                    json={"destinationId": folder_id},
                    retry_ambiguous=True,  # moving twice lands it in the same place
                )
                return
            except GraphNotFound as exc:
                if attempt == 0 and not self._folder_exists(str(folder_id)):
                    self._folder_ids.pop(folder, None)  # someone deleted the folder: recreate
                    continue
                if self._message_in(item_id, str(folder_id)):
                    return
                raise InputError(
                    f"message {_short(item_id)} is no longer in {self.address} (a person "
                    f"deleted it for good, or moved it to another mailbox), so it cannot be "
                    f"moved to {folder!r}; an admin can recover it from the mailbox's "
                    "Recoverable Items"
                ) from exc
        raise TransientError(f"could not move message {_short(item_id)} to {folder!r}")

    def _folder_exists(self, folder_id: str) -> bool:
        if folder_id.lower() in WELL_KNOWN_FOLDERS:
            return True
        try:
            self.http.get_json(
                f"{self.user}/mailFolders/{quote(folder_id)}",
                self._call(f"check a folder in {self.address}"),
                params={"$select": "id"},
            )
        except GraphNotFound:
            return False
        return True

    def _message_in(self, item_id: str, folder_id: str) -> bool:
        try:
            entry = self.http.get_json(
                f"{self.user}/messages/{quote(item_id)}",
                self._call(f"check message {_short(item_id)}", kind="message"),
                params={"$select": "id,parentFolderId"},
            )
        except GraphNotFound:
            return False
        return bool(entry.get("parentFolderId") == folder_id)

    # -- check ---------------------------------------------------------------------------

    def credential_expires_at(self) -> datetime | None:
        """When the app's certificate expires, for the worker's early warning."""
        return certificate_expiry(self.http.m365)

    def checks(self) -> Iterator[CheckResult]:
        """``prevent-service check`` lines for the intake mailbox."""
        yield from _token_check(self.http)
        try:
            folder = self.folder_id(self.folder, create=False)
            if folder is None:
                yield CheckResult(
                    f"mailbox {self.address}",
                    False,
                    f"the folder {self.folder!r} does not exist: fix intake.mailbox.folder",
                )
                return
            data = self.http.get_json(
                f"{self.user}/mailFolders/{quote(folder)}/messages",
                self._call(f"read the mailbox {self.address}"),
                params={"$top": "1", "$select": "id"},
            )
            yield CheckResult(
                f"mailbox {self.address}",
                True,
                f"can read {self.folder} ({'has mail' if data.get('value') else 'empty'})",
            )
        except PreventServiceError as exc:
            yield CheckResult(f"mailbox {self.address}", False, str(exc))
            return
        for name in (self.processed_folder, self.quarantine_folder):
            try:
                existed = self.folder_id(name, create=False) is not None
                self.folder_id(name, create=True)
                yield CheckResult(
                    f"folder {name}", True, "found" if existed else "created (it was missing)"
                )
            except PreventServiceError as exc:
                yield CheckResult(f"folder {name}", False, str(exc))

    def provision(self) -> Iterator[CheckResult]:
        """``prevent-service provision``: Processed and Quarantine, made if missing."""
        from connectors.graph_provision import provision_mailbox

        return provision_mailbox(self)

    def close(self) -> None:
        self.http.close()


# ---------------------------------------------------------------------------- sending


class GraphSender(_MailboxBase):
    """``connectors.base.MailSender`` over Graph: draft (MIME), ledger, send; never twice."""

    def __init__(self, http: GraphHttp, ledger: Ledger, *, address: str) -> None:
        super().__init__(http, address)
        self.ledger = ledger

    @classmethod
    def from_config(cls, section: GraphSenderConfig, config: Config, ledger: Ledger) -> GraphSender:
        return cls(connect(config.m365), ledger, address=section.address)

    def _key(self, message: OutboundMessage) -> str:
        # stale_drafts reads these keys back by their prefix
        return f"graph.send:{self.address.lower()}:{message.message_id}"

    def send_many(self, messages: Sequence[OutboundMessage]) -> Iterator[ConnectorError | None]:
        """Send several messages, yielding each one's outcome (None: sent) in order as soon as
        its group is done: drafts one by one (a MIME body does not go in a batch), then the
        group's ``send`` requests in one round trip. Groups of four: Exchange runs four of a
        batch at once, and the first alert need not wait for the last draft.

        The guarantees are ``send``'s: each message is planned in the ledger before its draft,
        its draft id recorded before the send, and a send without a clear answer is settled by
        ``send`` itself (Sent Items, then the draft) before anything is sent again."""
        for start in range(0, len(messages), SEND_GROUP):
            yield from self._send_group(messages[start : start + SEND_GROUP])

    def _send_group(self, group: Sequence[OutboundMessage]) -> Iterator[ConnectorError | None]:
        outcomes: list[ConnectorError | None] = [None] * len(group)
        drafts: dict[int, str] = {}
        for n, message in enumerate(group):
            key = self._key(message)
            state = self.ledger.get(key) or ""
            if state.startswith("sent:"):
                continue
            if state:  # an earlier attempt left a plan or a draft: the careful path
                outcomes[n] = self._send_one(message)
                continue
            try:
                self.http.ensure_token()
                self._plan(key)
                drafts[n] = self._create_draft(message)
            except ConnectorError as exc:
                outcomes[n] = exc
                continue
            self.ledger.set(key, f"draft:{drafts[n]}")
        if drafts:
            subs = [
                Sub(
                    "POST",
                    f"{self.user}/messages/{quote(draft_id)}/send",
                    self._call(
                        f"send {group[n].message_id} from {self.address}", "Mail.Send", "send"
                    ),
                    retry_ambiguous=False,
                )
                for n, draft_id in drafts.items()
            ]
            for n, outcome in zip(drafts, self.http.batch(subs), strict=True):
                if isinstance(outcome, AmbiguousWrite):
                    # No clear answer: send() reads back (Sent Items, the draft) first.
                    outcomes[n] = self._send_one(group[n])
                elif isinstance(outcome, ConnectorError):
                    outcomes[n] = outcome  # the draft is kept; the next try resumes from it
                elif isinstance(outcome, PreventServiceError):
                    raise outcome
                else:
                    self._sent(self._key(group[n]), group[n], how="sent")
        yield from outcomes

    def _send_one(self, message: OutboundMessage) -> ConnectorError | None:
        try:
            self.send(message)
        except ConnectorError as exc:
            return exc
        return None

    def send(self, message: OutboundMessage) -> None:
        key = self._key(message)
        state = self.ledger.get(key) or ""
        if state.startswith("sent:"):
            log.info("graph: %s already sent; skipped", message.message_id)
            return
        self.http.ensure_token()
        draft_id = state.removeprefix("draft:") if state.startswith("draft:") else None
        if draft_id is not None:
            # An earlier attempt made a draft; did its send go through?
            status = self._status(message, draft_id)
            if status == "in Sent Items":
                self._sent(key, message, how=f"found {status} from an earlier attempt")
                return
            if status == "missing":
                draft_id = self._redraft(key, message)
        elif state.startswith(PLANNED):
            # An earlier attempt was stopped (killed) after planning this message: it may have
            # made a draft whose id never reached the ledger. Look before drafting again.
            found = self._adopt(message)
            if found == SENT:
                self._sent(key, message, how="found in Sent Items from an earlier attempt")
                return
            draft_id = found or self._create_draft(message)
            self.ledger.set(key, f"draft:{draft_id}")
        else:
            self._plan(key)
            draft_id = self._create_draft(message)
            self.ledger.set(key, f"draft:{draft_id}")
        for attempt in range(3):
            try:
                # POST users/{upn}/messages/{id}/send → 202, empty body; the copy goes to Sent
                # Items and (with immutable ids) keeps the draft's id.
                self.http.request(
                    "POST",
                    f"{self.user}/messages/{quote(draft_id)}/send",
                    self._call(
                        f"send {message.message_id} from {self.address}", "Mail.Send", "send"
                    ),
                    retry_ambiguous=False,
                )
            except AmbiguousWrite:
                self.http.settle(attempt + 1)
                status = self._status(message, draft_id, attempt + 1)
                if status == "in Sent Items":
                    self._sent(key, message, how=f"unclear answer, then found {status}")
                    return
                if status == "missing":
                    draft_id = self._redraft(key, message)
                    continue
                log.warning(
                    "graph: send of %s unclear and the draft is unsent; sending again (%d)",
                    message.message_id,
                    attempt + 1,
                )
                continue
            self._sent(key, message, how="sent")
            return
        raise TransientError(
            f"send {message.message_id} from {self.address}: Graph gave no clear answer three "
            "times; the draft is kept and the send is retried later"
        )

    def _redraft(self, key: str, message: OutboundMessage) -> str:
        """A new draft for a message whose draft vanished unsent (a person deleted it for good
        after a crash): a possible duplicate alert is better than a lost one."""
        log.warning(
            "graph: the draft of %s is gone and it is not in Sent Items of %s (deleted by a "
            "person?); making a new draft and sending it",
            message.message_id,
            self.address,
        )
        self._plan(key)
        draft_id = self._create_draft(message)
        self.ledger.set(key, f"draft:{draft_id}")
        return draft_id

    def _plan(self, key: str) -> None:
        """Record, before drafting, that a draft of this message may come to exist: a kill
        between Graph's 201 and recording the draft's id then leaves a trace to follow."""
        self.ledger.set(key, f"{PLANNED}{datetime.now(UTC).isoformat(timespec='seconds')}")

    def _adopt(self, message: OutboundMessage) -> str | None:
        """After a stopped attempt: ``SENT`` if the message is in Sent Items; else the id of a
        draft of it left in Drafts (any further copies deleted for good); else None."""
        if self._find(message, "sentitems"):
            return SENT
        drafts = self._find_all(message, "drafts")
        if not drafts:
            return None
        keep, *extra = drafts
        for draft in extra:
            self._purge(draft, message)
        log.info(
            "graph: reusing the draft of %s left by a stopped attempt%s",
            message.message_id,
            f" ({len(extra)} more deleted)" if extra else "",
        )
        return keep

    def _purge(self, draft_id: str, message: OutboundMessage) -> None:
        """Delete a spare draft for good (a plain DELETE would leave a sendable copy in
        Deleted Items). POST …/messages/{id}/permanentDelete → 204."""
        with suppress(GraphNotFound):  # already gone
            self.http.request(
                "POST",
                f"{self.user}/messages/{quote(draft_id)}/permanentDelete",
                self._call(f"delete a spare draft of {message.message_id}", kind="message"),
                retry_ambiguous=True,  # deleting twice: the second finds nothing (404)
            )

    def _sent(self, key: str, message: OutboundMessage, *, how: str) -> None:
        self.ledger.set(key, f"sent:{datetime.now(UTC).isoformat(timespec='seconds')}")
        log.info("graph: %s %s", message.message_id, how)

    def _mime(self, message: OutboundMessage) -> bytes:
        return bytes(message.to_email().as_bytes())

    def _create_draft(self, message: OutboundMessage) -> str:
        """POST users/{upn}/messages with the base64 MIME as text/plain → a draft in Drafts.

        The MIME path keeps both body parts and every header (Graph's JSON form takes one
        body and only ``x-`` custom headers). Reply: ``{"id": "AAMk…", "isDraft": true, …}``.
        """
        body = base64.b64encode(self._mime(message))
        call = self._call(f"create a draft of {message.message_id} in {self.address}", kind="send")
        for _attempt in range(2):
            try:
                response = self.http.request(
                    "POST",
                    f"{self.user}/messages",
                    call,
                    content=body,
                    content_type="text/plain",
                    retry_ambiguous=False,
                )
                return str(response.json()["id"])
            except AmbiguousWrite:
                self.http.settle()
                found = self._find_all(message, "drafts")
                if found:
                    for spare in found[1:]:
                        self._purge(spare, message)
                    return found[0]
        raise TransientError(f"{call.what}: no clear answer from Graph; will retry later")

    def _find(self, message: OutboundMessage, folder: str) -> str | None:
        """The id of a message with this Message-ID in a folder, if there is one."""
        found = self._find_all(message, folder, top=1)
        return found[0] if found else None

    def _find_all(self, message: OutboundMessage, folder: str, top: int = 10) -> list[str]:
        """Ids of the messages with this Message-ID in a folder, oldest first."""
        data = self.http.get_json(
            f"{self.user}/mailFolders/{folder}/messages",
            self._call(f"look for {message.message_id} in {folder} of {self.address}"),
            params={
                "$filter": f"internetMessageId eq '{_odata_quote(message.message_id)}'",
                "$select": "id,isDraft,createdDateTime",
                "$top": str(top),
            },
        )
        values = sorted(data.get("value") or [], key=lambda v: str(v.get("createdDateTime")))
        return [str(v["id"]) for v in values if v.get("id")]

    @staticmethod
    def stale_drafts(
        ledger: Ledger, address: str, now: datetime, older_than: timedelta
    ) -> list[tuple[str, str]]:
        """Messages planned or drafted but not recorded as sent for longer than ``older_than``
        (from the ledger: no network, no credential): (Message-ID, since). A draft of one may
        sit in the mailbox's Drafts, where anyone with access could send it; the worker sends
        or tidies it on its next attempt, so one that lingers needs a look."""
        prefix = f"graph.send:{address.lower()}:"
        out = []
        for key, value, updated in ledger.kv_with_prefix(prefix):
            if not value.startswith((PLANNED, "draft:")):
                continue
            since = _parse_time(updated)
            if since is not None and now - since > older_than:
                out.append((key.removeprefix(prefix), since.isoformat(timespec="minutes")))
        return out

    def _status(self, message: OutboundMessage, draft_id: str, attempt: int = 1) -> str:
        """'in Sent Items', 'draft' (not sent yet) or 'missing' (neither: make a new draft)."""
        if self._find(message, "sentitems"):
            return "in Sent Items"
        try:
            entry = self.http.get_json(
                f"{self.user}/messages/{quote(draft_id)}",
                self._call(f"check the draft of {message.message_id}", kind="message"),
                params={"$select": "id,isDraft"},
            )
        except GraphNotFound:
            # A sent draft leaves Drafts and its Sent Items copy can take a moment to appear;
            # or a person deleted the unsent draft for good. Wait, then look once more.
            self.http.settle(attempt)
            return "in Sent Items" if self._find(message, "sentitems") else "missing"
        is_draft = entry.get("isDraft")
        if is_draft is True or str(is_draft).lower() == "true":
            # Possibly in Deleted Items (a person deleted it): it is still ours to send.
            return "draft"
        return "in Sent Items"

    def checks(self, send_test_to: str | None = None) -> Iterator[CheckResult]:
        """``check`` lines for sending; a real test message only when asked."""
        name = f"send from {self.address}"
        if not send_test_to:
            yield CheckResult(
                name, True, "not tried (run check --send-test to send a test message)"
            )
            return
        now = datetime.now(UTC)
        message = OutboundMessage(
            message_id=f"<check.{now.strftime('%Y%m%d%H%M%S%f')}@{self.address.split('@')[-1]}>",
            sender=self.address,
            to=(send_test_to,),
            subject="prevent-service: test message",
            text="This is a test message from prevent-service check. No action is needed.",
            html="<p>This is a test message from prevent-service check. No action is needed.</p>",
            date=now,
        )
        try:
            self.send(message)
        except PreventServiceError as exc:
            yield CheckResult(name, False, str(exc))
            return
        yield CheckResult(name, True, f"test message sent to {send_test_to}")

    def close(self) -> None:
        self.http.close()


CERTIFICATE_WARN_DAYS = 30


def _token_check(http: GraphHttp) -> Sequence[CheckResult]:
    try:
        http.ensure_token()
    except PreventServiceError as exc:
        return [CheckResult("Graph token", False, str(exc))]
    results = [CheckResult("Graph token", True, "app-only token issued")]
    expires = certificate_expiry(http.m365)
    if expires is not None:
        days = (expires - datetime.now(UTC)).days
        results.append(
            CheckResult(
                "certificate",
                days >= CERTIFICATE_WARN_DAYS,
                f"expires {expires:%d %b %Y} ({days} days)"
                + ("" if days >= CERTIFICATE_WARN_DAYS else ": make a new one and upload it now"),
            )
        )
    return results
