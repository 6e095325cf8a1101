"""JSON batching (``POST /$batch``): several Graph requests in one round trip, each under the
same retry policy as a plain request (``connectors.graph_http``).

What Microsoft documents (learn.microsoft.com/graph/json-batching, /graph/throttling) and this
module relies on:

* up to 20 requests per batch; the batch answers 200 and each request has its own status,
  headers and body; responses may come back in any order (matched here by ``id``);
* a request whose ``dependsOn`` request failed is not run and answers 424: it is sent again;
* each request is throttled on its own: a 429 (or 503 with ``Retry-After``) in one response
  carries its own ``Retry-After``; only the throttled requests are sent again, after the
  longest wait any of them asked for; the others' answers are kept;
* Graph hands at most four requests of a batch to Exchange at once (more to one mailbox get
  429 MailboxConcurrency), so more than four mailbox requests go as a ``dependsOn`` chain,
  which Exchange runs one after another in the same round trip;
* a batch saves round trips, not quota: Graph counts every request in it against the
  mailbox's 10,000 requests per 10 minutes.

The guarantees of a plain request hold per request: a write that is not safe to repeat
(``retry_ambiguous`` false) and got no clear answer (a 5xx inside the batch, or the whole
batch's answer lost) comes back as ``AmbiguousWrite`` for its caller to read back; reads and
idempotent writes are repeated. Only JSON bodies are sent in a batch (a MIME body would need
an encoding the docs leave open), so drafts are made with plain requests.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from connectors.graph_auth import IMMUTABLE_ID_HEADERS
from connectors.graph_http import (
    IDEMPOTENT_METHODS,
    AmbiguousWrite,
    Call,
    GraphFailure,
    failure_from,
    translate,
)
from service.errors import PreventServiceError, TransientError

if TYPE_CHECKING:
    from connectors.graph_http import GraphHttp

log = logging.getLogger("prevent_service.graph")

MAX_BATCH = 20
MAILBOX_CONCURRENCY = 4


@dataclass(frozen=True)
class Sub:
    """One request to go in a batch."""

    method: str
    path: str  # relative to the Graph version ("users/x/messages/…") or an absolute Graph URL
    call: Call
    json: Any = None
    headers: Mapping[str, str] | None = None
    params: Mapping[str, str] | None = None
    retry_ambiguous: bool | None = None

    @property
    def safe_to_repeat(self) -> bool:
        if self.retry_ambiguous is not None:
            return self.retry_ambiguous
        return self.method.upper() in IDEMPOTENT_METHODS


@dataclass
class Reply:
    """One request's answer from a batch."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # a dict for JSON, bytes for anything else, None when empty

    def json(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}

    @property
    def content(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else b""


Outcome = Reply | PreventServiceError


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if str(key).lower() == name.lower():
            return str(value)
    return None


def _relative(http: GraphHttp, sub: Sub) -> str:
    path = sub.path
    if path.startswith("https://"):
        if not path.startswith(http.base_url):
            raise ValueError(f"not a Graph URL of this service: {path[:60]}")
        path = path[len(http.base_url) :]
    url = "/" + path.lstrip("/")
    if sub.params:
        url += ("&" if "?" in url else "?") + urlencode(dict(sub.params), safe="$,'():@ ")
    return url


def _is_mailbox(url: str) -> bool:
    return url.lower().startswith("/users/")


def _payload(http: GraphHttp, subs: Sequence[Sub], ids: Sequence[int]) -> dict[str, Any]:
    requests_: list[dict[str, Any]] = []
    urls = {i: _relative(http, subs[i]) for i in ids}
    chain = sum(1 for i in ids if _is_mailbox(urls[i])) > MAILBOX_CONCURRENCY
    previous: str | None = None
    for i in ids:
        sub = subs[i]
        headers = dict(sub.headers or {})
        prefer = IMMUTABLE_ID_HEADERS["Prefer"]
        headers["Prefer"] = f"{headers['Prefer']}, {prefer}" if "Prefer" in headers else prefer
        entry: dict[str, Any] = {"id": str(i), "method": sub.method.upper(), "url": urls[i]}
        if sub.json is not None:
            headers["Content-Type"] = "application/json"
            entry["body"] = sub.json
        entry["headers"] = headers
        if chain and _is_mailbox(urls[i]):
            if previous is not None:
                entry["dependsOn"] = [previous]
            previous = str(i)
        requests_.append(entry)
    return {"requests": requests_}


def _reply(entry: Mapping[str, Any]) -> Reply:
    headers = {str(k): str(v) for k, v in (entry.get("headers") or {}).items()}
    body = entry.get("body")
    if isinstance(body, str) and "json" not in (_header(headers, "Content-Type") or "").lower():
        text = body
        try:
            body = base64.b64decode(text)
        except ValueError:
            body = text.encode()
    elif isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    return Reply(int(entry.get("status") or 0), headers, body)


def run(http: GraphHttp, subs: Sequence[Sub]) -> list[Outcome]:
    """Send ``subs`` in batches of up to 20; each outcome is a ``Reply`` (2xx/3xx) or the
    error a plain request would have raised, in the order given. A single request goes as a
    plain request: a batch of one is the same round trip with more to encode."""
    if len(subs) == 1:
        return [_plain(http, subs[0])]
    outcomes: list[Outcome | None] = [None] * len(subs)
    failures: dict[int, GraphFailure] = {}
    pending = list(range(len(subs)))
    attempt = 0
    waited = 0.0
    renewed = False
    while pending:
        attempt += 1
        again: list[int] = []
        hints: list[float] = []
        for start in range(0, len(pending), MAX_BATCH):
            ids = pending[start : start + MAX_BATCH]
            replies, lost = _post(http, subs, ids)
            if lost is not None:  # the whole batch's answer is missing
                for i in ids:
                    if subs[i].safe_to_repeat:
                        again.append(i)
                    else:
                        outcomes[i] = AmbiguousWrite(
                            f"{subs[i].call.what}: no clear answer from Graph ({lost}); it may "
                            "or may not have taken effect"
                        )
                hints.append(http._backoff(attempt))
                continue
            for i in ids:
                entry = replies.get(str(i))
                if entry is None:
                    outcomes[i] = TransientError(f"{subs[i].call.what}: missing from the batch")
                    continue
                reply = _reply(entry)
                if 200 <= reply.status < 400:
                    outcomes[i] = reply
                    continue
                if reply.status == 424:  # its dependency failed: it never ran
                    again.append(i)
                    continue
                failure = failure_from(
                    reply.status, reply.body, _header(reply.headers, "Retry-After")
                )
                failures[i] = failure
                if reply.status == 401 and not renewed:
                    renewed = True
                    log.info("graph: a batched request's token was refused (401); renewing it")
                    http.con.renew_token()
                    again.append(i)
                    continue
                if failure.is_lock or not (failure.status == 429 or failure.status >= 500):
                    outcomes[i] = translate(failure, subs[i].call)
                    continue
                refused = failure.status == 429 or (
                    failure.status == 503 and failure.retry_after is not None
                )
                if not refused and not subs[i].safe_to_repeat:
                    outcomes[i] = AmbiguousWrite(
                        f"{subs[i].call.what}: no clear answer from Graph (HTTP "
                        f"{failure.status} {failure.code}); it may or may not have taken effect"
                    )
                    continue
                again.append(i)
                hint = failure.retry_after
                hints.append(hint if hint is not None else http._backoff(attempt))
        pending = again
        if not pending:
            break
        delay = max(hints, default=0.0)
        if attempt >= http.max_attempts or waited + delay > http.max_wait:
            for i in pending:
                failure_i = failures.get(i)
                error = (
                    translate(failure_i, subs[i].call)
                    if failure_i is not None
                    else TransientError(f"{subs[i].call.what}: Microsoft 365 did not answer")
                )
                if isinstance(error, TransientError) and error.retry_after is None:
                    error.retry_after = delay
                outcomes[i] = error
            break
        if delay:
            log.warning(
                "graph: %d batched request(s) throttled or failed, retrying them in %.1fs "
                "(attempt %d)",
                len(pending),
                delay,
                attempt,
            )
            http.sleep(delay)
            waited += delay
    return [o if o is not None else TransientError("batch: no outcome") for o in outcomes]


def _plain(http: GraphHttp, sub: Sub) -> Outcome:
    try:
        response = http.request(
            sub.method,
            sub.path,
            sub.call,
            json=sub.json,
            headers=sub.headers,
            params=sub.params,
            retry_ambiguous=sub.retry_ambiguous,
        )
    except PreventServiceError as exc:
        return exc
    kind = (response.headers.get("Content-Type") or "").lower()
    body: Any = response.content or None
    if body is not None and "json" in kind:
        try:
            body = response.json()
        except ValueError:
            body = None
    return Reply(response.status_code, dict(response.headers), body)


def _post(
    http: GraphHttp, subs: Sequence[Sub], ids: Sequence[int]
) -> tuple[dict[str, Mapping[str, Any]], str | None]:
    """One ``POST /$batch``: the responses by id, or why the whole answer is missing."""
    payload = _payload(http, subs, ids)
    safe = all(subs[i].safe_to_repeat for i in ids)
    call = Call(what=f"send {len(ids)} request(s) in one batch")
    http.requests_made += len(ids) - 1  # Graph counts each request; request() adds the one
    try:
        response = http.request("POST", "$batch", call, json=payload, retry_ambiguous=safe)
    except AmbiguousWrite as exc:
        return {}, str(exc).split("(", 1)[-1].split(")", 1)[0]
    try:
        data = response.json()
    except ValueError:
        return {}, "a reply that is not JSON"
    out: dict[str, Mapping[str, Any]] = {}
    for entry in data.get("responses") or []:
        if isinstance(entry, Mapping) and entry.get("id") is not None:
            out[str(entry["id"])] = entry
    return out, None
