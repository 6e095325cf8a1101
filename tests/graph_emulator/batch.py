"""JSON batching: ``POST /v1.0/$batch`` as Microsoft documents it (concepts/json-batching.md).

    {"requests": [{"id": "1", "method": "GET", "url": "/users/x/messages/AAMk…/$value",
                   "headers": {"Prefer": "…"}},
                  {"id": "2", "method": "POST", "url": "/users/x/messages/AAMk…/move",
                   "headers": {"Content-Type": "application/json"},
                   "body": {"destinationId": "…"}, "dependsOn": ["1"]}]}
    → 200 {"responses": [{"id": "2", "status": 201, "headers": {…}, "body": {…}},
                          {"id": "1", "status": 200, "headers": {"Content-Type":
                           "application/octet-stream"}, "body": "<base64 of the bytes>"}]}

What is emulated, each from the docs or from Microsoft's answers about them:
- at most 20 requests (more: 400 for the whole batch); ids required and unique, compared
  case-insensitively (a duplicate: 400); ``url`` relative to the version (``/users/…``); a
  ``body`` needs a ``Content-Type`` header (else 400 for that request); a JSON body is an
  object, any other body is a base64 string of the bytes;
- the outer call answers 200 even when requests fail; each has its own status, headers, body;
  responses come back in any order (here: reversed, so a client must match by ``id``);
- a request whose ``dependsOn`` request failed (not 2xx) gets 424 Failed Dependency and is not
  run; ``dependsOn`` must name requests earlier in the batch;
- non-JSON response bodies (a message's ``$value``) are base64-encoded;
- Outlook: Graph hands at most four requests of a batch to Exchange at once; requests that do
  not wait on another (no ``dependsOn``) beyond the fourth to a mailbox get 429
  ``ApplicationThrottled`` "Application is over its MailboxConcurrency limit." with their own
  ``Retry-After`` (Microsoft Q&A 734143 and 1660054). A ``dependsOn`` chain runs one at a time;
- authorisation is the outer request's token; each request is throttled and logged on its
  own (the request log records the outer call and every request in it, ``batch`` set to the
  outer call's request id, so counts can be of round trips or of requests Graph counts);
- injected faults (``add_fault``) match requests inside a batch as they match plain requests;
  a fault with status 0 (no answer) drops the whole batch's connection.
What is not: real parallel execution and its timing; ``atomicityGroup`` (beta only).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .common import (
    GraphError,
    RecordedRequest,
    Request,
    Response,
    error_body,
    json_response,
    odata_keys_to_segments,
)
from .faults import DEFAULT_RETRY_AFTER, Fault

MAX_REQUESTS = 20
MAILBOX_CONCURRENCY = 4


class DropConnection(Exception):
    """A fault with status 0 inside a batch: the whole answer is lost."""


def _is_mailbox(url: str) -> str | None:
    parts = [p for p in url.split("/") if p]
    if len(parts) >= 3 and parts[0].lower() == "users":
        return parts[1].lower()
    return None


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def handle_batch(
    outer: Request,
    run: Callable[[Request], Response],
    take_fault: Callable[[Request], Fault | None],
    record: Callable[[RecordedRequest], None],
) -> Response:
    data = outer.json
    if not isinstance(data, dict) or not isinstance(data.get("requests"), list):
        raise GraphError(400, "BadRequest", "Invalid batch payload format.")
    items: list[Any] = data["requests"]
    if not items:
        raise GraphError(400, "BadRequest", "Invalid batch payload format.")
    if len(items) > MAX_REQUESTS:
        raise GraphError(
            400, "BadRequest", f"The number of batch requests exceeds the limit of {MAX_REQUESTS}."
        )
    seen: set[str] = set()
    for item in items:
        rid = str(item.get("id") or "") if isinstance(item, dict) else ""
        if not rid or not isinstance(item.get("method"), str) or not item.get("url"):
            raise GraphError(400, "BadRequest", "Each batch request needs an id, method and url.")
        if rid.lower() in seen:
            raise GraphError(400, "BadRequest", f"Batch request id '{rid}' is not unique.")
        depends = item.get("dependsOn") or []
        if not isinstance(depends, list) or any(str(d).lower() not in seen for d in depends):
            raise GraphError(
                400, "BadRequest", f"dependsOn of request '{rid}' names no earlier request."
            )
        seen.add(rid.lower())

    statuses: dict[str, int] = {}
    running: dict[str, int] = {}  # mailbox → requests handed to Exchange at once
    out: list[dict[str, Any]] = []
    for item in items:
        rid = str(item["id"])
        depends = [str(d).lower() for d in item.get("dependsOn") or []]
        if any(not 200 <= statuses.get(d, 0) < 300 for d in depends):
            statuses[rid.lower()] = 424
            out.append(_sub(rid, 424, {}, _error(424, "FailedDependency", outer)))
            continue
        sub = _request(outer, item)
        record(
            RecordedRequest(
                sub.method,
                sub.raw_path,
                dict(sub.query),
                dict(sub.headers),
                sub.json,
                sub.body,
                batch=outer.request_id,
            )
        )
        mailbox = _is_mailbox(item["url"])
        if mailbox is not None and not depends:
            running[mailbox] = running.get(mailbox, 0) + 1
            if running[mailbox] > MAILBOX_CONCURRENCY:
                body = error_body(
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    sub,
                )
                statuses[rid.lower()] = 429
                out.append(_sub(rid, 429, {"Retry-After": DEFAULT_RETRY_AFTER}, body))
                continue
        response = _run(sub, run, take_fault)
        statuses[rid.lower()] = response.status
        out.append(_encode(rid, response))
    out.reverse()  # "responses might appear in a different order": clients match by id
    return json_response(200, {"responses": out})


def _request(outer: Request, item: dict[str, Any]) -> Request:
    url = str(item["url"])
    # Documented as relative; an absolute URL is refused for that request only.
    raise_at = url if "://" in url else ""
    split = urlsplit(url if url.startswith("/") else "/" + url)
    raw_path = "/v1.0" + unquote(split.path)
    headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
    authorization = outer.header("Authorization")
    if authorization:
        headers["Authorization"] = authorization
    body = item.get("body")
    raw: bytes = b""
    if body is not None:
        content_type = (_header(headers, "Content-Type") or "").lower()
        if isinstance(body, dict | list):
            raw = json.dumps(body).encode()
        elif isinstance(body, str) and "json" not in content_type:
            try:
                raw = base64.b64decode(body, validate=True)
            except ValueError:
                raw = b"\0invalid-base64"
        else:
            raw = str(body).encode()
    request = Request(
        method=str(item["method"]).upper(),
        path=odata_keys_to_segments(raw_path),
        raw_path=raw_path,
        query=dict(parse_qsl(split.query, keep_blank_values=True)),
        headers=headers,
        body=raw,
        base_url=outer.base_url,
    )
    request.batch_problem = (  # type: ignore[attr-defined]
        "absolute"
        if raise_at
        else "content-type"
        if body is not None and not _header(headers, "Content-Type")
        else "base64"
        if raw == b"\0invalid-base64"
        else ""
    )
    return request


def _run(
    sub: Request, run: Callable[[Request], Response], take_fault: Callable[[Request], Fault | None]
) -> Response:
    problem = getattr(sub, "batch_problem", "")
    if problem:
        message = {
            "absolute": "The batch request url must be relative to the service root.",
            "content-type": "A request with a body needs a Content-Type header.",
            "base64": "A non-JSON body must be base64-encoded.",
        }[problem]
        return json_response(400, error_body("BadRequest", message, sub))
    fault = take_fault(sub)
    if fault is not None and fault.status == 0:
        if fault.after_commit:
            run(sub)
        raise DropConnection
    if fault is not None and not fault.after_commit:
        return fault.response(sub)
    response = run(sub)
    return fault.response(sub) if fault is not None else response


def _encode(rid: str, response: Response) -> dict[str, Any]:
    headers = dict(response.headers)
    content_type = (_header(headers, "Content-Type") or "").lower()
    body: Any = None
    if response.body:
        if "json" in content_type:
            body = json.loads(response.body)
        else:
            body = base64.b64encode(response.body).decode()
    return _sub(rid, response.status, headers, body)


def _sub(rid: str, status: int, headers: dict[str, str], body: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": rid, "status": status, "headers": headers}
    if body is not None:
        entry["body"] = body
    return entry


def _error(status: int, code: str, req: Request) -> dict[str, Any]:
    return error_body(code, "Failed dependency." if status == 424 else code, req)
