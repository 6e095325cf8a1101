"""Tests of the Graph emulator itself, through plain `requests` and the real msal."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import msal
import pytest
import requests

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


def test_o365_account_lists_messages(graph: GraphEmulator) -> None:
    """The smoke the backends build on: O365's own Account pointed at the emulator."""
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

    graph.add_app(CLIENT_ID, secret=SECRET)
    graph.add_mailbox(MAILBOX)
    graph.deliver(MAILBOX, make_mime("Seen by O365"))
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
    messages = list(account.mailbox(resource=MAILBOX).inbox_folder().get_messages(limit=5))
    assert [m.subject for m in messages] == ["Seen by O365"]


# Silence "unused" for helpers the later sections use.
_unused: tuple[Callable[..., Any], ...] = (io.BytesIO,)
