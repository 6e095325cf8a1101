"""A stateful local emulator of the Microsoft identity platform and Microsoft Graph v1.0 surface
the Graph backends use, served over HTTPS on 127.0.0.1 so the real msal and O365 talk to it.

API (agreed in /tmp/emulator-api.md; additions are marked +):

    emu = GraphEmulator(latency=0.0).start()    # or the `graph` / `graph_server` pytest fixtures
    emu.url                # "https://127.0.0.1:PORT"  (Graph at {url}/v1.0/…)
    emu.authority_host     # "127.0.0.1:PORT"; msal authority f"https://{host}/{emu.tenant_id}"
    emu.authority          # + that authority URL
    emu.ca_path            # PEM of the test CA (requests verify=, msal verify=)
    emu.add_app(client_id, *, secret=None, certificate_pem=None,
                permissions=("Mail.ReadWrite", "Mail.Send", "Sites.Selected"),
                grant_all_sites=True,          # + Sites.Selected apps hold a write grant on every
                                               #   site unless False; then use grant_site
                mailboxes=None)                # + Exchange RBAC scope: only these mailboxes
    emu.grant_site(client_id, host, site_path, role="write")   # + Sites.Selected site grant
    emu.set_permissions(client_id, perms)      # + change consent; empty = revoked (401)
    emu.expire_secret(client_id)               # + AADSTS7000222 on the next token request
    emu.token_lifetime = 3600; emu.expire_tokens()
    emu.reset(); emu.latency = 0.1             # latency is slept in the handler thread
    emu.add_mailbox(addr); emu.add_folder(addr, name)  # + add_folder
    emu.deliver(addr, raw, folder="inbox") -> immutable id
    emu.folder_messages(addr, folder) / emu.sent_messages(addr) -> Graph JSON (immutable ids)
    emu.outbox(addr=None) -> [OutgoingMail(sender, recipients, raw, .message())]  # + all sent
    emu.lose_delta_tokens()
    emu.add_site(host, path) -> site id; emu.put_file(...) -> item id; emu.get_file(...)
    emu.file_item(host, site_path, file_path) -> driveItem JSON   # + current eTag etc.
    emu.set_file_locked(host, site_path, file_path, locked); emu.refuse_workbook_api(True)
    emu.workbook_session_idle = 300.0; emu.expire_workbook_sessions()   # +
    emu.add_fault(method, path_regex, status, *, times=1, headers=None, body=None,
                  after_commit=False, delay=0.0)   # + delay: sleep before answering;
                                                   # + status=0: drop the connection, no answer
                                                   # + method "*" matches any method
                                                   # + body may be str/bytes (sent as text/html)
    emu.clear_faults(); emu.requests; emu.count_requests(method, path_regex)   # +
    emu.round_trips        # + HTTP requests only: a POST /v1.0/$batch counts once; the requests
                           #   inside it are in emu.requests too, with .batch set (Graph counts
                           #   each of them against its limits)
    POST /v1.0/$batch      # + JSON batching as documented: see batch.py for what is emulated
    emu.internal_errors    # + tracebacks of emulator bugs (answered 500 "emulatorBug");
                           #   the `graph` fixture fails the test when there are any
    certs.make_certificate() -> AppCertificate (.msal_credential(), .certificate_pem)   # +

Behaviour worth knowing:
- TLS: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on this machine) override a
  Session's `verify`, and msal sets `verify` on its own Session; so `verify=emu.ca_path` is
  ignored where those variables are set unless the path is passed per request (or the variables
  are removed, as test_emulator.py does).
- Tokens: `expire_tokens()` invalidates them on the server only; msal's cache still returns the
  old token until it is within 5 minutes of its own expiry, so a client must drop its cached
  token (e.g. `remove_tokens_for_client()`) on a 401. With `token_lifetime` under 300 s msal
  asks for a new token on every acquire, which emulates natural expiry.
- Mail ids: immutable ids only with `Prefer: IdType="ImmutableId"`; regular ids change on move.
  Delta: default page 10 (`Prefer: odata.maxpagesize=N` or `$top`), nextLinks and deltaLinks
  are reusable, `changeType=created` hides updates and removals as Graph does; a lost token
  answers 410 {"error": {"code": "syncStateNotFound", "innerError": {"code": "SyncStateNotFound"}}}.
  DELETE on a message moves it to Deleted Items (same immutable id); DELETE there, or
  POST …/permanentDelete, puts it out of reach (404 ErrorItemNotFound).
- Folders: POST …/children {"name", "folder": {}, "@microsoft.graph.conflictBehavior"} (body
  or URL; "fail" by default here) -> 201, or 409 nameAlreadyExists (+). PUT …:/name:/content
  ?@microsoft.graph.conflictBehavior=fail on an existing file -> 409 nameAlreadyExists.
- Files: content GETs answer 302 to `{url}/_download/{token}` (no bearer needed). Uploads honour
  If-Match / If-None-Match (412 resourceModified) and locks (423); an upload session re-checks
  its If-Match when the last chunk arrives.
- Workbooks: values written like typing in Excel: "=…" (and "+x"/"-x" that are not numbers)
  become formulas, a leading "'" keeps text, numeric strings become numbers, "TRUE"/"FALSE"
  booleans, ISO dates "2024-05-01[ 10:00[:00]]" dates — unless the cell's format is Text ("@").
  Formulas are not calculated: `values` shows the formula text, so check `formulas` or the file.
  Dates read back as Excel serial numbers. Writes without a session, or in a persistChanges
  session, are saved to the file at once (new eTag); a persistChanges=false session edits a
  private copy. A table with only a header row grows from the row
  below it. Expired/unknown session: 404 itemNotFound, innerError code invalidSessionReCreatable.
  A locked file: createSession and writes answer 409 EditModeCannotAcquireLock; file uploads 423.
  `refuse_workbook_api(True)`: every /workbook call answers 403 accessDenied.
"""

from .certs import AppCertificate, make_certificate
from .common import RecordedRequest
from .mail import OutgoingMail
from .server import GraphEmulator

__all__ = ["AppCertificate", "GraphEmulator", "OutgoingMail", "RecordedRequest", "make_certificate"]
