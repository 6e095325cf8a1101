"""``prevent-service provision`` over Microsoft Graph: the SharePoint folders and workbooks, and
the shared mailbox's Processed and Quarantine folders, made when missing and never overwritten.

Files: each folder on the way to the configured path is looked up and, when missing, created
with ``POST …/items/{parent-id}/children {"name": …, "folder": {},
"@microsoft.graph.conflictBehavior": "fail"}`` (learn.microsoft.com/graph/api/
driveitem-post-children). The workbook is laid out locally by the xlsx backend, from the same
table specs ``init`` uses, and uploaded with ``PUT …/items/{parent-id}:/{name}:/content
?@microsoft.graph.conflictBehavior=fail`` (in the URL, as the driveItem resource page says for
that parameter). A file already there is never written: it is found first and left alone, and
a file that appears between the look-up and the upload makes Graph answer ``409
nameAlreadyExists``, which also means "left alone".

Each step is one line (``CheckResult``); a refusal names what to grant (the Sites.Selected
write grant on the site, or Mail.ReadWrite for the mailbox's RBAC scope).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from connectors.base import CheckResult, TableSpec
from connectors.graph_http import Call, GraphConflict, GraphNotFound, PreconditionFailed
from connectors.xlsx import create_workbook
from service.errors import PreventServiceError

if TYPE_CHECKING:
    from connectors.graph_mail import GraphMailbox
    from connectors.graph_workbook import GraphWorkbook

log = logging.getLogger("prevent_service.graph")

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class _Stop(Exception):
    """A step failed: its line is already written; later steps depend on it."""


def provision_workbook(book: GraphWorkbook, specs: Sequence[TableSpec]) -> Iterator[CheckResult]:
    """The folders and the file at ``book``'s configured path, made if missing."""
    where = f"{book.site_host}{book.site_path}"
    try:
        book.http.ensure_token()
    except PreventServiceError as exc:
        yield CheckResult("Graph token", False, str(exc))
        return
    try:
        site = book.site()
    except PreventServiceError as exc:
        yield CheckResult(f"site {where}", False, str(exc))
        return
    drive = f"sites/{quote(str(site.object_id))}/drive"
    lines: list[CheckResult] = []
    try:
        parent = _folders(book, drive, lines)
        lines.append(_file(book, drive, parent, specs))
    except _Stop:
        pass
    yield from lines


def _call(book: GraphWorkbook, what: str, subject: str) -> Call:
    return Call(
        what=f"{what} on {book.site_host}{book.site_path}",
        permission="Sites.Selected",
        kind="file",
        subject=f"{subject} in {book.site_host}{book.site_path}",
    )


def _lookup(book: GraphWorkbook, drive: str, path: str) -> dict[str, Any] | None:
    """The driveItem at ``path`` in the site's default library, or None if there is none."""
    # GET sites/{site-id}/drive/root:/Registers → {"id": "01…", "name": "Registers",
    #   "folder": {"childCount": 0}, …}; 404 itemNotFound when there is nothing there
    try:
        return book.http.get_json(
            f"{drive}/root:{quote(path)}",
            _call(book, f"look for {path}", path),
            params={"$select": "id,name,folder,file"},
        )
    except GraphNotFound:
        return None


def _folders(book: GraphWorkbook, drive: str, lines: list[CheckResult]) -> str:
    """Each folder on the way to the file, made when missing; the last one's item path."""
    parent = f"{drive}/root"
    so_far = ""
    for name in [p for p in book.path.split("/") if p][:-1]:
        so_far += "/" + name
        label = f"SharePoint folder {so_far}"
        try:
            found = _lookup(book, drive, so_far)
            made = found is None
            if found is None:
                found = _make_folder(book, drive, parent, name, so_far)
        except PreventServiceError as exc:
            lines.append(CheckResult(label, False, str(exc)))
            raise _Stop from exc
        if "folder" not in found:
            lines.append(
                CheckResult(
                    label,
                    False,
                    f"{so_far} is a file, not a folder: rename it, or change the workbook path "
                    "in the config",
                )
            )
            raise _Stop
        lines.append(CheckResult(label, True, "created" if made else "found"))
        parent = f"{drive}/items/{quote(str(found['id']))}"
    return parent


def _make_folder(
    book: GraphWorkbook, drive: str, parent: str, name: str, path: str
) -> dict[str, Any]:
    # POST …/items/{parent-id}/children {"name": "Registers", "folder": {},
    #   "@microsoft.graph.conflictBehavior": "fail"} → 201 driveItem; 409 nameAlreadyExists
    try:
        response = book.http.request(
            "POST",
            f"{parent}/children",
            _call(book, f"create the folder {path}", path),
            json={"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": "fail"},
            retry_ambiguous=True,  # a repeat cannot make a second folder: it gets a 409
        )
    except GraphConflict:
        # Made meanwhile (by a person, or by our own attempt whose answer was lost).
        again = _lookup(book, drive, path)
        if again is None:
            raise
        return again
    log.info("graph: created the folder %s on %s%s", path, book.site_host, book.site_path)
    data: dict[str, Any] = response.json()
    return data


def _file(book: GraphWorkbook, drive: str, parent: str, specs: Sequence[TableSpec]) -> CheckResult:
    label = f"workbook {book.path}"
    tables = ", ".join(s.table for s in specs)
    left_alone = (
        "left alone: the file exists and is never overwritten (check, below, reads its tables)"
    )
    try:
        found = _lookup(book, drive, book.path)
        if found is not None:
            if "folder" in found:
                return CheckResult(
                    label, False, f"{book.path} is a folder: change the workbook path in the config"
                )
            return CheckResult(label, True, left_alone)
        data = _laid_out(specs, book)
        # PUT …/items/{parent-id}:/Concern register.xlsx:/content
        #   ?@microsoft.graph.conflictBehavior=fail → 201 driveItem; 409 nameAlreadyExists
        book.http.request(
            "PUT",
            f"{parent}:/{quote(book.name)}:/content",
            _call(book, f"upload {book.path}", book.path),
            content=data,
            content_type=XLSX_TYPE,
            params={"@microsoft.graph.conflictBehavior": "fail"},
        )
    except (GraphConflict, PreconditionFailed) as exc:
        if getattr(exc, "code", "") in {"nameAlreadyExists", "resourceModified"}:
            return CheckResult(label, True, left_alone)
        return CheckResult(label, False, str(exc))
    except PreventServiceError as exc:
        return CheckResult(label, False, str(exc))
    log.info("graph: created %s on %s%s", book.path, book.site_host, book.site_path)
    return CheckResult(label, True, f"created, with table(s) {tables}")


def _laid_out(specs: Sequence[TableSpec], book: GraphWorkbook) -> bytes:
    """The new workbook's bytes, laid out by the xlsx backend exactly as ``init`` does."""
    with tempfile.TemporaryDirectory(prefix="prevent-provision-") as tmp:
        path = Path(tmp) / (book.name if book.name.lower().endswith(".xlsx") else "book.xlsx")
        create_workbook(path, specs, tz=book.tz)
        return path.read_bytes()


def provision_mailbox(mailbox: GraphMailbox) -> Iterator[CheckResult]:
    """Processed and Quarantine in the shared mailbox, made when missing."""
    try:
        mailbox.http.ensure_token()
    except PreventServiceError as exc:
        yield CheckResult("Graph token", False, str(exc))
        return
    for name in (mailbox.processed_folder, mailbox.quarantine_folder):
        label = f"mail folder {name} in {mailbox.address}"
        try:
            existed = mailbox.folder_id(name, create=False) is not None
            if not existed:
                mailbox.folder_id(name, create=True)
        except PreventServiceError as exc:
            yield CheckResult(label, False, str(exc))
            continue
        yield CheckResult(label, True, "found" if existed else "created")
