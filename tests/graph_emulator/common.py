"""Request/response types, Graph's error envelope and a small path router shared by the handlers."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

GRAPH_JSON = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """Graph's timestamp form: `2024-05-01T10:00:00Z` (second precision, UTC)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RecordedRequest:
    """One request as the emulator saw it (for asserting request counts and headers)."""

    method: str
    path: str  # percent-decoded, without host, repeated slashes collapsed
    query: dict[str, str]  # decoded keys, e.g. {"$top": "5"}
    headers: dict[str, str]
    json: Any
    body: bytes
    batch: str | None = None  # + inside a $batch: the outer call's request id; else None


@dataclass
class Request:
    method: str
    path: str  # decoded path with OData keys `x('id')` turned into `x/id`
    raw_path: str  # decoded path as sent (slashes collapsed), for faults and the log
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    base_url: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    app: Any = None  # auth.App once the bearer token is checked

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lname:
                return value
        return None

    @property
    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def json_object(self) -> dict[str, Any]:
        data = self.json
        if not isinstance(data, dict):
            raise GraphError(400, "BadRequest", "Empty or invalid JSON payload in the request.")
        return data

    @property
    def prefer(self) -> list[str]:
        value = self.header("Prefer") or ""
        return [p.strip() for p in value.split(",") if p.strip()]

    @property
    def immutable_ids(self) -> bool:
        return any(p.replace(" ", "").lower() == 'idtype="immutableid"' for p in self.prefer)

    @property
    def max_page_size(self) -> int | None:
        for p in self.prefer:
            name, _, value = p.partition("=")
            if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
                return int(value.strip())
        return None

    def select(self) -> list[str] | None:
        value = self.query.get("$select")
        if not value:
            return None
        return [s.strip() for s in value.split(",") if s.strip()]

    def int_param(self, name: str, default: int | None = None) -> int | None:
        value = self.query.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError as exc:
            raise GraphError(
                400, "BadRequest", f"Invalid value '{value}' for query option {name}."
            ) from exc

    def url_with(self, path: str, **params: str) -> str:
        """An absolute link back to this server (for nextLink, deltaLink, downloadUrl)."""
        link = self.base_url + quote(path, safe="/:'(),=@!$")
        if params:
            link += "?" + urlencode(params, safe="$'(),:@!")
        return link


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    all_headers = {"Content-Type": GRAPH_JSON}
    all_headers.update(headers or {})
    return Response(status, json.dumps(obj).encode(), all_headers)


def empty_response(status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(status, b"", dict(headers or {}))


def error_body(
    code: str, message: str, req: Request | None, inner_code: str | None = None
) -> dict[str, Any]:
    """Graph's error envelope (concepts/errors.md):

    {"error": {"code": "itemNotFound", "message": "The resource could not be found.",
               "innerError": {"date": "2024-05-01T10:00:00", "request-id": "…",
                              "client-request-id": "…"}}}
    """
    inner: dict[str, Any] = {}
    if inner_code:
        inner["code"] = inner_code
    inner["date"] = utcnow().strftime("%Y-%m-%dT%H:%M:%S")
    inner["request-id"] = req.request_id if req else str(uuid.uuid4())
    client_request_id = (req.header("client-request-id") if req else None) or inner["request-id"]
    inner["client-request-id"] = client_request_id
    return {"error": {"code": code, "message": message, "innerError": inner}}


class GraphError(Exception):
    """Raised by handlers; becomes Graph's JSON error envelope with this status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        inner_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.inner_code = inner_code
        self.headers = headers or {}

    def to_response(self, req: Request | None) -> Response:
        return json_response(
            self.status, error_body(self.code, self.message, req, self.inner_code), self.headers
        )


# --- a tiny segment router -------------------------------------------------------------------

Handler = Callable[[Request, dict[str, str]], Response]


@dataclass
class Route:
    method: str
    segments: list[str]
    handler: Handler


class Router:
    """Routes `a/{x}/b` patterns: literals match case-insensitively (Graph paths do)."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append(Route(method, pattern.strip("/").split("/"), handler))

    def dispatch(self, req: Request, segments: list[str]) -> Response | None:
        allowed = False
        for route in self.routes:
            params = _match(route.segments, segments)
            if params is None:
                continue
            if route.method != req.method:
                allowed = True
                continue
            return route.handler(req, params)
        if allowed:
            raise GraphError(405, "BadRequest", f"The method {req.method} is not allowed here.")
        return None


def _match(pattern: list[str], segments: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for pat, seg in zip(pattern, segments, strict=True):
        if pat.startswith("{") and pat.endswith("}"):
            if not seg:
                return None
            params[pat[1:-1]] = seg
        elif pat.lower() != seg.lower():
            return None
    return params


_ODATA_KEY = re.compile(
    r"(?i)\b(mailFolders|childFolders|messages|attachments|tables|worksheets|columns|items"
    r"|drives|sites|names|users)\('((?:[^']|'')*)'\)"
)


def odata_keys_to_segments(path: str) -> str:
    """`mailFolders('AAMk')/messages` -> `mailFolders/AAMk/messages` (Graph accepts both)."""
    return _ODATA_KEY.sub(lambda m: m.group(1) + "/" + m.group(2).replace("''", "'"), path)


def paged(items: list[Any], skip: int, top: int) -> tuple[list[Any], bool]:
    page = items[skip : skip + top]
    return page, skip + top < len(items)


def select_fields(obj: dict[str, Any], select: list[str] | None, keep: tuple[str, ...]) -> dict:
    if not select:
        return obj
    wanted = {s.lower() for s in select} | {k.lower() for k in keep}
    return {k: v for k, v in obj.items() if k.lower() in wanted or k.startswith("@odata")}
