"""IMAP intake mailbox: new messages by UID, UIDVALIDITY-safe, moved to ``Processed`` when done.

Library: the standard library's ``imaplib``, plus ``imap_tools.imap_utf7`` for folder names
(IMAP's modified UTF-7). imap-tools' higher-level ``MailBox`` was tried and set aside here because
the queue semantics need exact control over a few commands it hides: it keeps the capability
list from *before* login (so it never sees ``MOVE`` on Dovecot and silently falls back), its
fallback move expunges every ``\\Deleted`` message in the folder rather than only ours
(``UID EXPUNGE``), its XOAUTH2 login answers an error challenge with the token again, and its
fetch re-serialises the message rather than handing back the bytes the server holds.
imaplib is maintained with CPython, has socket timeouts and TLS contexts, and has no other
dependencies.

How the queue works (never by the ``\\Seen`` flag: people read the shared mailbox too):

* ``item_id`` is ``"<UIDVALIDITY>:<UID>"``. The ledger key ``imap.cursor:<account>`` holds the
  UIDVALIDITY and the last UID the consumer has *taken* (it asked for the next item), saved
  once per batch and when the consumer stops, so a crash replays the rest of a batch instead
  of skipping a message.
* A cycle sends one SELECT and one UID SEARCH; new mail is read in batches, one
  ``UID FETCH <ranges> (UID INTERNALDATE BODY.PEEK[])`` each (never setting ``\\Seen``). Batches
  grow 1, 2, 4… up to ``batch_messages`` and stop short of ``batch_bytes`` (sizes from one
  ``RFC822.SIZE`` fetch; a bigger message is read alone), so a first run over thousands of
  messages takes a few dozen round trips and memory stays bounded.
* A changed UIDVALIDITY (folder re-created, server restored or migrated) means every UID is
  new: the whole folder is read again, as on a first run. A message taken under the old
  UIDVALIDITY and not yet moved out (still being worked on) is recognised by its Message-ID
  (or, without one, a SHA-256 of the bytes) in the ``imap_messages`` ledger table and left to
  the intake, which has it under its old id: ``fetch``/``mark_processed``/``quarantine`` with
  an old-UIDVALIDITY id find the message by the same fingerprint. Every other message is
  handed on under its new id, copies included (two copies in one scan, a restored copy of a
  message already in ``Processed``): the intake records those as duplicates and moves them,
  so nothing stays in the intake folder without a ledger record.
* ``mark_processed``/``quarantine`` create the folder if missing and use ``UID MOVE`` where the
  server has ``MOVE``, else ``UID COPY`` + ``\\Deleted`` + ``UID EXPUNGE`` (plain ``EXPUNGE``
  without UIDPLUS); the COPY is skipped when the target already holds this very message (same
  fingerprint, bytes and INTERNALDATE: an earlier attempt cut off after COPY), never on the
  strength of a ``\\Deleted`` flag, which a person may have set. A person's ``\\Deleted`` is
  cleared before the move so it does not travel into ``Processed``. A message no longer in the
  intake folder counts as done (idempotent).
* Every operation reconnects once after a dropped connection (socket closed, server restart,
  ``BYE``) and then raises ``TransientError``. Every socket has a timeout.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import imaplib
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from imap_tools.imap_utf7 import utf7_encode

from connectors.base import CheckResult, InboundItem
from connectors.mail_auth import (
    TokenProvider,
    credentials_from_config,
    is_loopback,
    tls_context,
    xoauth2_string,
)
from service.config import ImapMailboxConfig
from service.errors import (
    ConfigError,
    InputError,
    PermanentError,
    PreventServiceError,
    TransientError,
)
from service.ledger import Ledger, utcnow

if TYPE_CHECKING:
    from service.config import Config

log = logging.getLogger("prevent_service.imap")

T = TypeVar("T")
QUARANTINE_KEYWORD = "$PreventQuarantined"


class _Reconnect(Exception):
    """Internal: the connection broke; reconnect and try once more."""


class _UidValidityChanged(Exception):
    """Internal: the folder's UIDVALIDITY changed during a cycle; stop and rescan next time."""


def _quote(text: str) -> str:
    """An IMAP quoted string (RFC 3501 ``quoted``)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _folder_arg(name: str) -> str:
    encoded = utf7_encode(name)
    return _quote(encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded))


def fingerprint(raw: bytes) -> str:
    """How a message is recognised across a UIDVALIDITY change: its Message-ID, else a hash."""
    message_id = message_id_of(raw)
    return message_id or "sha256:" + hashlib.sha256(raw).hexdigest()


def message_id_of(raw: bytes) -> str | None:
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        value = headers.get("Message-ID")
    except Exception:  # any header the parser chokes on: no Message-ID to use
        return None
    if not value:
        return None
    value = " ".join(str(value).split())
    return value or None


# Sample FETCH response (imaplib splits the literal out):
#   [(b'1 (UID 7 INTERNALDATE "02-Feb-2026 09:30:00 +0000" BODY[] {342}', b'From: ...'), b')']
_UID_RE = re.compile(rb"\bUID (\d+)")
_FLAGS_RE = re.compile(rb"\bFLAGS \(([^)]*)\)")
_SIZE_RE = re.compile(rb"\bRFC822\.SIZE (\d+)")


def _uid_set(uids: Sequence[int]) -> str:
    """An IMAP sequence set for ``uids`` with runs as ranges: ``1:500,502,510:512``."""
    ordered = sorted(set(uids))
    runs: list[str] = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid != prev + 1:
            runs.append(f"{start}:{prev}" if prev > start else str(start))
            start = uid
        prev = uid
    runs.append(f"{start}:{prev}" if prev > start else str(start))
    return ",".join(runs)


def _fetched(data: list[object]) -> dict[int, tuple[bytes, datetime | None]]:
    """(bytes, INTERNALDATE) by UID from a ``UID FETCH (UID INTERNALDATE BODY.PEEK[])`` answer.

    imaplib splits each literal out: ``[(b'1 (UID 7 INTERNALDATE "…" BODY[] {342}', b'From:…'),
    b')', …]``; a server may put UID after the literal (in the ``b' UID 7)'`` that follows).
    An unsolicited FETCH (a flag change) has no literal and is passed over."""
    out: dict[int, tuple[bytes, datetime | None]] = {}
    for index, part in enumerate(data):
        if not (isinstance(part, tuple) and isinstance(part[0], bytes)):
            continue
        meta = part[0]
        after = data[index + 1] if index + 1 < len(data) else b""
        if isinstance(after, bytes):
            meta += after
        found = _UID_RE.search(meta)
        if found is None or not isinstance(part[1], bytes):
            continue
        stamp = imaplib.Internaldate2tuple(meta)
        received = datetime.fromtimestamp(time.mktime(stamp), UTC) if stamp else None
        out.setdefault(int(found.group(1)), (part[1], received))
    return out


class ImapMailbox:
    """An IMAP folder as the intake queue (see the module docstring)."""

    backend = "imap"
    # A first run or rescan reads the folder in batches: one UID FETCH of up to this many
    # messages or bytes (a bigger message goes alone), so memory stays flat.
    batch_messages = 100
    batch_bytes = 8 * 1024 * 1024

    def __init__(
        self,
        ledger: Ledger,
        *,
        host: str,
        username: str,
        password: str | None = None,
        token_provider: TokenProvider | None = None,
        port: int | None = None,
        security: str = "tls",
        folder: str = "INBOX",
        processed_folder: str = "Processed",
        quarantine_folder: str = "Quarantine",
        ca_bundle: Path | str | None = None,
        timeout_seconds: float = 60.0,
        credential_hint: str = "the password",
    ) -> None:
        if (password is None) == (token_provider is None):
            raise ConfigError(
                "give exactly one of password_env or oauth2 = true", key="intake.mailbox"
            )
        if security not in {"tls", "starttls", "none"}:
            raise ConfigError(f"unknown security {security!r}", key="intake.mailbox.security")
        self.ledger = ledger
        self.host = host
        self.port = port or (993 if security == "tls" else 143)
        self.security = security
        self.username = username
        self._password = password
        self._token_provider = token_provider
        self._credential_hint = credential_hint
        self.folder = folder
        self.processed_folder = processed_folder
        self.quarantine_folder = quarantine_folder
        self.timeout = timeout_seconds
        self._tls = tls_context(ca_bundle) if security != "none" else None
        self._client: imaplib.IMAP4 | None = None
        # The folder selected on _client and its UIDVALIDITY, so a cycle SELECTs once.
        self._selected: tuple[imaplib.IMAP4, str, int] | None = None
        self._caps: frozenset[str] = frozenset()
        self._folders_ok: set[str] = set()
        self.account = f"{username.lower()}@{host.lower()}:{self.port}/{folder}"
        self.address = f"{username} on {host}"  # how the pipeline names the mailbox
        if security == "none" and not is_loopback(host):
            log.warning(
                "imap: security = none to %s: the login goes over the network in clear", host
            )

    @classmethod
    def from_config(cls, section: ImapMailboxConfig, config: Config, ledger: Ledger) -> ImapMailbox:
        credentials = credentials_from_config(section, config, key="intake.mailbox")
        return cls(
            ledger,
            host=section.host,
            port=section.port,
            security=section.security,
            username=section.username,
            password=credentials.password,
            token_provider=credentials.token_provider,
            folder=section.folder,
            processed_folder=section.processed_folder,
            quarantine_folder=section.quarantine_folder,
            ca_bundle=section.ca_bundle,
            timeout_seconds=section.timeout_seconds,
            credential_hint=credentials.hint,
        )

    # -- connection ---------------------------------------------------------------------

    def has_move(self) -> bool:
        """Whether to use ``UID MOVE`` (RFC 6851); a test subclass says no to test the fallback."""
        return "MOVE" in self._caps

    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _connect(self) -> imaplib.IMAP4:
        try:
            if self.security == "tls":
                client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    self.host, self.port, ssl_context=self._tls, timeout=self.timeout
                )
            else:
                client = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
                if self.security == "starttls":
                    if "STARTTLS" not in client.capabilities:
                        client.shutdown()
                        raise PermanentError(
                            f"the IMAP server {self._where()} does not offer STARTTLS: use "
                            'security = "tls" (port 993), or ask the mail admin to enable TLS'
                        )
                    try:
                        client.starttls(ssl_context=self._tls)
                    except BaseException:
                        _shutdown(client)
                        raise
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(
                f"the IMAP server {self._where()} has a TLS certificate this machine does not "
                f"trust ({exc.verify_message}): check intake.mailbox.host, or set "
                "intake.mailbox.ca_bundle to the CA that issued it"
            ) from exc
        except (OSError, imaplib.IMAP4.abort) as exc:
            raise _Reconnect(f"connect: {type(exc).__name__}") from exc
        except imaplib.IMAP4.error as exc:
            raise PermanentError(
                f"the IMAP server {self._where()} refused the connection ({_first(exc)})"
            ) from exc
        try:
            self._login(client)
            typ, data = client.capability()
            if typ == "OK" and data and data[-1]:
                self._caps = frozenset(str(c, "ascii", "replace").upper() for c in data[-1].split())
        except (OSError, imaplib.IMAP4.abort) as exc:
            _shutdown(client)
            raise _Reconnect(f"login: {type(exc).__name__}") from exc
        except BaseException:  # a refused CAPABILITY, Ctrl-C: never leave the socket open
            _shutdown(client)
            raise
        return client

    def _login(self, client: imaplib.IMAP4) -> None:
        try:
            if self._token_provider is not None:
                token = self._token_provider()
                answers = iter([xoauth2_string(self.username, token).encode()])
                # The first continuation gets the credentials; an error challenge (a JSON
                # status from the server) gets an empty answer, then the server says NO.
                client.authenticate("XOAUTH2", lambda _challenge: next(answers, b""))
            else:
                assert self._password is not None
                if (self.username + self._password).isascii():
                    client.login(self.username, self._password)
                else:
                    # imaplib's LOGIN sends ASCII only (a "£" raised UnicodeEncodeError);
                    # SASL PLAIN carries UTF-8 (RFC 4616).
                    plain = f"\0{self.username}\0{self._password}".encode()
                    client.authenticate("PLAIN", lambda _challenge: plain)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            _shutdown(client)
            if self._token_provider is not None:
                raise PermanentError(
                    f"the IMAP server {self._where()} refused the OAuth token for "
                    f"{self.username} ({_first(exc)}): on Microsoft 365 check the app's "
                    "IMAP.AccessAsApp permission, Add-MailboxPermission for its service "
                    "principal and intake.mailbox.username"
                ) from exc
            raise PermanentError(
                f"the IMAP server {self._where()} refused the login for {self.username} "
                f"({_first(exc)}): check intake.mailbox.username and {self._credential_hint}"
            ) from exc

    def _drop(self) -> None:
        if self._client is not None:
            _shutdown(self._client)
        self._client = None
        self._selected = None

    def _run(self, what: str, operation: Callable[[imaplib.IMAP4], T]) -> T:
        """Run ``operation`` on a live connection; after a dropped connection, reconnect and
        run it once more, then give up with ``TransientError``."""
        for attempt in (1, 2):
            try:
                if self._client is None:
                    self._client = self._connect()
                return operation(self._client)
            except (_Reconnect, OSError, imaplib.IMAP4.abort, EOFError) as exc:
                self._drop()
                if attempt == 2:
                    detail = str(exc) if isinstance(exc, _Reconnect) else type(exc).__name__
                    raise TransientError(
                        f"IMAP {what} on {self._where()} failed twice (connection lost, refused "
                        f"or timed out: {detail}); will retry"
                    ) from exc
                log.info(
                    "imap: connection lost during %s (%s); reconnecting", what, type(exc).__name__
                )
            except imaplib.IMAP4.error as exc:
                raise PermanentError(
                    f"the IMAP server {self._where()} refused {what} ({_first(exc)})"
                ) from exc
        raise AssertionError("unreachable")

    # -- small IMAP helpers (run inside _run) -------------------------------------------

    def _select(self, client: imaplib.IMAP4, folder: str) -> int:
        """Select ``folder`` (read-write); its UIDVALIDITY."""
        self._selected = None
        typ, data = client.select(_folder_arg(folder))
        if typ != "OK":
            raise PermanentError(
                f"cannot open folder {folder!r} of {self.username} on {self._where()} "
                f"({_first(data)}): check the folder name in intake.mailbox (the intake folder "
                "must exist; Processed and Quarantine are created when needed)"
            )
        _, values = client.response("UIDVALIDITY")
        try:
            validity = int(values[-1])
        except (TypeError, ValueError, IndexError) as exc:
            raise PermanentError(
                f"the IMAP server {self._where()} gave no UIDVALIDITY for {folder!r}"
            ) from exc
        self._selected = (client, folder, validity)
        return validity

    def _search(self, client: imaplib.IMAP4, *criteria: str) -> list[int]:
        # Sample: ('OK', [b'3 7 12'])
        typ, data = client.uid("SEARCH", *criteria)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"SEARCH: {_first(data)}")
        return sorted({int(n) for chunk in data if chunk for n in chunk.split()})

    def _fetch(self, client: imaplib.IMAP4, uid: int) -> tuple[bytes, datetime | None] | None:
        typ, data = client.uid("FETCH", str(uid), "(UID INTERNALDATE BODY.PEEK[])")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH: {_first(data)}")
        return _fetched(data).get(uid)

    def _flags(self, client: imaplib.IMAP4, uid: int) -> set[str]:
        typ, data = client.uid("FETCH", str(uid), "(UID FLAGS)")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH FLAGS: {_first(data)}")
        for part in data:
            meta = part[0] if isinstance(part, tuple) else part
            if isinstance(meta, bytes):
                uid_match = _UID_RE.search(meta)
                flags = _FLAGS_RE.search(meta)
                if uid_match and int(uid_match.group(1)) == uid and flags:
                    return {f.decode().lower() for f in flags.group(1).split()}
        return set()

    def _ensure_folder(self, client: imaplib.IMAP4, folder: str) -> None:
        if folder in self._folders_ok:
            return
        typ, data = client.list('""', _folder_arg(folder))
        if not (typ == "OK" and any(data)):
            typ, data = client.create(_folder_arg(folder))
            if typ != "OK" and b"ALREADYEXISTS" not in b" ".join(
                d for d in data if isinstance(d, bytes)
            ):
                raise PermanentError(
                    f"cannot create folder {folder!r} for {self.username} on {self._where()} "
                    f"({_first(data)}): create it by hand or check the account's rights"
                )
            client.subscribe(_folder_arg(folder))  # so that mail clients show it
            log.info("imap: created folder %s", folder)
        self._folders_ok.add(folder)

    def _find(self, client: imaplib.IMAP4, folder: str, print_: str) -> list[int]:
        """UIDs in the selected ``folder`` whose fingerprint is ``print_``."""
        return [uid for uid, _ in self._find_fetched(client, print_)]

    def _find_fetched(
        self, client: imaplib.IMAP4, print_: str
    ) -> Iterator[tuple[int, tuple[bytes, datetime | None]]]:
        """(UID, (bytes, INTERNALDATE)) of each message in the selected folder with ``print_``."""
        if print_.startswith("sha256:") or not print_.isascii():
            candidates = self._search(client, "ALL")
        else:
            candidates = self._search(client, "HEADER", "Message-ID", _quote(print_))
        for uid in candidates:
            got = self._fetch(client, uid)
            if got is not None and fingerprint(got[0]) == print_:
                yield uid, got

    # -- the ledger's memory of what it has seen ----------------------------------------

    def _cursor_key(self) -> str:
        return f"imap.cursor:{self.account}"

    def _cursor(self) -> tuple[int, int] | None:
        value = self.ledger.get(self._cursor_key())
        if not value:
            return None
        validity, _, last = value.partition(":")
        return int(validity), int(last)

    def _remember_all(self, prints: list[tuple[str, str]]) -> None:
        """Record (item id, fingerprint) of messages about to be handed on, in one commit."""
        if not prints:
            return
        now = utcnow().isoformat(timespec="seconds")
        with self.ledger.transaction() as db:
            db.executemany(
                "INSERT INTO imap_messages (account, item_id, fingerprint, seen_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(account, item_id) DO NOTHING",
                [(self.account, item_id, print_, now) for item_id, print_ in prints],
            )

    def _taken(self, item_ids: list[str], validity: int, uid: int | None) -> None:
        """The consumer took ``item_ids``; the cursor moves to ``uid`` (one commit)."""
        if uid is None:
            return
        now = utcnow().isoformat(timespec="seconds")
        with self.ledger.transaction() as db:
            db.executemany(
                "UPDATE imap_messages SET taken_at = ? WHERE account = ? AND item_id = ?",
                [(now, self.account, item_id) for item_id in item_ids],
            )
            db.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (self._cursor_key(), f"{validity}:{uid}", now),
            )

    def _moved_out(self, item_id: str) -> None:
        self.ledger.db.execute(
            "UPDATE imap_messages SET moved_at = COALESCE(moved_at, ?) "
            "WHERE account = ? AND item_id = ?",
            (utcnow().isoformat(timespec="seconds"), self.account, item_id),
        )

    def _print_of(self, item_id: str) -> str | None:
        row = self.ledger.db.execute(
            "SELECT fingerprint FROM imap_messages WHERE account = ? AND item_id = ?",
            (self.account, item_id),
        ).fetchone()
        return str(row[0]) if row else None

    # -- Mailbox ------------------------------------------------------------------------

    def fetch_new(self) -> Iterator[InboundItem]:
        cursor = self._cursor()
        validity, uids = self._run("reading the folder", partial(self._listing, cursor=cursor))
        # No cursor (first run, or a lost one) or a new UIDVALIDITY: read the whole folder.
        rescan = cursor is None or cursor[0] != validity
        if rescan and cursor is not None:
            log.warning(
                "imap: UIDVALIDITY of %s changed; reading the whole folder again "
                "(messages still being worked on are recognised; copies of finished ones "
                "are handed on and recorded as duplicates)",
                self.folder,
            )
        in_flight = 0
        renumbered: set[str] = set()
        taken: list[str] = []
        last: int | None = None
        try:
            for batch in self._batches(validity, uids):
                if batch is None:
                    log.warning(
                        "imap: UIDVALIDITY of %s changed mid-cycle; rescan next cycle",
                        self.folder,
                    )
                    return
                # Taken before and not yet moved out: the intake has it under its id (which
                # finds it by fingerprint) and moves it when done. Anything else, copies of
                # finished messages included, is handed on, so that it leaves with a record.
                handed = [
                    (uid, raw, received, f"{validity}:{uid}", fingerprint(raw))
                    for uid, (raw, received) in batch
                ]
                if rescan:
                    kept = [
                        h for h in handed if not self._in_flight(h[3], h[4], validity, renumbered)
                    ]
                    in_flight += len(handed) - len(kept)
                    handed = kept
                self._remember_all([(item_id, print_) for _, _, _, item_id, print_ in handed])
                for uid, raw, received, item_id, _ in handed:
                    yield InboundItem(item_id=item_id, raw=raw, received_at=received)
                    # The consumer has taken the item (it asked for the next).
                    taken.append(item_id)
                    last = uid
                if batch:  # every message of the batch taken or left to the intake
                    self._taken(taken, validity, batch[-1][0])
                taken, last = [], None
        finally:
            # Saved once per batch (and when the consumer stops): a crash replays the rest of
            # a batch, never skips a message.
            if taken and last is not None:
                self._taken(taken, validity, last)
        if in_flight:
            log.info("imap: %d message(s) already being worked on left to the intake", in_flight)

    def _listing(
        self, client: imaplib.IMAP4, cursor: tuple[int, int] | None
    ) -> tuple[int, list[int]]:
        """One SELECT and one SEARCH: the folder's UIDVALIDITY and the UIDs to read (above the
        cursor, or all of them when there is no cursor for this UIDVALIDITY)."""
        validity = self._select(client, self.folder)
        if cursor is None or cursor[0] != validity:
            return validity, self._search(client, "ALL")
        last = cursor[1]
        # "n:*" always includes the highest UID, even below n
        return validity, [u for u in self._search(client, "UID", f"{last + 1}:*") if u > last]

    def _batches(
        self, validity: int, uids: Sequence[int]
    ) -> Iterator[list[tuple[int, tuple[bytes, datetime | None]]] | None]:
        """The messages at ``uids`` in order, a batch (one ``UID FETCH``) at a time, bounded in
        count and bytes so that memory stays flat however full the folder is. Yields None
        (and stops) if the folder's UIDVALIDITY changed meanwhile."""
        if not uids:
            return
        sizes: dict[int, int] = {}
        if len(uids) > 1:
            try:
                sizes = self._run(
                    "sizing new mail", partial(self._sizes, validity=validity, first=uids[0])
                )
            except _UidValidityChanged:
                yield None
                return
        batch: list[int] = []
        held = 0
        # Batches grow 1, 2, 4… up to batch_messages: the first message reaches the intake
        # after one small round trip, a long first run still takes few.
        limit = 1
        for n, uid in enumerate(uids):
            size = sizes.get(uid, 0)
            if batch and (len(batch) >= limit or held + size > self.batch_bytes):
                limit = min(limit * 2, self.batch_messages)
                got = self._read_batch(validity, batch)
                if got is None:
                    yield None
                    return
                yield got
                batch, held = [], 0
            batch.append(uid)
            held += size
            if n == len(uids) - 1:
                got = self._read_batch(validity, batch)
                yield got
                if got is None:
                    return

    def _read_batch(
        self, validity: int, uids: list[int]
    ) -> list[tuple[int, tuple[bytes, datetime | None]]] | None:
        try:
            fetched = self._run(
                f"fetching {len(uids)} message(s)",
                partial(self._fetch_many, validity=validity, uids=uids),
            )
        except _UidValidityChanged:
            return None
        # A UID missing from the answer was expunged since the search (a person moved it).
        return [(uid, fetched[uid]) for uid in uids if uid in fetched]

    def _ensure_selected(self, client: imaplib.IMAP4, validity: int) -> None:
        """The intake folder selected with ``validity``; no SELECT if it still is (the
        server ends the session rather than change UIDVALIDITY under a selected folder)."""
        if self._selected == (client, self.folder, validity):
            return
        if self._select(client, self.folder) != validity:
            raise _UidValidityChanged

    def _sizes(self, client: imaplib.IMAP4, validity: int, first: int) -> dict[int, int]:
        """Sizes by UID from ``first`` on: a range, not a list of UIDs, so that the command
        stays short however many (and however scattered) the UIDs are."""
        self._ensure_selected(client, validity)
        # Sample: [b'1 (UID 7 RFC822.SIZE 2417)', b'2 (UID 8 RFC822.SIZE 96)']
        typ, data = client.uid("FETCH", f"{first}:*", "(UID RFC822.SIZE)")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH SIZE: {_first(data)}")
        sizes: dict[int, int] = {}
        for part in data:
            meta = part[0] if isinstance(part, tuple) else part
            if isinstance(meta, bytes):
                uid, size = _UID_RE.search(meta), _SIZE_RE.search(meta)
                if uid and size:
                    sizes[int(uid.group(1))] = int(size.group(1))
        return sizes

    def _fetch_many(
        self, client: imaplib.IMAP4, validity: int, uids: Sequence[int]
    ) -> dict[int, tuple[bytes, datetime | None]]:
        self._ensure_selected(client, validity)
        typ, data = client.uid("FETCH", _uid_set(uids), "(UID INTERNALDATE BODY.PEEK[])")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH: {_first(data)}")
        return _fetched(data)

    def _in_flight(self, item_id: str, print_: str, validity: int, renumbered: set[str]) -> bool:
        """Whether the message at ``item_id`` was taken before and is not yet moved out: under
        this very id, or (after a UIDVALIDITY change) under an older id with its fingerprint,
        each older id standing for one message of this scan."""
        rows = self.ledger.db.execute(
            "SELECT item_id FROM imap_messages WHERE account = ? AND fingerprint = ? "
            "AND taken_at IS NOT NULL AND moved_at IS NULL ORDER BY rowid",
            (self.account, print_),
        ).fetchall()
        earlier = [str(r[0]) for r in rows]
        if item_id in earlier:
            return True
        for old in earlier:
            if not old.startswith(f"{validity}:") and old not in renumbered:
                renumbered.add(old)
                return True
        return False

    def _parse_id(self, item_id: str) -> tuple[int, int]:
        validity, sep, uid = item_id.partition(":")
        if not (sep and validity.isdigit() and uid.isdigit()):
            raise InputError(f"not an IMAP item id (UIDVALIDITY:UID): {item_id!r}")
        return int(validity), int(uid)

    def _locate(
        self, client: imaplib.IMAP4, item_id: str, folders: Sequence[str]
    ) -> tuple[str, int] | None:
        """Where the message ``item_id`` is now: (folder, UID), selected; None if nowhere."""
        validity, uid = self._parse_id(item_id)
        print_ = self._print_of(item_id)
        for folder in folders:
            if folder != self.folder and folder not in self._folders_ok:
                typ, data = client.list('""', _folder_arg(folder))
                if not (typ == "OK" and any(data)):
                    continue
            current = self._select(client, folder)
            if folder == self.folder and current == validity:
                # Same folder, same UIDVALIDITY: the UID is the identity (a copy with the same
                # Message-ID elsewhere in the folder is another item).
                if self._search(client, "UID", str(uid)) == [uid]:
                    return folder, uid
                continue
            if print_ is not None:
                found = self._find(client, folder, print_)
                if found:
                    return folder, found[0]
        return None

    def fetch(self, item_id: str) -> InboundItem:
        folders = [self.folder, self.processed_folder, self.quarantine_folder]

        def op(client: imaplib.IMAP4) -> InboundItem:
            where = self._locate(client, item_id, folders)
            got = self._fetch(client, where[1]) if where else None
            if got is None:
                raise InputError(
                    f"message {item_id} is no longer in {self.folder!r} (nor "
                    f"{self.processed_folder!r}/{self.quarantine_folder!r}) of {self.username}: "
                    "a person may have moved or deleted it"
                )
            return InboundItem(item_id=item_id, raw=got[0], received_at=got[1])

        return self._run(f"fetching {item_id}", op)

    def mark_processed(self, item_id: str) -> None:
        self._move_out(item_id, self.processed_folder, "processed")

    def quarantine(self, item_id: str, reason: str) -> None:
        # The reason goes to the DSP in the pipeline's notice; the log gets no content.
        self._move_out(item_id, self.quarantine_folder, "quarantined", keyword=QUARANTINE_KEYWORD)

    def _move_out(
        self, item_id: str, target: str, done: str, *, keyword: str | None = None
    ) -> None:
        def op(client: imaplib.IMAP4) -> None:
            try:
                move(client)
            except imaplib.IMAP4.abort:
                raise
            except (imaplib.IMAP4.error, PermanentError):
                if target not in self._folders_ok:
                    raise
                # The worker keeps one connection for days: a person may have deleted or
                # renamed the folder since it was made ([TRYCREATE]). Look again, once.
                self._folders_ok.discard(target)
                move(client)

        def move(client: imaplib.IMAP4) -> None:
            self._ensure_folder(client, target)
            where = self._locate(client, item_id, [self.folder])
            if where is None:
                log.info("imap: %s already out of %s", item_id, self.folder)
                self._moved_out(item_id)
                return
            _, uid = where
            # A person's \\Deleted on the intake copy would travel along (MOVE and COPY keep
            # flags), and a mail client's expunge would then erase the record in Processed.
            typ, data = client.uid("STORE", str(uid), "-FLAGS.SILENT", "(\\Deleted)")
            if typ != "OK":
                raise imaplib.IMAP4.error(f"STORE: {_first(data)}")
            if keyword:
                # Best effort: a server may not allow keywords; the move is what matters.
                try:
                    client.uid("STORE", str(uid), "+FLAGS.SILENT", f"({keyword})")
                except imaplib.IMAP4.abort:
                    raise
                except imaplib.IMAP4.error:
                    log.info("imap: server refused the %s keyword", keyword)
            self._move(client, uid, target)
            self._moved_out(item_id)
            log.info("imap: %s %s", item_id, done)

        self._run(f"moving {item_id} to {target}", op)

    def _move(self, client: imaplib.IMAP4, uid: int, target: str) -> None:
        if self.has_move():
            typ, data = client.uid("MOVE", str(uid), _folder_arg(target))
            if typ != "OK":
                raise imaplib.IMAP4.error(f"MOVE: {_first(data)}")
            return
        # No MOVE: COPY, flag \Deleted, expunge only this UID where UIDPLUS allows. A retry
        # after a cut between COPY and EXPUNGE must not copy twice, so look in the target for
        # this very message first (never trust \Deleted as "copied": a person may have set it).
        if not self._copied_already(client, uid, target):
            typ, data = client.uid("COPY", str(uid), _folder_arg(target))
            if typ != "OK":
                raise imaplib.IMAP4.error(f"COPY: {_first(data)}")
        typ, data = client.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"STORE: {_first(data)}")
        if "UIDPLUS" in self._caps:
            typ, data = client.uid("EXPUNGE", str(uid))
        else:
            typ, data = client.expunge()
        if typ != "OK":
            raise imaplib.IMAP4.error(f"EXPUNGE: {_first(data)}")

    def _copied_already(self, client: imaplib.IMAP4, uid: int, target: str) -> bool:
        """Whether ``target`` already holds a copy of intake message ``uid`` (same fingerprint,
        same bytes, same INTERNALDATE, which COPY keeps). Leaves the intake folder selected.

        A byte-identical copy with the same INTERNALDATE (a backup restored on top of the
        original) cannot be told from a cut-off COPY of this one, so it is kept once in the
        target; its ledger record (a duplicate) stays. Only servers without MOVE."""
        got = self._fetch(client, uid)
        if got is None:
            raise imaplib.IMAP4.error(f"message UID {uid} vanished while being moved")
        raw, received = got
        validity = self._select(client, self.folder)
        self._select(client, target)
        found = any(
            copy == (raw, received) for _, copy in self._find_fetched(client, fingerprint(raw))
        )
        if self._select(client, self.folder) != validity:
            raise TransientError(
                f"the UIDVALIDITY of {self.folder!r} changed while a message was being moved; "
                "will retry"
            )
        return found

    # -- check and close ----------------------------------------------------------------

    def checks(self) -> Iterator[CheckResult]:
        """``prevent-service check`` lines: login, the intake folder, the two target folders."""
        name = f"mailbox {self.username} on {self._where()}"
        try:
            count = self._run("checking the folder", self._count_intake)
        except PreventServiceError as exc:
            yield CheckResult(name, False, str(exc))
            return
        how = "MOVE" if self.has_move() else "COPY + EXPUNGE (server has no MOVE)"
        yield CheckResult(
            name, True, f"can read {self.folder} ({count} message(s)); moves by {how}"
        )
        for folder in (self.processed_folder, self.quarantine_folder):
            try:
                self._run(f"creating {folder}", partial(self._ensure_folder, folder=folder))
                yield CheckResult(f"folder {folder}", True, "present (created if it was missing)")
            except PreventServiceError as exc:
                yield CheckResult(f"folder {folder}", False, str(exc))

    def _count_intake(self, client: imaplib.IMAP4) -> int:
        self._select(client, self.folder)
        return len(self._search(client, "ALL"))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.logout()
            except (OSError, imaplib.IMAP4.error, EOFError):
                _shutdown(client)


def _shutdown(client: imaplib.IMAP4) -> None:
    try:
        with contextlib.suppress(OSError, imaplib.IMAP4.error, EOFError, ValueError):
            client.shutdown()
    finally:
        with contextlib.suppress(OSError, AttributeError):
            client.sock.close()


def _first(value: object) -> str:
    """A short, content-free server message for an error text."""
    if isinstance(value, imaplib.IMAP4.error) and value.args:
        value = value.args[0]
    if isinstance(value, list):
        value = next((v for v in value if v), b"")
    if isinstance(value, tuple):
        value = value[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())[:200]
