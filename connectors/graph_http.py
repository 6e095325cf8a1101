"""One retry policy and one error translation for every Microsoft Graph call.

Every Graph request of the Graph backends goes through ``GraphHttp.call`` (for O365 object
methods) or ``GraphHttp.request`` (for calls O365 does not have: delta, ``$value``, move, send,
If-Match uploads, workbook ranges). The policy:

* 429 and 503 with ``Retry-After``: wait exactly that long (seconds, fractional values such as
  ``2.128`` included, or an HTTP-date), for any method: the request was not carried out.
* other 5xx, timeouts and dropped connections: exponential backoff with jitter. For GET, PUT,
  DELETE (idempotent) that is always safe; for POST/PATCH only when the caller says so
  (``retry_ambiguous=True``: the write is naturally idempotent, or the caller has read back).
  Otherwise ``AmbiguousWrite`` is raised so the caller can read back before deciding.
* 401: renew the token once (O365 only renews when its own clock says it expired), then retry.
* the total time spent waiting is capped by ``m365.max_retry_wait_seconds``; past it a
  ``TransientError`` with ``retry_after`` goes to the caller (the pipeline parks the item).

Errors become ``service.errors`` with a message saying what to do. A Graph error body looks like
``{"error": {"code": "TooManyRequests", "message": "Please retry again later.",
"innerError": {"code": "429", "date": "…", "request-id": "…"}}}``; Excel nests further
``innerError`` objects, and lock codes can sit at any depth.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, TypeVar

import requests
from urllib3.exceptions import HTTPError as Urllib3Error

from connectors.graph_auth import AppOnlyAccount, build_account
from service.config import M365
from service.errors import (
    ConfigError,
    ConnectorError,
    LockedError,
    PermanentError,
    PreventServiceError,
    TransientError,
)

log = logging.getLogger("prevent_service.graph")

T = TypeVar("T")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

# Ledger keys of reads that ride along with the mailbox's delta read every cycle (the Forms
# workbook's cTag): ``RIDE_PREFIX + key`` → the Graph path. Kept so that a new process's
# first cycle is one round trip for them too, before the workbook has asked in memory.
RIDE_PREFIX = "graph.ride:"

# Lock codes: Graph/SharePoint (resourceLocked, notAllowed+resourceLocked), Excel
# (accessConflict, invalidSessionAccessConflict; EditModeCannotAcquireLock seen in the wild).
LOCK_CODES = frozenset(
    {
        "resourcelocked",
        "accessconflict",
        "invalidsessionaccessconflict",
        "editmodecannotacquirelock",
        "lockmismatch",
        "filelocked",
    }
)
MAILBOX_MISSING_CODES = frozenset(
    {
        "errorinvaliduser",
        "mailboxnotenabledforrestapi",
        "mailboxnotfound",
        "errormailboxnotfound",
        "request_resourcenotfound",
        "resourcenotfound",
        "errornonexistentmailbox",
    }
)


# ---------------------------------------------------------------------------- errors


class GraphNotFound(PermanentError):
    """404: the mailbox, message, folder, site, file or table is not there."""


class GraphConflict(PermanentError):
    """409 that is not a lock (e.g. a folder of that name already exists)."""


class SyncStateLost(PermanentError):
    """410 / ``syncStateNotFound``: a delta link is no longer valid; start a fresh delta."""


class PreconditionFailed(TransientError):
    """412: the file changed since its ETag was read; re-read and try again."""


class AmbiguousWrite(TransientError):
    """A POST/PATCH failed in a way that leaves unknown whether it took effect (timeout, 5xx).

    Raised only when the caller did not declare the write safe to repeat; the caller reads
    back (Sent Items, the key column) before deciding whether to write again.
    """


class WorkbookSessionExpired(TransientError):
    """The workbook session is gone (``invalidSessionReCreatable``): open a new one."""


class WorkbookApiRefused(PermanentError):
    """403 on the Excel workbook API while the file itself is reachable (Sites.Selected
    tenants may refuse app-only workbook sessions): use ``mode = "file"``."""


@dataclass(frozen=True)
class GraphFailure:
    """What came back from Graph, parsed once."""

    status: int
    codes: tuple[str, ...]  # top-level code first, then innerError codes at every depth
    message: str
    retry_after: float | None

    @property
    def code(self) -> str:
        return self.codes[0] if self.codes else ""

    def has_code(self, *wanted: str) -> bool:
        lowered = {c.lower() for c in self.codes}
        return any(w.lower() in lowered for w in wanted)

    @property
    def is_lock(self) -> bool:
        if self.status == 423:
            return True
        return any(c.lower() in LOCK_CODES for c in self.codes) or (
            "locked" in self.message.lower() and self.status in {409, 403}
        )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: ``10``, ``2.128`` or an HTTP-date.

    urllib3 accepts only integers and dates; Graph's own throttling sample says ``2.128``.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _walk_codes(error: Any) -> Iterator[str]:
    while isinstance(error, Mapping):
        code = error.get("code")
        if isinstance(code, str) and code:
            yield code
        error = error.get("innerError", error.get("innererror"))


def parse_failure(response: requests.Response) -> GraphFailure:
    try:
        body = response.json()
    except ValueError:
        body = None
    return failure_from(response.status_code, body, response.headers.get("Retry-After"))


def failure_from(status: int, body: Any, retry_after: str | None) -> GraphFailure:
    """A failure from its parts (a plain response, or one response inside a ``$batch``)."""
    codes: tuple[str, ...] = ()
    message = ""
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
        codes = tuple(_walk_codes(error))
        message = str(error.get("message") or "")
    return GraphFailure(
        status=status,
        codes=codes,
        message=" ".join(message.split())[:200],
        retry_after=parse_retry_after(retry_after),
    )


@dataclass(frozen=True)
class Call:
    """What a call is for, in words for error messages, and the permission it needs."""

    what: str  # "read the mailbox concerns@example.org"
    permission: str = ""  # "Mail.ReadWrite", "Mail.Send", "Sites.Selected"
    kind: str = ""  # "mailbox", "message", "file", "workbook", "send": shapes the 403/404 advice
    subject: str = ""  # the mailbox address or file path named in advice


def translate(failure: GraphFailure, call: Call) -> PreventServiceError:
    """A final Graph failure → our error, with what to do."""
    status, code = failure.status, failure.code or "no code"
    detail = f"HTTP {status} {code}"
    what = call.what
    if failure.is_lock:
        return _tag(
            LockedError(
                f"{what}: the file is open or locked by someone else ({detail}); the row stays "
                "pending and is written once the file is free (ask whoever has it open in the "
                "desktop app to close it, or use Excel for the web)",
                retry_after=failure.retry_after,
            ),
            failure,
        )
    if failure.has_code("invalidSessionReCreatable", "invalidSessionNotFound"):
        return _tag(
            WorkbookSessionExpired(f"{what}: the workbook session expired ({detail})"), failure
        )
    if status == 401:
        hint = (
            "admin consent for the app's permissions is missing or was revoked"
            if "permission" in failure.message.lower()
            else "the token was refused: admin consent may have been revoked or the app disabled"
        )
        return _tag(
            PermanentError(
                f"{what}: {hint} ({detail}); grant admin consent for {call.permission or 'the'}"
                " application permission(s) in Entra ID > App registrations > API permissions"
            ),
            failure,
        )
    if status == 403:
        return _tag(_forbidden(failure, call, detail), failure)
    if status == 404:
        if failure.has_code("ErrorFolderNotFound"):
            return _tag(
                GraphNotFound(
                    f"{what}: mail folder not found ({detail}): check the folder names in the "
                    "config (intake.mailbox.folder)"
                ),
                failure,
            )
        if call.kind == "mailbox" or (
            call.kind in {"message", "send"} and failure.has_code(*MAILBOX_MISSING_CODES)
        ):
            return _tag(
                GraphNotFound(
                    f"{what}: mailbox {call.subject} not found ({detail}): check the address is "
                    "the shared mailbox's primary SMTP address and that it has an Exchange "
                    "Online mailbox"
                ),
                failure,
            )
        if call.kind in {"file", "workbook"}:
            return _tag(
                GraphNotFound(
                    f"{what}: {call.subject or 'the item'} not found ({detail}): check site_host,"
                    " site_path and path in the config (path is inside the site's default "
                    "document library, e.g. /Registers/Concern register.xlsx)"
                ),
                failure,
            )
        return _tag(GraphNotFound(f"{what}: not found ({detail})"), failure)
    if status == 409:
        return _tag(GraphConflict(f"{what}: conflict ({detail}: {failure.message})"), failure)
    if status == 410 or failure.has_code("syncStateNotFound", "resyncRequired"):
        return _tag(SyncStateLost(f"{what}: the delta link has expired ({detail})"), failure)
    if status == 412:
        return _tag(
            PreconditionFailed(
                f"{what}: the file changed since it was read ({detail}); it will be re-read",
                retry_after=failure.retry_after,
            ),
            failure,
        )
    if status == 413:
        return _tag(PermanentError(f"{what}: too large for Graph ({detail})"), failure)
    if status == 429 or status >= 500:
        return _tag(
            TransientError(
                f"{what}: Microsoft 365 is busy or unavailable ({detail}); will retry later",
                retry_after=failure.retry_after,
            ),
            failure,
        )
    return _tag(
        PermanentError(f"{what}: Graph refused the request ({detail}: {failure.message})"), failure
    )


def _forbidden(failure: GraphFailure, call: Call, detail: str) -> PermanentError:
    what = call.what
    if call.kind == "workbook":
        return WorkbookApiRefused(
            f"{what}: the tenant refuses the Excel workbook API for this app ({detail}); "
            'set mode = "file" for this workbook (download, edit, upload with If-Match), or '
            'grant the app write on the site (Sites.Selected grant with roles ["write"])'
        )
    if call.permission == "Sites.Selected" or call.kind == "file":
        return PermanentError(
            f"{what}: access denied ({detail}). The app needs the Sites.Selected application "
            "permission with admin consent AND a write grant on this site: POST "
            '/sites/{site-id}/permissions {"roles": ["write"], "grantedToIdentities": '
            '[{"application": {"id": "<client id>"}}]} (see docs/microsoft-365.md)'
        )
    permission = call.permission or "Mail.ReadWrite"
    scope_hint = (
        " Access to OData is disabled means an ApplicationAccessPolicy excludes this mailbox."
        if "odata is disabled" in failure.message.lower()
        else ""
    )
    return PermanentError(
        f"{what}: access denied ({detail}). The app needs the {permission} application "
        f"permission with admin consent, and {call.subject or 'the mailbox'} must be in its "
        "Exchange RBAC for Applications scope (New-ManagementRoleAssignment -Role "
        f'"Application {permission}"; check with Test-ServicePrincipalAuthorization).' + scope_hint
    )


def _tag(error: PreventServiceError, failure: GraphFailure) -> PreventServiceError:
    error.status = failure.status  # type: ignore[attr-defined]
    error.code = failure.code  # type: ignore[attr-defined]
    return error


# ---------------------------------------------------------------------------- the client


class GraphHttp:
    """Graph calls for one account, with our retry policy. One per backend instance."""

    base_delay = 1.0  # first backoff step, seconds
    max_delay = 60.0  # one backoff step at most
    max_attempts = 8

    def __init__(
        self,
        account: AppOnlyAccount,
        m365: M365,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.account = account
        self.m365 = m365
        self.max_wait = float(m365.max_retry_wait_seconds)
        self.sleep = sleep
        self.jitter = jitter
        self.base_url = account.protocol.service_url  # "https://graph.microsoft.com/v1.0/"
        self.requests_made = 0  # for bench/ and tests: requests sent, retries included

    @property
    def con(self) -> Any:
        return self.account.con

    def close(self) -> None:
        """Close the HTTP connections (the token stays in memory until the process ends)."""
        for session in (self.con.session, self.con.naive_session):
            if session is not None:
                session.close()

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else self.base_url + path.lstrip("/")

    def ensure_token(self) -> None:
        """A token that is good for at least five more minutes: from msal's cache, or new."""
        try:
            self.con.refresh_token()
        except ConnectorError:
            raise
        except requests.exceptions.RequestException as exc:
            raise TransientError(f"could not reach the sign-in host: {type(exc).__name__}") from exc

    # -- the policy ----------------------------------------------------------------------

    def call(
        self,
        op: Callable[[], T],
        call: Call,
        *,
        method: str = "GET",
        retry_ambiguous: bool | None = None,
    ) -> T:
        """Run ``op`` (one Graph request) under the retry policy; translate its errors."""
        safe_to_repeat = (
            method.upper() in IDEMPOTENT_METHODS if retry_ambiguous is None else retry_ambiguous
        )
        waited = 0.0
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            ambiguous = False
            failure: GraphFailure | None = None
            try:
                self.requests_made += 1
                return op()
            except requests.HTTPError as exc:
                if exc.response is None:
                    raise TransientError(f"{call.what}: {type(exc).__name__}") from exc
                failure = parse_failure(exc.response)
                if failure.status == 401 and not renewed:
                    renewed = True
                    log.info("graph: %s: token refused (401), renewing it once", call.what)
                    self.con.renew_token()
                    continue
                if not _retryable(failure):
                    raise translate(failure, call) from exc
                # 429, and 503 with Retry-After (throttling), are refusals: nothing happened,
                # any method may be repeated. A bare 503 is a gateway failure like 502/504.
                ambiguous = not (
                    failure.status == 429
                    or (failure.status == 503 and failure.retry_after is not None)
                )
                cause: BaseException = exc
            except (requests.ConnectTimeout, requests.exceptions.SSLError) as exc:
                if isinstance(exc, requests.exceptions.SSLError):
                    raise PermanentError(
                        f"{call.what}: the TLS certificate was not trusted; behind a "
                        "TLS-inspecting proxy set m365.ca_bundle to its CA certificate file"
                    ) from exc
                cause = exc  # the request never reached Graph
            except (
                requests.Timeout,
                requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
                Urllib3Error,
            ) as exc:
                ambiguous = True
                cause = exc
            except requests.RequestException as exc:
                raise TransientError(f"{call.what}: {type(exc).__name__}; will retry") from exc
            reason = (
                f"HTTP {failure.status} {failure.code}".rstrip()
                if failure
                else type(cause).__name__
            )
            if ambiguous and not safe_to_repeat:
                raise AmbiguousWrite(
                    f"{call.what}: no clear answer from Graph ({reason}); it may or may not "
                    "have taken effect"
                ) from cause
            hint = failure.retry_after if failure else None
            delay = hint if hint is not None else self._backoff(attempt)
            if attempt >= self.max_attempts or waited + delay > self.max_wait:
                error = (
                    translate(failure, call)
                    if failure
                    else TransientError(
                        f"{call.what}: Microsoft 365 did not answer ({reason}); will retry later"
                    )
                )
                if isinstance(error, TransientError) and error.retry_after is None:
                    error.retry_after = delay
                raise error from cause
            log.warning(
                "graph: %s: %s, retrying in %.1fs (attempt %d)", call.what, reason, delay, attempt
            )
            self.sleep(delay)
            waited += delay

    def settle(self, attempt: int = 1) -> None:
        """Wait one backoff step before reading back after an unclear write, so a write still
        being carried out by Graph has time to show (then a retry would duplicate it)."""
        self.sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        """Exponential with jitter: 1, 2, 4 … seconds (capped), each scaled by 0.5–1.0."""
        step = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return step * (0.5 + 0.5 * self.jitter())

    # -- plain requests ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        call: Call,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        retry_ambiguous: bool | None = None,
        naive: bool = False,
    ) -> requests.Response:
        """One Graph request through O365's connection (auth header, immutable-id Prefer,
        timeout), under the policy. ``naive`` sends no token (pre-authenticated upload URLs)."""
        url = self.url(path)

        def op() -> requests.Response:
            # Fresh kwargs every attempt: O365 edits the headers dict it is given.
            kwargs: dict[str, Any] = {"headers": dict(headers or {})}
            if params:
                kwargs["params"] = dict(params)
            if content is not None:
                # O365 spells it "Content-type"; "Content-Type" would make it json.dumps bytes.
                kwargs["headers"]["Content-type"] = content_type or "application/octet-stream"
                kwargs["data"] = content
            elif json is not None:
                kwargs["data"] = json
            if naive:
                return self.con.naive_request(url, method, **kwargs)
            return self.con.oauth_request(url, method, **kwargs)

        return self.call(op, call, method=method, retry_ambiguous=retry_ambiguous)

    # -- reads that ride along -----------------------------------------------------------
    # The worker's idle cycle is the mailbox's delta read plus the Forms workbook's cTag. They
    # belong to different backends, so the workbook says what it wants (``want``), the mailbox
    # sends it in the same batch as its delta read (``wanted``/``keep``), and the workbook
    # takes the answer (``take``) instead of asking again: one round trip per idle cycle.

    def _shared(self) -> Any:
        shared = getattr(self.con, "shared", None)
        if shared is None:
            shared = self.__dict__.setdefault("_own_shared", SimpleNamespace(wanted={}, fetched={}))
        return shared

    def want(self, key: str, path: str) -> None:
        self._shared().wanted[key] = path

    def want_remembered(self, remembered: Sequence[tuple[str, str, str]]) -> None:
        """Once per process: the ride-along reads a ledger remembers (``RIDE_PREFIX``
        entries as ``Ledger.kv_with_prefix`` gives them), unless already wanted in memory."""
        shared = self._shared()
        if getattr(shared, "remembered", False):
            return
        shared.remembered = True
        for key, path, _updated in remembered:
            shared.wanted.setdefault(key.removeprefix(RIDE_PREFIX), path)

    def wanted(self) -> dict[str, str]:
        """What to send along now. A read whose last ridden answer was never taken (the
        register, read only now and then) stops riding until it is wanted again."""
        shared = self._shared()
        for key in [k for k in shared.wanted if k in shared.fetched]:
            del shared.wanted[key]
            del shared.fetched[key]
        return dict(shared.wanted)

    def keep(self, key: str, outcome: Any) -> None:
        self._shared().fetched[key] = (time.monotonic(), outcome)

    def take(self, key: str, max_age: float) -> Any:
        """A ridden-along answer no older than ``max_age`` seconds (used once), or None."""
        entry = self._shared().fetched.pop(key, None)
        if entry is None or time.monotonic() - entry[0] > max_age:
            return None
        return entry[1]

    def batch(self, subs: Sequence[Any]) -> list[Any]:
        """Several requests in as few round trips as JSON batching allows (``graph_batch``):
        a ``Reply`` or the error a plain request would have raised, per request, in order."""
        from connectors import graph_batch  # graph_batch builds on this module

        return graph_batch.run(self, subs)

    def get_json(self, path: str, call: Call, **kwargs: Any) -> dict[str, Any]:
        response = self.request("GET", path, call, **kwargs)
        try:
            data = response.json()
        except ValueError as exc:
            raise TransientError(f"{call.what}: Graph sent a reply that is not JSON") from exc
        if not isinstance(data, dict):
            raise TransientError(f"{call.what}: Graph sent an unexpected reply")
        return data


def _retryable(failure: GraphFailure) -> bool:
    if failure.is_lock:
        return False
    return failure.status == 429 or failure.status in {500, 502, 503, 504}


def connect(m365: M365 | None) -> GraphHttp:
    """The Graph client for a backend, from the ``[m365]`` section (no network yet)."""
    if m365 is None:
        raise ConfigError(
            'a backend = "graph" section needs an [m365] section (tenant_id, client_id, '
            "certificate_path or client_secret_env)",
            key="m365",
        )
    return GraphHttp(build_account(m365), m365)
