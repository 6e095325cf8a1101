"""Tests of the Graph emulator itself, through plain `requests` and the real msal."""

from __future__ import annotations

import base64
import io
import re
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import msal
import openpyxl
import pytest
import requests
from openpyxl.worksheet.table import Table

from tests.graph_emulator import GraphEmulator, make_certificate

MAILBOX = "safeguarding@example.org"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "emulator-test-secret"
GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def make_mime(subject: str, sender: str = "teacher@example.org", body: str = "Hello") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Jo Teacher <{sender}>"
    msg["To"] = MAILBOX
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{abs(hash(subject))}.test@example.org>"
    msg.set_content(body)
    return msg.as_bytes()


def msal_app(graph: GraphEmulator, credential: Any) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        CLIENT_ID,
        authority=f"https://{graph.authority_host}/{graph.tenant_id}",
        client_credential=credential,
        instance_discovery=False,
        verify=graph.ca_path,
    )


class Client:
    """requests against the emulator with a bearer token from the real msal."""

    def __init__(self, graph: GraphEmulator, token: str) -> None:
        self.graph = graph
        self.session = requests.Session()
        self.session.verify = graph.ca_path
        self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.graph.url}/v1.0{path}"

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(self.url(path), timeout=10, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.session.post(self.url(path), timeout=10, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.session.put(self.url(path), timeout=10, **kw)

    def patch(self, path: str, **kw: Any) -> requests.Response:
        return self.session.patch(self.url(path), timeout=10, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.session.delete(self.url(path), timeout=10, **kw)


def token_for(graph: GraphEmulator) -> str:
    result = msal_app(graph, SECRET).acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert "access_token" in result, result
    return str(result["access_token"])


@pytest.fixture(autouse=True)
def _no_ca_bundle_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a Session's `verify` (msal
    sets `verify` on its session), so the test CA would be ignored where those are set."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture
def client(graph: GraphEmulator) -> Client:
    graph.add_app(CLIENT_ID, secret=SECRET)
    graph.add_mailbox(MAILBOX)
    return Client(graph, token_for(graph))


def assert_envelope(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    inner = error["innerError"]
    assert inner["request-id"] and inner["date"] and inner["client-request-id"]
    return dict(error)


# --- token endpoint ------------------------------------------------------------------------------


def test_msal_gets_a_token_with_a_secret(graph: GraphEmulator) -> None:
    graph.add_app(CLIENT_ID, secret=SECRET)
    result = msal_app(graph, SECRET).acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] > 3000
    token_posts = [r for r in graph.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert len(token_posts) == 1


def test_msal_gets_a_token_with_a_certificate(graph: GraphEmulator) -> None:
    cert = make_certificate()
    graph.add_app(CLIENT_ID, certificate_pem=cert.certificate_pem)
    result = msal_app(graph, cert.msal_credential()).acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert "access_token" in result, result
    body = graph.requests[-1].body.decode()
    assert "client_assertion=" in body and "client_secret" not in body


def test_a_certificate_the_app_does_not_have_is_refused(graph: GraphEmulator) -> None:
    graph.add_app(CLIENT_ID, certificate_pem=make_certificate().certificate_pem)
    other = make_certificate("someone-else")
    result = msal_app(graph, other.msal_credential()).acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]


def test_a_wrong_secret_gets_aadsts7000215(graph: GraphEmulator) -> None:
    graph.add_app(CLIENT_ID, secret=SECRET)
    result = msal_app(graph, "not-the-secret").acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided")
    assert result["error_codes"] == [7000215]


def test_an_expired_secret_gets_aadsts7000222(graph: GraphEmulator) -> None:
    graph.add_app(CLIENT_ID, secret=SECRET)
    graph.expire_secret(CLIENT_ID)
    result = msal_app(graph, SECRET).acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert result["error_codes"] == [7000222]


def test_a_short_token_lifetime_makes_msal_ask_again(graph: GraphEmulator) -> None:
    """msal treats a token with under 5 minutes left as expired: natural expiry, quickly."""
    graph.add_app(CLIENT_ID, secret=SECRET)
    graph.token_lifetime = 60
    app = msal_app(graph, SECRET)
    first = app.acquire_token_for_client(scopes=GRAPH_SCOPE)["access_token"]
    second = app.acquire_token_for_client(scopes=GRAPH_SCOPE)["access_token"]
    assert first != second
    assert graph.count_requests("POST", r"/oauth2/v2\.0/token$") == 2


def test_a_scope_without_default_is_refused(graph: GraphEmulator) -> None:
    graph.add_app(CLIENT_ID, secret=SECRET)
    response = requests.post(
        f"{graph.authority}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scope": "https://graph.microsoft.com/Mail.Read",
        },
        verify=graph.ca_path,
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_missing_and_expired_tokens_get_401(client: Client, graph: GraphEmulator) -> None:
    anonymous = requests.get(
        f"{graph.url}/v1.0/users/{MAILBOX}/mailFolders", verify=graph.ca_path, timeout=10
    )
    assert_envelope(anonymous, 401, "InvalidAuthenticationToken")
    assert client.get(f"/users/{MAILBOX}/mailFolders").status_code == 200
    graph.expire_tokens()
    error = assert_envelope(
        client.get(f"/users/{MAILBOX}/mailFolders"), 401, "InvalidAuthenticationToken"
    )
    assert error["message"] == "Lifetime validation failed, the token is expired."


# --- mail -----------------------------------------------------------------------------------------


def test_folders_create_filter_and_conflict(client: Client) -> None:
    created = client.post(f"/users/{MAILBOX}/mailFolders", json={"displayName": "Processed"})
    assert created.status_code == 201
    again = client.post(f"/users/{MAILBOX}/mailFolders", json={"displayName": "Processed"})
    assert_envelope(again, 409, "ErrorFolderExists")
    found = client.get(
        f"/users/{MAILBOX}/mailFolders", params={"$filter": "displayName eq 'Processed'"}
    ).json()["value"]
    assert [f["id"] for f in found] == [created.json()["id"]]
    inbox = client.get(f"/users/{MAILBOX}/mailFolders('Inbox')").json()
    assert inbox["displayName"] == "Inbox"
    assert client.get(f"/users/{MAILBOX}/mailFolders/inbox/childFolders").json()["value"] == []


def test_message_fields_mime_and_paging(client: Client, graph: GraphEmulator) -> None:
    for n in range(3):
        graph.deliver(MAILBOX, make_mime(f"Concern {n}"))
    page = client.get(
        f"/users/{MAILBOX}/mailFolders/Inbox/messages",
        params={"$top": "2", "$select": "id,subject,internetMessageHeaders"},
        headers=IMMUTABLE,
    ).json()
    assert [m["subject"] for m in page["value"]] == ["Concern 2", "Concern 1"]
    assert "internetMessageHeaders" in page["value"][0] and "from" not in page["value"][0]
    rest = client.get(page["@odata.nextLink"], headers=IMMUTABLE).json()
    assert [m["subject"] for m in rest["value"]] == ["Concern 0"]
    assert "@odata.nextLink" not in rest
    mid = rest["value"][0]["id"]
    full = client.get(f"/users/{MAILBOX}/messages/{mid}", headers=IMMUTABLE).json()
    assert full["from"]["emailAddress"]["address"] == "teacher@example.org"
    assert full["internetMessageId"].endswith(".test@example.org>")
    assert full["webLink"].startswith("https://outlook.office365.com/owa/?ItemID=")
    assert full["hasAttachments"] is False and full["body"]["content"].strip() == "Hello"
    mime = client.get(f"/users/{MAILBOX}/messages/{mid}/$value")
    assert b"Subject: Concern 0" in mime.content


def test_attachments_are_listed_with_content(client: Client, graph: GraphEmulator) -> None:
    msg = EmailMessage()
    msg["From"] = "teacher@example.org"
    msg["To"] = MAILBOX
    msg["Subject"] = "With a file"
    msg.set_content("see attached")
    msg.add_attachment(b"PK\x03\x04data", maintype="application", subtype="zip", filename="a.zip")
    mid = graph.deliver(MAILBOX, msg.as_bytes())
    message = client.get(f"/users/{MAILBOX}/messages/{mid}").json()
    assert message["hasAttachments"] is True
    atts = client.get(f"/users/{MAILBOX}/messages/{mid}/attachments").json()["value"]
    assert atts[0]["name"] == "a.zip"
    assert base64.b64decode(atts[0]["contentBytes"]) == b"PK\x03\x04data"


def delta_round(client: Client, url: str, page_size: int) -> tuple[list[dict], str, int]:
    headers = {"Prefer": f'IdType="ImmutableId", odata.maxpagesize={page_size}'}
    items: list[dict] = []
    pages = 0
    while True:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        data = response.json()
        pages += 1
        assert len(data["value"]) <= page_size
        items.extend(data["value"])
        if "@odata.nextLink" in data:
            url = data["@odata.nextLink"]
            continue
        return items, data["@odata.deltaLink"], pages


def test_delta_pages_then_reports_new_and_removed(client: Client, graph: GraphEmulator) -> None:
    ids = [graph.deliver(MAILBOX, make_mime(f"Concern {n}")) for n in range(5)]
    start = f"/users/{MAILBOX}/mailFolders/inbox/messages/delta?$select=subject,internetMessageId"
    items, delta_link, pages = delta_round(client, start, 2)
    assert pages == 3
    assert [i["id"] for i in items] == ids
    assert "$deltatoken=" in delta_link
    # Nothing changed: an empty round.
    assert delta_round(client, delta_link, 2)[0] == []
    processed = client.post(f"/users/{MAILBOX}/mailFolders", json={"displayName": "Processed"})
    moved = client.post(
        f"/users/{MAILBOX}/messages/{ids[1]}/move",
        json={"destinationId": processed.json()["id"]},
        headers=IMMUTABLE,
    )
    assert moved.status_code == 201 and moved.json()["id"] == ids[1]
    new_id = graph.deliver(MAILBOX, make_mime("Concern 5"))
    items, _, _ = delta_round(client, delta_link, 2)
    assert {"id": ids[1], "@removed": {"reason": "deleted"}}.items() <= {
        k: v for i in items if i["id"] == ids[1] for k, v in i.items()
    }.items()
    assert [i["id"] for i in items if "@removed" not in i] == [new_id]
    # The same deltaLink can be followed again (a client retrying after a failure).
    assert len(delta_round(client, delta_link, 2)[0]) == 2


def test_lost_delta_token_answers_410(client: Client, graph: GraphEmulator) -> None:
    graph.deliver(MAILBOX, make_mime("Concern"))
    _, delta_link, _ = delta_round(client, f"/users/{MAILBOX}/mailFolders/inbox/messages/delta", 5)
    graph.lose_delta_tokens()
    error = assert_envelope(client.get(delta_link), 410, "syncStateNotFound")
    assert error["innerError"]["code"] == "SyncStateNotFound"


def test_move_keeps_the_immutable_id_but_not_the_regular_one(
    client: Client, graph: GraphEmulator
) -> None:
    graph.deliver(MAILBOX, make_mime("Concern"))
    regular = client.get(f"/users/{MAILBOX}/mailFolders/inbox/messages").json()["value"][0]["id"]
    immutable = graph.folder_messages(MAILBOX, "inbox")[0]["id"]
    moved = client.post(
        f"/users/{MAILBOX}/messages/{immutable}/move",
        json={"destinationId": "deleteditems"},
        headers=IMMUTABLE,
    ).json()
    assert moved["id"] == immutable
    assert (
        moved["parentFolderId"]
        == client.get(f"/users/{MAILBOX}/mailFolders/deleteditems").json()["id"]
    )
    assert_envelope(client.get(f"/users/{MAILBOX}/messages/{regular}"), 404, "ErrorItemNotFound")
    assert client.get(f"/users/{MAILBOX}/messages/{immutable}").status_code == 200


def test_delete_moves_to_deleted_items_then_to_the_dumpster(
    client: Client, graph: GraphEmulator
) -> None:
    first = graph.deliver(MAILBOX, make_mime("Concern 1"))
    second = graph.deliver(MAILBOX, make_mime("Concern 2"))

    assert client.delete(f"/users/{MAILBOX}/messages/{first}").status_code == 204
    # Graph's DELETE is Outlook's Delete: the message waits in Deleted Items, same immutable id.
    assert [m["id"] for m in graph.folder_messages(MAILBOX, "deleteditems")] == [first]
    assert [m["id"] for m in graph.folder_messages(MAILBOX, "inbox")] == [second]
    found = client.get(f"/users/{MAILBOX}/messages/{first}", headers=IMMUTABLE)
    assert found.status_code == 200
    assert (
        found.json()["parentFolderId"]
        == client.get(f"/users/{MAILBOX}/mailFolders/deleteditems").json()["id"]
    )
    # Deleting it again (emptying Deleted Items) puts it out of the API's reach.
    assert client.delete(f"/users/{MAILBOX}/messages/{first}").status_code == 204
    assert graph.folder_messages(MAILBOX, "deleteditems") == []
    assert_envelope(client.get(f"/users/{MAILBOX}/messages/{first}"), 404, "ErrorItemNotFound")
    # permanentDelete skips Deleted Items.
    purged = client.post(f"/users/{MAILBOX}/messages/{second}/permanentDelete")
    assert purged.status_code == 204
    assert graph.folder_messages(MAILBOX, "inbox") == []
    assert graph.folder_messages(MAILBOX, "deleteditems") == []
    assert_envelope(client.get(f"/users/{MAILBOX}/messages/{second}"), 404, "ErrorItemNotFound")


def test_sendmail_lands_in_sent_items_and_can_be_found(
    client: Client, graph: GraphEmulator
) -> None:
    message = {
        "subject": "Alert",
        "body": {"contentType": "HTML", "content": "<p>New concern</p>"},
        "toRecipients": [{"emailAddress": {"address": "dsp@example.org"}}],
        "internetMessageHeaders": [{"name": "X-Prevent-Ref", "value": "PRV-1"}],
    }
    sent = client.post(f"/users/{MAILBOX}/sendMail", json={"message": message})
    assert sent.status_code == 202 and sent.content == b""
    copies = graph.sent_messages(MAILBOX)
    assert [c["subject"] for c in copies] == ["Alert"]
    imid = copies[0]["internetMessageId"]
    assert {"name": "X-Prevent-Ref", "value": "PRV-1"} in copies[0]["internetMessageHeaders"]
    found = client.get(
        f"/users/{MAILBOX}/mailFolders/sentitems/messages",
        params={"$filter": f"internetMessageId eq '{imid}'", "$select": "id,internetMessageId"},
    ).json()["value"]
    assert len(found) == 1
    out = graph.outbox(MAILBOX)[0]
    assert out.recipients == ["dsp@example.org"]
    assert out.message()["X-Prevent-Ref"] == "PRV-1"


def test_sendmail_mime_variant_and_bad_base64(client: Client, graph: GraphEmulator) -> None:
    raw = base64.b64encode(make_mime("By MIME", sender=MAILBOX))
    ok = client.post(f"/users/{MAILBOX}/sendMail", data=raw, headers={"Content-Type": "text/plain"})
    assert ok.status_code == 202
    assert graph.sent_messages(MAILBOX)[0]["subject"] == "By MIME"
    bad = client.post(
        f"/users/{MAILBOX}/sendMail", data=b"***", headers={"Content-Type": "text/plain"}
    )
    assert_envelope(bad, 400, "ErrorMimeContentInvalidBase64String")


def test_draft_then_send(client: Client, graph: GraphEmulator) -> None:
    draft = client.post(
        f"/users/{MAILBOX}/messages",
        json={
            "subject": "Reminder",
            "body": {"contentType": "Text", "content": "Please review"},
            "toRecipients": [{"emailAddress": {"address": "dsp@example.org"}}],
        },
        headers=IMMUTABLE,
    )
    assert draft.status_code == 201
    draft_id = draft.json()["id"]
    assert draft.json()["isDraft"] is True
    assert graph.folder_messages(MAILBOX, "drafts")[0]["id"] == draft_id
    patched = client.patch(
        f"/users/{MAILBOX}/messages/{draft_id}", json={"subject": "Reminder (2)"}
    )
    assert patched.json()["subject"] == "Reminder (2)"
    assert client.post(f"/users/{MAILBOX}/messages/{draft_id}/send").status_code == 202
    sent = graph.sent_messages(MAILBOX)
    assert [(m["id"], m["subject"], m["isDraft"]) for m in sent] == [
        (draft_id, "Reminder (2)", False)
    ]
    assert graph.folder_messages(MAILBOX, "drafts") == []
    again = client.post(f"/users/{MAILBOX}/messages/{draft_id}/send")
    assert_envelope(again, 400, "ErrorInvalidOperation")


def test_mime_draft(client: Client, graph: GraphEmulator) -> None:
    raw = base64.b64encode(make_mime("MIME draft", sender=MAILBOX))
    draft = client.post(
        f"/users/{MAILBOX}/messages", data=raw, headers={"Content-Type": "text/plain", **IMMUTABLE}
    )
    assert draft.status_code == 201 and draft.json()["subject"] == "MIME draft"


def test_missing_mail_permission_is_403(graph: GraphEmulator) -> None:
    graph.add_app(CLIENT_ID, secret=SECRET, permissions=("Mail.ReadWrite",))
    graph.add_mailbox(MAILBOX)
    client = Client(graph, token_for(graph))
    response = client.post(
        f"/users/{MAILBOX}/sendMail",
        json={
            "message": {
                "subject": "x",
                "toRecipients": [{"emailAddress": {"address": "a@example.org"}}],
            }
        },
    )
    error = assert_envelope(response, 403, "ErrorAccessDenied")
    assert error["message"] == "Access is denied. Check credentials and try again."


def test_unknown_mailbox_and_unknown_segment(client: Client) -> None:
    assert_envelope(client.get("/users/nobody@example.org/mailFolders"), 404, "ErrorInvalidUser")
    assert_envelope(client.get(f"/users/{MAILBOX}/nonsense"), 400, "BadRequest")


def o365_account(graph: GraphEmulator) -> Any:
    """O365's own Account pointed at the emulator (protocol URL and msal authority)."""
    from O365 import Account
    from O365.connection import Connection, MSGraphProtocol
    from O365.utils.token import MemoryTokenBackend

    class EmulatorProtocol(MSGraphProtocol):
        _protocol_url = f"{graph.url}/"

    class EmulatorConnection(Connection):
        @property
        def msal_client(self) -> msal.ConfidentialClientApplication:
            if self._msal_client is None:
                self._msal_client = msal.ConfidentialClientApplication(
                    self.auth[0],
                    client_credential=self.auth[1],
                    authority=graph.authority,
                    token_cache=self.token_backend,
                    instance_discovery=False,
                    verify=graph.ca_path,
                )
            return self._msal_client

    class EmulatorAccount(Account):
        connection_constructor = EmulatorConnection

    account = EmulatorAccount(
        (CLIENT_ID, SECRET),
        auth_flow_type="credentials",
        tenant_id=graph.tenant_id,
        token_backend=MemoryTokenBackend(),
        protocol=EmulatorProtocol(),
        verify_ssl=graph.ca_path,
        timeout=10,
    )
    assert account.authenticate()
    return account


def test_o365_account_lists_messages(graph: GraphEmulator) -> None:
    """The smoke the backends build on: O365's own Account pointed at the emulator."""
    graph.add_app(CLIENT_ID, secret=SECRET)
    graph.add_mailbox(MAILBOX)
    graph.deliver(MAILBOX, make_mime("Seen by O365"))
    account = o365_account(graph)
    messages = list(account.mailbox(resource=MAILBOX).inbox_folder().get_messages(limit=5))
    assert [m.subject for m in messages] == ["Seen by O365"]


# --- files ------------------------------------------------------------------------------------

HOST = "example.sharepoint.com"
SITE = "/sites/Safeguarding"
REGISTER = "/Registers/Concerns.xlsx"
HEADERS = ["Key", "Received", "Subject"]
ETAG = re.compile(r'^"\{[0-9A-F-]{36}\},\d+"$')


def register_xlsx(rows: list[list[Any]] | None = None) -> bytes:
    book = openpyxl.Workbook()
    ws = book.active
    assert ws is not None
    ws.title = "Register"
    ws.append(HEADERS)
    for row in rows or []:
        ws.append(row)
    last = 1 + len(rows or [])
    ws.add_table(Table(displayName="Concerns", ref=f"A1:C{max(last, 1)}"))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.fixture
def files(client: Client, graph: GraphEmulator) -> str:
    """The register workbook on a site; returns its item id."""
    graph.add_site(HOST, SITE)
    return graph.put_file(
        HOST, SITE, REGISTER, register_xlsx([["k1", datetime(2026, 5, 1, 10, 30), "First"]])
    )


def drive_item_url(graph: GraphEmulator, item_id: str) -> str:
    site_id = graph.drive.site_by_path(HOST, SITE).id
    return f"/sites/{site_id}/drive/items/{item_id}"


def test_drive_item_by_path_and_download_via_302(
    client: Client, graph: GraphEmulator, files: str
) -> None:
    site = client.get(f"/sites/{HOST}:{SITE}:").json()
    assert site["webUrl"] == f"https://{HOST}{SITE}"
    assert client.get(f"/sites/{HOST}:{SITE}").json()["id"] == site["id"]
    drive = client.get(f"/sites/{site['id']}/drive").json()
    assert drive["driveType"] == "documentLibrary"
    # O365 sends a double slash here; Graph tolerates it.
    item = client.get(f"{graph.url}/v1.0//sites/{site['id']}/drive/root:{REGISTER}:").json()
    assert item["id"] == files and ETAG.match(item["eTag"]) and item["cTag"].startswith('"c:{')
    assert item["file"]["mimeType"].endswith("spreadsheetml.sheet")
    assert item["parentReference"]["path"] == f"/drives/{drive['id']}/root:/Registers"
    assert item["size"] == len(graph.get_file(HOST, SITE, REGISTER))
    selected = client.get(f"/drives/{drive['id']}/items/{files}", params={"$select": "id,eTag"})
    assert set(selected.json()) == {"@odata.context", "id", "eTag"}
    redirect = client.get(f"/drives/{drive['id']}/items/{files}/content", allow_redirects=False)
    assert redirect.status_code == 302
    # The pre-authenticated URL needs no bearer token.
    content = requests.get(redirect.headers["Location"], verify=graph.ca_path, timeout=10)
    assert content.content == graph.get_file(HOST, SITE, REGISTER)
    assert_envelope(client.get(f"/sites/{HOST}:/sites/Nowhere:"), 404, "itemNotFound")
    assert_envelope(
        client.get(f"/sites/{site['id']}/drive/root:/Registers/Missing.xlsx:"), 404, "itemNotFound"
    )


def test_upload_honours_if_match(client: Client, graph: GraphEmulator, files: str) -> None:
    url = drive_item_url(graph, files)
    first = client.get(url).json()["eTag"]
    replaced = client.put(
        f"{url}/content",
        data=b"version 2",
        headers={"If-Match": first, "Content-Type": "text/plain"},
    )
    assert replaced.status_code == 200 and replaced.json()["eTag"] != first
    stale = client.put(f"{url}/content", data=b"version 3", headers={"If-Match": first})
    error = assert_envelope(stale, 412, "resourceModified")
    assert error["innerError"]["code"] == "entityTagDoesNotMatch"
    assert graph.get_file(HOST, SITE, REGISTER) == b"version 2"
    parent = client.get(url).json()["parentReference"]["id"]
    created = client.put(f"{drive_item_url(graph, parent)}:/New.txt:/content", data=b"new")
    assert created.status_code == 201 and graph.get_file(HOST, SITE, "/Registers/New.txt") == b"new"


def test_upload_session_with_if_match(client: Client, graph: GraphEmulator, files: str) -> None:
    url = drive_item_url(graph, files)
    etag = client.get(url).json()["eTag"]
    body = {"item": {"@microsoft.graph.conflictBehavior": "replace"}}
    stale = client.post(f"{url}/createUploadSession", json=body, headers={"If-Match": '"{X},1"'})
    assert_envelope(stale, 412, "resourceModified")
    session = client.post(f"{url}/createUploadSession", json=body, headers={"If-Match": etag})
    upload_url = session.json()["uploadUrl"]
    blob = b"0123456789"
    part = requests.put(
        upload_url,
        data=blob[:4],
        headers={"Content-Range": f"bytes 0-3/{len(blob)}"},
        verify=graph.ca_path,
        timeout=10,
    )
    assert part.status_code == 202 and part.json()["nextExpectedRanges"] == ["4-"]
    done = requests.put(
        upload_url,
        data=blob[4:],
        headers={"Content-Range": f"bytes 4-9/{len(blob)}"},
        verify=graph.ca_path,
        timeout=10,
    )
    assert done.status_code == 200 and done.json()["eTag"] != etag
    assert graph.get_file(HOST, SITE, REGISTER) == blob


def test_a_locked_file_refuses_writes(client: Client, graph: GraphEmulator, files: str) -> None:
    url = drive_item_url(graph, files)
    graph.set_file_locked(HOST, SITE, REGISTER, True)
    assert_envelope(client.put(f"{url}/content", data=b"x"), 423, "resourceLocked")
    error = assert_envelope(client.post(f"{url}/createUploadSession", json={}), 423, "notAllowed")
    assert error["innerError"]["code"] == "resourceLocked"
    session = client.post(f"{url}/workbook/createSession", json={"persistChanges": True})
    assert session.status_code == 409
    assert session.json()["error"]["code"] == "EditModeCannotAcquireLock"
    assert "is editing this workbook" in session.json()["error"]["message"]
    assert client.get(f"{url}/workbook/tables/Concerns/rows").status_code == 200
    graph.set_file_locked(HOST, SITE, REGISTER, False)
    assert client.put(f"{url}/content", data=b"x").status_code == 200


def test_sites_selected_needs_a_grant(graph: GraphEmulator) -> None:
    graph.add_app(CLIENT_ID, secret=SECRET, grant_all_sites=False)
    graph.add_site(HOST, SITE)
    item_id = graph.put_file(HOST, SITE, REGISTER, register_xlsx())
    client = Client(graph, token_for(graph))
    assert_envelope(client.get(f"/sites/{HOST}:{SITE}:"), 403, "accessDenied")
    graph.grant_site(CLIENT_ID, HOST, SITE, "read")
    url = drive_item_url(graph, item_id)
    assert client.get(url).status_code == 200
    assert_envelope(client.put(f"{url}/content", data=b"x"), 403, "accessDenied")
    graph.grant_site(CLIENT_ID, HOST, SITE, "write")
    assert client.put(f"{url}/content", data=b"x").status_code == 200


# --- workbooks --------------------------------------------------------------------------------


def test_session_rows_add_extends_the_table(
    client: Client, graph: GraphEmulator, files: str
) -> None:
    url = drive_item_url(graph, files)
    etag = client.get(url).json()["eTag"]
    session = client.post(f"{url}/workbook/createSession", json={"persistChanges": True})
    assert session.status_code == 201 and session.json()["persistChanges"] is True
    sid = {"workbook-session-id": session.json()["id"]}
    tables = client.get(f"{url}/workbook/tables", headers=sid).json()["value"]
    assert [t["name"] for t in tables] == ["Concerns"]
    columns = client.get(f"{url}/workbook/tables('Concerns')/columns", headers=sid).json()
    assert [c["name"] for c in columns["value"]] == HEADERS
    added = client.post(
        f"{url}/workbook/tables/{tables[0]['id']}/rows/add",
        json={
            "index": None,
            "values": [
                ["k2", "2026-05-02", "=1+1"],
                ["'=2+2", "2026-05-03 09:00", "007"],
                ["k4", "2026-05-04", "+44 1"],
            ],
        },
        headers=sid,
    )
    assert added.status_code == 200, added.text
    assert added.json()["index"] == 1
    assert added.json()["values"][1] == ["=2+2", pytest.approx(46145.375), 7]
    rows = client.get(f"{url}/workbook/tables/Concerns/rows", headers=sid).json()["value"]
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["values"][0][1] == pytest.approx(46143.4375)  # 2026-05-01 10:30 as a serial
    closed = client.post(f"{url}/workbook/closeSession", headers=sid)
    assert closed.status_code == 204
    assert client.get(url).json()["eTag"] != etag
    book = openpyxl.load_workbook(io.BytesIO(graph.get_file(HOST, SITE, REGISTER)))
    ws = book["Register"]
    assert ws.tables["Concerns"].ref == "A1:C5"
    assert ws["C3"].data_type == "f" and ws["C3"].value == "=1+1"
    assert ws["A4"].data_type == "s" and ws["A4"].value == "=2+2" and ws["A4"].quotePrefix
    assert ws["C4"].value == 7  # typed "007" becomes a number, as in Excel
    assert ws["C5"].data_type == "f" and ws["C5"].value == "=+44 1"
    assert ws["B4"].value == datetime(2026, 5, 3, 9, 0)


def test_ranges_read_and_patch(client: Client, graph: GraphEmulator, files: str) -> None:
    url = drive_item_url(graph, files)
    body = client.get(f"{url}/workbook/tables/Concerns/range").json()
    assert body["address"] == "Register!A1:C2"
    assert body["values"][0] == HEADERS
    assert body["text"][1][1] == "2026-05-01 10:30:00" and body["numberFormat"][1][1] != "General"
    assert client.get(f"{url}/workbook/tables/Concerns/headerRowRange").json()["rowCount"] == 1
    data = client.get(f"{url}/workbook/tables/Concerns/dataBodyRange").json()
    assert data["values"][0][0] == "k1"
    sheets = client.get(f"{url}/workbook/worksheets").json()["value"]
    assert [s["name"] for s in sheets] == ["Register"]
    patched = client.patch(
        f"{url}/workbook/worksheets('Register')/range(address='D2')", json={"values": [["hidden"]]}
    )
    assert patched.status_code == 200 and patched.json()["values"] == [["hidden"]]
    book = openpyxl.load_workbook(io.BytesIO(graph.get_file(HOST, SITE, REGISTER)))
    assert book["Register"]["D2"].value == "hidden"
    wrong = client.patch(
        f"{url}/workbook/worksheets/Register/range(address='D2')", json={"values": [["a", "b"]]}
    )
    assert_envelope(wrong, 400, "InvalidArgument")


def test_expired_session_is_recreatable(client: Client, graph: GraphEmulator, files: str) -> None:
    url = drive_item_url(graph, files)
    sid = client.post(f"{url}/workbook/createSession", json={"persistChanges": True}).json()["id"]
    graph.expire_workbook_sessions()
    gone = client.get(f"{url}/workbook/tables", headers={"workbook-session-id": sid})
    error = assert_envelope(gone, 404, "itemNotFound")
    assert error["innerError"]["code"] == "invalidSessionReCreatable"


def test_504_after_commit_did_commit(client: Client, graph: GraphEmulator, files: str) -> None:
    url = drive_item_url(graph, files)
    graph.add_fault("POST", r"/rows/add$", 504, after_commit=True)
    response = client.post(
        f"{url}/workbook/tables/Concerns/rows/add", json={"values": [["k2", "x", "y"]]}
    )
    error = assert_envelope(response, 504, "gatewayTimeout")
    assert error["innerError"]["code"] == "gatewayTimeoutUncategorized"
    keys = client.get(f"{url}/workbook/tables/Concerns/columns").json()["value"][0]["values"]
    assert keys == [["Key"], ["k1"], ["k2"]]


def test_refused_workbook_api_is_403(client: Client, graph: GraphEmulator, files: str) -> None:
    graph.refuse_workbook_api(True)
    url = drive_item_url(graph, files)
    assert_envelope(client.post(f"{url}/workbook/createSession", json={}), 403, "accessDenied")
    assert client.get(f"{url}/content", allow_redirects=False).status_code == 302


# --- faults -----------------------------------------------------------------------------------


def test_fractional_retry_after(client: Client, graph: GraphEmulator) -> None:
    graph.add_fault("GET", r"/messages/delta", 429, headers={"Retry-After": "2.128"})
    url = f"/users/{MAILBOX}/mailFolders/inbox/messages/delta"
    throttled = client.get(url)
    error = assert_envelope(throttled, 429, "TooManyRequests")
    assert throttled.headers["Retry-After"] == "2.128"
    assert error["message"] == "Please retry again later."
    assert error["innerError"]["status"] == "429"
    assert client.get(url).status_code == 200  # times=1: the next one goes through


@pytest.mark.parametrize(
    ("status", "path", "code"),
    [
        (429, "/mailFolders", "TooManyRequests"),
        (500, "/mailFolders", "generalException"),
        (502, "/mailFolders", "badGateway"),
        (503, "/mailFolders", "serviceNotAvailable"),
        (504, "/mailFolders", "gatewayTimeout"),
        (401, "/mailFolders", "InvalidAuthenticationToken"),
        (403, "/mailFolders", "ErrorAccessDenied"),
        (404, "/mailFolders", "ErrorItemNotFound"),
        (410, "/mailFolders", "syncStateNotFound"),
        (403, "/drive", "accessDenied"),
        (404, "/drive", "itemNotFound"),
        (409, "/drive", "conflict"),
        (412, "/drive", "resourceModified"),
        (423, "/drive", "resourceLocked"),
    ],
)
def test_each_fault_has_the_documented_envelope(
    client: Client, graph: GraphEmulator, files: str, status: int, path: str, code: str
) -> None:
    graph.add_fault("GET", re.escape(path) + "$", status)
    url = f"/users/{MAILBOX}/mailFolders" if path == "/mailFolders" else drive_item_url(graph, "x")
    target = url if path == "/mailFolders" else url.rsplit("/items/", 1)[0]
    assert_envelope(client.get(target), status, code)


def test_edit_mode_lock_body_and_repeated_faults(client: Client, graph: GraphEmulator) -> None:
    from tests.graph_emulator.faults import edit_mode_lock_body

    graph.add_fault("GET", "/mailFolders$", 409, body=edit_mode_lock_body(), times=2)
    for _ in range(2):
        response = client.get(f"/users/{MAILBOX}/mailFolders")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "EditModeCannotAcquireLock"
    assert client.get(f"/users/{MAILBOX}/mailFolders").status_code == 200
    assert graph.count_requests("GET", r"/mailFolders$") == 3


def test_dropped_connection_after_commit(client: Client, graph: GraphEmulator) -> None:
    graph.add_fault("POST", "/sendMail$", 0, after_commit=True)
    message = {"subject": "x", "toRecipients": [{"emailAddress": {"address": "dsp@example.org"}}]}
    with pytest.raises(requests.ConnectionError):
        client.post(f"/users/{MAILBOX}/sendMail", json={"message": message})
    assert len(graph.sent_messages(MAILBOX)) == 1


def test_o365_reads_a_workbook(graph: GraphEmulator) -> None:
    """O365's SharePoint, drive and WorkBook objects against the emulator."""
    from O365.excel import WorkBook

    graph.add_app(CLIENT_ID, secret=SECRET)
    graph.add_site(HOST, SITE)
    graph.put_file(HOST, SITE, REGISTER, register_xlsx([["k1", "a", "b"]]))
    account = o365_account(graph)
    site = account.sharepoint().get_site(HOST, SITE)
    item = site.get_default_document_library().get_item_by_path(REGISTER)
    book = WorkBook(item, use_session=True, persist=True)
    table = book.get_table("Concerns")
    table.add_rows([["k2", "c", "d"]])
    assert [r.values[0][0] for r in table.get_rows()] == ["k1", "k2"]
    book.session.close_session()
    out = io.BytesIO()
    assert item.download(output=out)
    assert openpyxl.load_workbook(out)["Register"].tables["Concerns"].ref == "A1:C3"


def test_folders_are_created_under_a_parent_and_a_taken_name_fails(
    client: Client, graph: GraphEmulator
) -> None:
    graph.add_site(HOST, SITE)
    site = client.get(f"/sites/{HOST}:{SITE}:").json()
    drive = f"/sites/{site['id']}/drive"
    body = {"name": "Registers", "folder": {}, "@microsoft.graph.conflictBehavior": "fail"}
    made = client.post(f"{drive}/root/children", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "Registers" and "folder" in made.json()
    assert_envelope(client.post(f"{drive}/root/children", json=body), 409, "nameAlreadyExists")
    # Under a folder by id, and by path; "rename" and "replace" as documented.
    inner = client.post(
        f"{drive}/items/{made.json()['id']}/children", json={"name": "A", "folder": {}}
    )
    assert inner.status_code == 201
    by_path = client.post(
        f"{drive}/root:/Registers:/children",
        json={"name": "A", "folder": {}, "@microsoft.graph.conflictBehavior": "rename"},
    )
    assert by_path.status_code == 201 and by_path.json()["name"] == "A 1"
    kept = client.post(
        f"{drive}/root:/Registers:/children",
        params={"@microsoft.graph.conflictBehavior": "replace"},
        json={"name": "A", "folder": {}},
    )
    assert kept.status_code == 200 and kept.json()["id"] == inner.json()["id"]
    assert_envelope(client.post(f"{drive}/root:/Nowhere:/children", json=body), 404, "itemNotFound")


def test_put_content_with_conflict_behaviour_fail_leaves_a_file_alone(
    client: Client, graph: GraphEmulator, files: str
) -> None:
    site = client.get(f"/sites/{HOST}:{SITE}:").json()
    before = graph.get_file(HOST, SITE, REGISTER)
    taken = client.put(
        f"/sites/{site['id']}/drive/root:{REGISTER}:/content",
        params={"@microsoft.graph.conflictBehavior": "fail"},
        data=b"new bytes",
    )
    assert_envelope(taken, 409, "nameAlreadyExists")
    assert graph.get_file(HOST, SITE, REGISTER) == before


def test_creating_folders_needs_a_write_grant(graph: GraphEmulator) -> None:
    graph.add_app(CLIENT_ID, secret=SECRET, grant_all_sites=False)
    graph.add_site(HOST, SITE)
    graph.grant_site(CLIENT_ID, HOST, SITE, "read")
    client = Client(graph, token_for(graph))
    site = client.get(f"/sites/{HOST}:{SITE}:").json()
    body = {"name": "Registers", "folder": {}}
    assert_envelope(
        client.post(f"/sites/{site['id']}/drive/root/children", json=body), 403, "accessDenied"
    )
    graph.grant_site(CLIENT_ID, HOST, SITE, "write")
    assert client.post(f"/sites/{site['id']}/drive/root/children", json=body).status_code == 201
