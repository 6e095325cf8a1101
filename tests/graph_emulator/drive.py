"""SharePoint sites and their default document library: items by path or id, content download
(302 to a pre-authenticated URL), uploads with If-Match, upload sessions and file locks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from .auth import grant_allows
from .common import (
    GraphError,
    Request,
    Response,
    empty_response,
    iso,
    json_response,
    select_fields,
    utcnow,
)

MIME_TYPES = {
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".xlsm": "application/vnd.ms-excel.sheet.macroEnabled.12",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".pdf": "application/pdf",
}
DOWNLOAD_URL_LIFETIME = 3600.0  # seconds; SharePoint's pre-authenticated URLs last about an hour
UPLOAD_SESSION_LIFETIME = 3600.0

_SITE_BY_PATH = re.compile(r"^(?P<host>[^/:]+):(?P<path>/[^:]*)(?::(?P<after>/.*)?)?$")
_ITEM = re.compile(
    r"^/(?:root|items/(?P<id>[^/:]+))(?::(?P<rel>/[^:]*):?)?(?P<tail>/.*)?$", re.IGNORECASE
)


def _mime_type(name: str) -> str:
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    return MIME_TYPES.get(suffix, "application/octet-stream")


def _item_id() -> str:
    return "01" + base64.b32encode(secrets.token_bytes(20)).decode()[:32]


@dataclass
class Item:
    id: str
    name: str
    parent_id: str | None
    is_folder: bool
    content: bytes = b""
    guid: str = field(default_factory=lambda: str(uuid.uuid4()).upper())
    version: int = 1  # eTag: changes with content and metadata
    content_version: int = 1  # cTag: changes with content
    created: datetime = field(default_factory=utcnow)
    modified: datetime = field(default_factory=utcnow)
    locked: bool = False

    @property
    def etag(self) -> str:
        return f'"{{{self.guid}}},{self.version}"'

    @property
    def ctag(self) -> str:
        return f'"c:{{{self.guid}}},{self.content_version}"'


@dataclass
class Drive:
    id: str
    site: Site
    items: dict[str, Item] = field(default_factory=dict)
    root_id: str = ""

    def children(self, parent_id: str) -> list[Item]:
        return [i for i in self.items.values() if i.parent_id == parent_id]

    def child(self, parent_id: str, name: str) -> Item | None:
        for item in self.children(parent_id):
            if item.name.casefold() == name.casefold():  # SharePoint names are case-insensitive
                return item
        return None

    def path_of(self, item: Item) -> str:
        """ "/Registers/Concerns.xlsx" ("" for the root)."""
        parts: list[str] = []
        current: Item | None = item
        while current is not None and current.parent_id is not None:
            parts.append(current.name)
            current = self.items.get(current.parent_id)
        return "/" + "/".join(reversed(parts)) if parts else ""


@dataclass
class Site:
    id: str
    host: str
    path: str
    drive: Drive | None = None
    created: datetime = field(default_factory=utcnow)

    @property
    def web_url(self) -> str:
        return f"https://{self.host}{self.path}"


@dataclass
class UploadSession:
    drive_id: str
    item_id: str | None  # replacing this item, or creating parent/name
    parent_id: str
    name: str
    if_match: str | None
    expires: float
    data: bytearray = field(default_factory=bytearray)


class DriveService:
    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.sites: dict[str, Site] = {}
        self.drives: dict[str, Drive] = {}
        self.uploads: dict[str, UploadSession] = {}
        self.url_key = secrets.token_bytes(32)
        self.workbooks: Any = None  # WorkbookService, set by the emulator

    def reset(self) -> None:
        self.sites.clear()
        self.drives.clear()
        self.uploads.clear()

    # --- test-side API ------------------------------------------------------------------------

    def add_site(self, host: str, site_path: str) -> str:
        path = "/" + site_path.strip("/")
        with self.lock:
            site = Site(f"{host},{uuid.uuid4()},{uuid.uuid4()}", host.lower(), path)
            drive = Drive("b!" + base64.urlsafe_b64encode(secrets.token_bytes(48)).decode(), site)
            root = Item(_item_id(), "root", None, True)
            drive.items[root.id] = root
            drive.root_id = root.id
            site.drive = drive
            self.sites[site.id] = site
            self.drives[drive.id] = drive
            return site.id

    def site_by_path(self, host: str, site_path: str) -> Site:
        wanted = "/" + site_path.strip("/")
        for site in self.sites.values():
            if site.host == host.lower() and site.path.lower() == wanted.lower():
                return site
        raise KeyError(f"no site {host}{wanted}: call add_site first")

    def _file(self, host: str, site_path: str, file_path: str) -> tuple[Drive, Item]:
        drive = self._site_drive(self.site_by_path(host, site_path))
        item = self._walk(drive, drive.items[drive.root_id], file_path)
        if item is None:
            raise KeyError(f"no file {file_path} in {host}{site_path}")
        return drive, item

    def put_file(self, host: str, site_path: str, file_path: str, data: bytes) -> str:
        with self.lock:
            drive = self._site_drive(self.site_by_path(host, site_path))
            parent, name = self._ensure_parent(drive, drive.items[drive.root_id], file_path)
            item = drive.child(parent.id, name)
            if item is None:
                item = Item(_item_id(), name, parent.id, False, data)
                drive.items[item.id] = item
            else:
                self.write_content(item, data)
            return item.id

    def get_file(self, host: str, site_path: str, file_path: str) -> bytes:
        with self.lock:
            return self._file(host, site_path, file_path)[1].content

    def file_item(self, host: str, site_path: str, file_path: str, base_url: str) -> dict:
        with self.lock:
            drive, item = self._file(host, site_path, file_path)
            return self.render_item(drive, item, base_url)

    def set_file_locked(self, host: str, site_path: str, file_path: str, locked: bool) -> None:
        with self.lock:
            self._file(host, site_path, file_path)[1].locked = locked

    def write_content(self, item: Item, data: bytes) -> None:
        """Every content change bumps both eTag and cTag, as SharePoint does."""
        item.content = bytes(data)
        item.version += 1
        item.content_version += 1
        item.modified = utcnow()

    # --- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _site_drive(site: Site) -> Drive:
        assert site.drive is not None
        return site.drive

    def _walk(self, drive: Drive, start: Item, rel: str) -> Item | None:
        item: Item | None = start
        for part in [p for p in rel.split("/") if p]:
            if item is None:
                return None
            item = drive.child(item.id, part)
        return item

    def _ensure_parent(self, drive: Drive, start: Item, rel: str) -> tuple[Item, str]:
        """The folder that will hold `rel`'s last part, creating missing folders as Graph does."""
        parts = [p for p in rel.split("/") if p]
        if not parts:
            raise GraphError(400, "invalidRequest", "A file name is required.")
        folder = start
        for part in parts[:-1]:
            child = drive.child(folder.id, part)
            if child is None:
                child = Item(_item_id(), part, folder.id, True)
                drive.items[child.id] = child
            elif not child.is_folder:
                raise GraphError(409, "nameAlreadyExists", f"'{part}' is a file, not a folder.")
            folder = child
        return folder, parts[-1]

    def download_url(self, drive: Drive, item: Item, base_url: str) -> str:
        payload = base64.urlsafe_b64encode(
            json.dumps([drive.id, item.id, time.time() + DOWNLOAD_URL_LIFETIME]).encode()
        ).decode()
        sig = hmac.new(self.url_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{base_url}/_download/{payload}.{sig}"

    def _size(self, drive: Drive, item: Item) -> int:
        if not item.is_folder:
            return len(item.content)
        return sum(self._size(drive, child) for child in drive.children(item.id))

    def render_item(self, drive: Drive, item: Item, base_url: str) -> dict[str, Any]:
        """driveItem (api-reference/v1.0/api/driveitem-get.md), e.g.
        {"@microsoft.graph.downloadUrl": "https://…", "createdDateTime": "…",
         "eTag": "\"{86EB4C8E-D20D-46B9-AD41-23B8868DDA8A},1\"", "id": "01NKDM7HMOJTVYMD…",
         "lastModifiedDateTime": "…", "name": "Concerns.xlsx", "webUrl": "https://…",
         "cTag": "\"c:{86EB4C8E-D20D-46B9-AD41-23B8868DDA8A},2\"", "size": 8504,
         "parentReference": {"driveType": "documentLibrary", "driveId": "b!…", "id": "01…",
                             "path": "/drives/b!…/root:/Registers", "siteId": "…"},
         "file": {"mimeType": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
         "fileSystemInfo": {"createdDateTime": "…", "lastModifiedDateTime": "…"}}"""
        site = drive.site
        data: dict[str, Any] = {
            "@odata.context": f"{base_url}/v1.0/$metadata#drives('{drive.id}')/items/$entity",
        }
        if not item.is_folder:
            data["@microsoft.graph.downloadUrl"] = self.download_url(drive, item, base_url)
        path = drive.path_of(item)
        data.update(
            {
                "createdDateTime": iso(item.created),
                "eTag": item.etag,
                "id": item.id,
                "lastModifiedDateTime": iso(item.modified),
                "name": item.name,
                "webUrl": f"{site.web_url}/Shared%20Documents{quote(path)}",
                "cTag": item.ctag,
                "size": self._size(drive, item),
                "createdBy": {"user": {"displayName": "System Account"}},
                "lastModifiedBy": {"user": {"displayName": "System Account"}},
                "fileSystemInfo": {
                    "createdDateTime": iso(item.created),
                    "lastModifiedDateTime": iso(item.modified),
                },
            }
        )
        parent = drive.items.get(item.parent_id) if item.parent_id else None
        if parent is None:
            data["parentReference"] = {"driveType": "documentLibrary", "driveId": drive.id}
            data["root"] = {}
            data["name"] = "root"
        else:
            data["parentReference"] = {
                "driveType": "documentLibrary",
                "driveId": drive.id,
                "id": parent.id,
                "name": parent.name if parent.parent_id else "Shared Documents",
                "path": f"/drives/{drive.id}/root:{drive.path_of(parent)}",
                "siteId": site.id,
            }
        if item.is_folder:
            data["folder"] = {"childCount": len(drive.children(item.id))}
        else:
            data["file"] = {"mimeType": _mime_type(item.name)}
        return data

    def _render_site(self, site: Site, req: Request) -> dict[str, Any]:
        """{"id": "contoso.sharepoint.com,2C712604-…,2D2244C3-…", "name": "Safety",
        "displayName": "Safety", "webUrl": "https://contoso.sharepoint.com/sites/Safety",
        "siteCollection": {"hostname": "contoso.sharepoint.com"}, "root": {}}"""
        name = site.path.rstrip("/").rsplit("/", 1)[-1] or site.host
        return {
            "@odata.context": f"{req.base_url}/v1.0/$metadata#sites/$entity",
            "createdDateTime": iso(site.created),
            "description": "",
            "id": site.id,
            "lastModifiedDateTime": iso(site.created),
            "name": name,
            "webUrl": site.web_url,
            "displayName": name,
            "root": {},
            "siteCollection": {"hostname": site.host},
        }

    def _render_drive(self, drive: Drive, req: Request) -> dict[str, Any]:
        """{"id": "b!t18F8ybsHUq1z3LTz8xvZqP8zaSWjkFNhsME-Fepo75dTf9vQKfeRblBZjoSQrd7",
        "driveType": "documentLibrary", "name": "Documents", "webUrl": "…/Shared%20Documents"}"""
        return {
            "@odata.context": f"{req.base_url}/v1.0/$metadata#drives/$entity",
            "createdDateTime": iso(drive.site.created),
            "description": "",
            "id": drive.id,
            "lastModifiedDateTime": iso(drive.site.created),
            "name": "Documents",
            "webUrl": f"{drive.site.web_url}/Shared%20Documents",
            "driveType": "documentLibrary",
            "createdBy": {"user": {"displayName": "System Account"}},
            "quota": {"deleted": 0, "remaining": 10**12, "state": "normal", "total": 10**12},
        }

    # --- request entry ------------------------------------------------------------------------

    def handle(self, req: Request, path: str) -> Response | None:
        """`path` is what follows /v1.0/: sites/…, drives/…"""
        with self.lock:
            head, _, rest = path.partition("/")
            if head.lower() == "sites":
                site, after = self._resolve_site(rest)
                self._require(req, site, write=False)
                if after in ("", "/"):
                    return self._get_only(req, json_response(200, self._render_site(site, req)))
                drive = self._site_drive(site)
                lower = after.lower()
                if lower == "/drive":
                    return self._get_only(req, json_response(200, self._render_drive(drive, req)))
                if lower == "/drives":
                    return self._get_only(
                        req, json_response(200, {"value": [self._render_drive(drive, req)]})
                    )
                if lower.startswith("/drive/"):
                    return self._item_request(req, site, drive, after[len("/drive") :])
                return None
            if head.lower() == "drives":
                drive_id, _, after = rest.partition("/")
                found = self.drives.get(drive_id)
                if found is None:
                    raise GraphError(404, "itemNotFound", "The resource could not be found.")
                self._require(req, found.site, write=False)
                if after == "":
                    return self._get_only(req, json_response(200, self._render_drive(found, req)))
                return self._item_request(req, found.site, found, "/" + after)
            return None

    @staticmethod
    def _get_only(req: Request, response: Response) -> Response:
        if req.method != "GET":
            raise GraphError(405, "invalidRequest", f"{req.method} is not allowed here.")
        return response

    def _resolve_site(self, rest: str) -> tuple[Site, str]:
        """sites/{host}:/{path}[:[/…]]  or  sites/{host},{guid},{guid}[/…]"""
        not_found = GraphError(404, "itemNotFound", "Requested site could not be found")
        match = _SITE_BY_PATH.match(rest)
        if match:
            try:
                site = self.site_by_path(match["host"], match["path"])
            except KeyError:
                raise not_found from None
            return site, match["after"] or ""
        site_id, _, after = rest.partition("/")
        site = self.sites.get(site_id)
        if site is None:
            host_sites = [s for s in self.sites.values() if s.host == site_id.lower()]
            root = [s for s in host_sites if s.path == "/"]
            if not root:
                raise not_found
            site = root[0]
        return site, ("/" + after) if after else ""

    def _require(self, req: Request, site: Site, *, write: bool) -> None:
        if not grant_allows(req.app, site.id, write):
            raise GraphError(403, "accessDenied", "Access denied")

    def _item_request(self, req: Request, site: Site, drive: Drive, rest: str) -> Response:
        match = _ITEM.match(rest)
        if not match:
            raise GraphError(
                400, "invalidRequest", f"Resource not found for the segment '{rest.split('/')[1]}'."
            )
        base = drive.items.get(match["id"]) if match["id"] else drive.items[drive.root_id]
        if base is None:
            raise GraphError(404, "itemNotFound", "The resource could not be found.")
        rel = match["rel"] or ""
        item = self._walk(drive, base, rel) if rel else base
        tail = match["tail"] or ""
        lower = tail.lower()
        if lower.startswith("/workbook"):
            if item is None:
                raise GraphError(404, "itemNotFound", "The resource could not be found.")
            return self.workbooks.handle(req, site, drive, item, tail[len("/workbook") :])
        if req.method == "GET" and lower == "":
            item = self._existing(item)
            data = self.render_item(drive, item, req.base_url)
            return json_response(200, select_fields(data, req.select(), ()))
        if req.method == "DELETE" and lower == "":
            # DELETE …/items/{id} -> 204: to the site's recycle bin; the id answers 404 after.
            self._require(req, site, write=True)
            item = self._existing(item)
            if item.locked:
                raise GraphError(423, "resourceLocked", "The resource is locked.")
            del drive.items[item.id]
            return empty_response(204)
        if req.method == "GET" and lower == "/children":
            item = self._existing(item)
            value = [
                select_fields(self.render_item(drive, c, req.base_url), req.select(), ())
                for c in drive.children(item.id)
            ]
            return json_response(200, {"value": value})
        if req.method == "GET" and lower == "/content":
            item = self._existing(item)
            if item.is_folder:
                raise GraphError(400, "invalidRequest", "A folder has no content.")
            # 302 Found, Location: the pre-authenticated download URL (no bearer needed there).
            return empty_response(302, {"Location": self.download_url(drive, item, req.base_url)})
        if req.method == "PUT" and lower == "/content":
            self._require(req, site, write=True)
            return self._put_content(req, drive, base, rel, item)
        if req.method == "POST" and lower == "/children":
            self._require(req, site, write=True)
            return self._create_child(req, drive, self._existing(item))
        if req.method == "POST" and lower == "/createuploadsession":
            self._require(req, site, write=True)
            return self._create_upload_session(req, drive, base, rel, item)
        raise GraphError(400, "invalidRequest", f"{req.method} {tail or '/'} is not supported.")

    @staticmethod
    def _existing(item: Item | None) -> Item:
        if item is None:
            raise GraphError(404, "itemNotFound", "The resource could not be found.")
        return item

    @staticmethod
    def check_preconditions(req: Request, item: Item | None) -> None:
        """If-Match / If-None-Match on the eTag or cTag, as documented for uploads:
        412 {"error": {"code": "resourceModified", "message": "ETag does not match current
        item's value", "innerError": {"code": "entityTagDoesNotMatch", …}}}"""
        if_match = (req.header("If-Match") or "").strip()
        if_none = (req.header("If-None-Match") or "").strip()
        for value in (if_match, if_none):
            if value and value != "*" and not value.startswith(('"', 'W/"')):
                raise GraphError(
                    400,
                    "invalidRequest",
                    "ETags must be quoted strings",
                    inner_code="malformedEntityTag",
                )
        if if_match:
            current = (item.etag, item.ctag) if item else ()
            if item is None or (if_match != "*" and if_match not in current):
                raise GraphError(
                    412,
                    "resourceModified",
                    "ETag does not match current item's value",
                    inner_code="entityTagDoesNotMatch",
                )
        if if_none and item is not None and (if_none == "*" or if_none in (item.etag, item.ctag)):
            raise GraphError(
                412,
                "resourceModified",
                "The resource already exists or matches the given ETag",
                inner_code="entityTagDoesNotMatch",
            )

    @staticmethod
    def _locked(item: Item | None) -> None:
        """423 as seen when a desktop client holds the file (not in Microsoft's docs)."""
        if item is not None and item.locked:
            raise GraphError(
                423, "resourceLocked", "The resource you are attempting to access is locked"
            )

    def _put_content(
        self, req: Request, drive: Drive, base: Item, rel: str, item: Item | None
    ) -> Response:
        """PUT …/items/{parent-id}:/{name}:/content or …/items/{id}/content -> 201 (new) or
        200 (replaced) driveItem."""
        self.check_preconditions(req, item)
        self._locked(item)
        conflict = (req.query.get("@microsoft.graph.conflictBehavior") or "replace").lower()
        if item is not None:
            if item.is_folder:
                raise GraphError(400, "invalidRequest", "Cannot upload content to a folder.")
            if conflict == "fail":
                raise GraphError(
                    409, "nameAlreadyExists", "The specified item name already exists."
                )
            self.write_content(item, req.body)
            return json_response(200, self.render_item(drive, item, req.base_url))
        parent, name = self._ensure_parent(drive, base, rel)
        created = Item(_item_id(), name, parent.id, False, req.body)
        drive.items[created.id] = created
        return json_response(201, self.render_item(drive, created, req.base_url))

    def _create_child(self, req: Request, drive: Drive, parent: Item) -> Response:
        """POST …/items/{parent-id}/children (or …/root:/path:/children) {"name": "Registers",
        "folder": {}, "@microsoft.graph.conflictBehavior": "fail"} -> 201 driveItem
        (api/driveitem-post-children). The conflict behaviour may also come in the URL. A name
        already under the parent: with "fail" (taken as the default here) 409
        {"error": {"code": "nameAlreadyExists", "message": "Name already exists"}}; with
        "replace" an existing folder is kept as it is and returned (200), as reported for
        SharePoint; with "rename" the new folder is "Name 1", "Name 2", …"""
        body = req.json_object()
        if not parent.is_folder:
            raise GraphError(400, "invalidRequest", "The parent item is not a folder.")
        name = str(body.get("name") or "").strip()
        if not name or any(c in name for c in '"*:<>?/\\|'):
            raise GraphError(400, "invalidRequest", "Invalid request: the name is not valid.")
        if "folder" not in body:
            # Graph documents folders (and remote items) here; files go up with PUT …/content.
            raise GraphError(400, "invalidRequest", "Emulator: only folders are created here.")
        conflict = str(
            req.query.get("@microsoft.graph.conflictBehavior")
            or body.get("@microsoft.graph.conflictBehavior")
            or "fail"
        ).lower()
        if conflict not in ("fail", "replace", "rename"):
            raise GraphError(400, "invalidRequest", f"Invalid conflictBehavior '{conflict}'.")
        existing = drive.child(parent.id, name)
        if existing is not None:
            if conflict == "fail":
                raise GraphError(409, "nameAlreadyExists", "Name already exists")
            if conflict == "replace":
                if not existing.is_folder:
                    raise GraphError(409, "nameAlreadyExists", "Name already exists")
                return json_response(200, self.render_item(drive, existing, req.base_url))
            number = 1
            while drive.child(parent.id, f"{name} {number}") is not None:
                number += 1
            name = f"{name} {number}"
        created = Item(_item_id(), name, parent.id, True)
        drive.items[created.id] = created
        parent.version += 1  # a folder's eTag changes with its children
        return json_response(201, self.render_item(drive, created, req.base_url))

    def _create_upload_session(
        self, req: Request, drive: Drive, base: Item, rel: str, item: Item | None
    ) -> Response:
        """POST …/createUploadSession {"item": {"@microsoft.graph.conflictBehavior": "replace"}}
        (If-Match optional) -> 200 {"uploadUrl": "https://…", "expirationDateTime": "…",
        "nextExpectedRanges": ["0-"]}; a locked file: 423 {"error": {"code": "notAllowed",
        "innerError": {"code": "resourceLocked"}, "message": "The resource you are attempting
        to access is locked"}}"""
        self.check_preconditions(req, item)
        if item is not None and item.locked:
            raise GraphError(
                423,
                "notAllowed",
                "The resource you are attempting to access is locked",
                inner_code="resourceLocked",
            )
        if item is not None:
            parent_id, name = item.parent_id or drive.root_id, item.name
        else:
            parent, name = self._ensure_parent(drive, base, rel)
            parent_id = parent.id
        token = secrets.token_urlsafe(24)
        expires = time.time() + UPLOAD_SESSION_LIFETIME
        self.uploads[token] = UploadSession(
            drive.id,
            item.id if item else None,
            parent_id,
            name,
            (req.header("If-Match") or "").strip() or None,
            expires,
        )
        return json_response(
            200,
            {
                "@odata.context": f"{req.base_url}/v1.0/$metadata#microsoft.graph.uploadSession",
                "uploadUrl": f"{req.base_url}/_upload/{token}",
                "expirationDateTime": iso(datetime.fromtimestamp(expires, tz=utcnow().tzinfo)),
                "nextExpectedRanges": ["0-"],
            },
        )

    # --- the pre-authenticated URLs -----------------------------------------------------------

    def download(self, req: Request, token: str) -> Response:
        """GET {downloadUrl}: the bytes, no Authorization needed (or wanted)."""
        payload, _, sig = token.partition(".")
        expected = hmac.new(self.url_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(sig, expected):
            raise GraphError(401, "unauthenticated", "The download URL is not valid.")
        drive_id, item_id, expires = json.loads(base64.urlsafe_b64decode(payload))
        if expires < time.time():
            raise GraphError(401, "unauthenticated", "The download URL has expired.")
        with self.lock:
            drive = self.drives.get(drive_id)
            item = drive.items.get(item_id) if drive else None
            if item is None:
                raise GraphError(404, "itemNotFound", "The resource could not be found.")
            return Response(
                200,
                item.content,
                {"Content-Type": "application/octet-stream", "ETag": item.etag},
            )

    def upload_chunk(self, req: Request, token: str) -> Response:
        """PUT {uploadUrl} with Content-Range: bytes 0-99/200 -> 202 {"expirationDateTime": …,
        "nextExpectedRanges": ["100-"]}; the last range -> 201/200 driveItem. DELETE cancels."""
        with self.lock:
            session = self.uploads.get(token)
            if session is None or session.expires < time.time():
                raise GraphError(404, "itemNotFound", "The upload session was not found.")
            if req.method == "DELETE":
                del self.uploads[token]
                return empty_response(204)
            if req.method != "PUT":
                raise GraphError(405, "invalidRequest", "Use PUT to upload a fragment.")
            match = re.match(r"bytes (\d+)-(\d+)/(\d+)", req.header("Content-Range") or "")
            if not match:
                raise GraphError(400, "invalidRequest", "A Content-Range header is required.")
            start, end, total = (int(g) for g in match.groups())
            if start != len(session.data) or end - start + 1 != len(req.body) or end >= total:
                raise GraphError(
                    416,
                    "invalidRange",
                    "The uploaded fragment does not start at the next expected range.",
                )
            session.data.extend(req.body)
            if len(session.data) < total:
                return json_response(
                    202,
                    {
                        "expirationDateTime": iso(
                            datetime.fromtimestamp(session.expires, tz=utcnow().tzinfo)
                        ),
                        "nextExpectedRanges": [f"{len(session.data)}-"],
                    },
                )
            del self.uploads[token]
            drive = self.drives[session.drive_id]
            item = drive.items.get(session.item_id) if session.item_id else None
            if item is None:
                item = drive.child(session.parent_id, session.name)
            self._locked(item)
            # The If-Match given when the session was made still has to hold at commit.
            if session.if_match and (
                item is None
                or (session.if_match != "*" and session.if_match not in (item.etag, item.ctag))
            ):
                raise GraphError(
                    412,
                    "resourceModified",
                    "ETag does not match current item's value",
                    inner_code="entityTagDoesNotMatch",
                )
            if item is not None:
                self.write_content(item, bytes(session.data))
                return json_response(200, self.render_item(drive, item, req.base_url))
            created = Item(_item_id(), session.name, session.parent_id, False, bytes(session.data))
            drive.items[created.id] = created
            return json_response(201, self.render_item(drive, created, req.base_url))
