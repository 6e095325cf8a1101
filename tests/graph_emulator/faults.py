"""Injected faults: the next matching request(s) get this status, with Graph's documented body."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

from .common import GRAPH_JSON, Request, Response, error_body

# 429 from concepts/throttling.md (Retry-After may be fractional there: "2.128"):
# {"error": {"code": "TooManyRequests", "innerError": {"code": "429", "date": "2020-08-18T12:51:51",
#  "message": "Please retry after", "request-id": "94fb3b52-…", "status": "429"},
#  "message": "Please retry again later."}}
DEFAULT_RETRY_AFTER = "1"

# Seen in public client code for a workbook someone holds open (not in Microsoft's docs).
EDIT_MODE_LOCK_MESSAGE = "Alex Example is editing this workbook. Please try again later."


def edit_mode_lock_body() -> dict[str, Any]:
    return {"error": {"code": "EditModeCannotAcquireLock", "message": EDIT_MODE_LOCK_MESSAGE}}


def _is_mail(path: str) -> bool:
    return bool(re.search(r"(?i)/users/[^/]+/(mailfolders|messages|sendmail)", path))


def _is_workbook(path: str) -> bool:
    return "/workbook" in path.lower()


def default_fault_body(status: int, req: Request) -> dict[str, Any]:
    """The body Graph documents for each status, with mail (Exchange) and drive spellings."""
    mail = _is_mail(req.raw_path)
    if status == 429:
        body = error_body("TooManyRequests", "Please retry again later.", req)
        body["error"]["innerError"].update(
            {"code": "429", "message": "Please retry after", "status": "429"}
        )
        return body
    table: dict[int, tuple[str, str, str | None]] = {
        400: ("invalidRequest", "The request is malformed or incorrect.", None),
        401: (
            "InvalidAuthenticationToken",
            "Lifetime validation failed, the token is expired.",
            None,
        ),
        403: (
            ("ErrorAccessDenied", "Access is denied. Check credentials and try again.", None)
            if mail
            else (
                "accessDenied",
                "The caller does not have permission to perform the action.",
                None,
            )
        ),
        404: (
            ("ErrorItemNotFound", "The specified object was not found in the store.", None)
            if mail
            else ("itemNotFound", "The resource could not be found.", None)
        ),
        409: (
            "conflict",
            "The request failed due to conflicts with other clients that are accessing the "
            "workbook.",
            "accessConflict",
        ),
        410: (
            "syncStateNotFound",
            "The sync state of the delta query is not found or has expired; start a new sync.",
            None,
        ),
        412: (
            "resourceModified",
            "ETag does not match current item's value",
            "entityTagDoesNotMatch",
        ),
        423: ("resourceLocked", "The resource you are attempting to access is locked", None),
        500: ("generalException", "An unspecified error has occurred.", None),
        502: (
            "badGateway",
            "The server received an invalid response from the upstream server.",
            None,
        ),
        503: (
            "serviceNotAvailable",
            "The service is temporarily unavailable for maintenance or is overloaded. You may "
            "repeat the request after a delay, the length of which may be specified in a "
            "Retry-After header.",
            None,
        ),
        504: (
            "gatewayTimeout",
            "The server, while acting as a proxy, did not receive a timely response from the "
            "upstream server it needed to access in attempting to complete the request.",
            "gatewayTimeoutUncategorized" if _is_workbook(req.raw_path) else None,
        ),
    }
    code, message, inner = table.get(status, ("generalException", f"Injected {status}.", None))
    return error_body(code, message, req, inner)


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    headers: dict[str, str] | None
    body: dict[str, Any] | str | bytes | None
    after_commit: bool
    delay: float

    def response(self, req: Request) -> Response:
        headers = dict(self.headers or {})
        if self.status == 429 and not any(k.lower() == "retry-after" for k in headers):
            headers["Retry-After"] = DEFAULT_RETRY_AFTER
        body = self.body if self.body is not None else default_fault_body(self.status, req)
        if isinstance(body, dict):
            headers.setdefault("Content-Type", GRAPH_JSON)
            return Response(self.status, json.dumps(body).encode(), headers)
        raw = body.encode() if isinstance(body, str) else body
        headers.setdefault("Content-Type", "text/html")
        return Response(self.status, raw, headers)


class Faults:
    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.pending: list[Fault] = []

    def add(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | str | bytes | None = None,
        after_commit: bool = False,
        delay: float = 0.0,
    ) -> None:
        fault = Fault(
            method.upper(),
            re.compile(path_regex),
            status,
            times,
            headers,
            body,
            after_commit,
            delay,
        )
        with self.lock:
            self.pending.append(fault)

    def take(self, req: Request) -> Fault | None:
        """First pending fault for this method whose regex finds the path (or path?query)."""
        target = req.raw_path
        if req.query:
            target += "?" + "&".join(f"{k}={v}" for k, v in req.query.items())
        with self.lock:
            for fault in self.pending:
                if fault.method not in ("*", req.method):
                    continue
                if not fault.pattern.search(target):
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self.pending.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        with self.lock:
            self.pending.clear()
