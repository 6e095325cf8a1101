"""`GraphEmulator`: one HTTPS server on 127.0.0.1 serving the token endpoint and Graph v1.0."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import trustme

from .auth import DEFAULT_PERMISSIONS, App, AuthService
from .batch import DropConnection, handle_batch
from .common import (
    GraphError,
    RecordedRequest,
    Request,
    Response,
    json_response,
    odata_keys_to_segments,
)
from .drive import DriveService
from .faults import Fault, Faults
from .mail import MailService, OutgoingMail
from .workbook import WorkbookService


class GraphEmulator:
    """Stateful stand-in for login.microsoftonline.com and graph.microsoft.com (see __init__)."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.lock = threading.RLock()
        self.auth = AuthService(self.lock)
        self.mail = MailService(self.lock)
        self.drive = DriveService(self.lock)
        self.workbooks = WorkbookService(self.lock, self.drive)
        self.drive.workbooks = self.workbooks
        self.faults = Faults(self.lock)
        self.requests: list[RecordedRequest] = []
        self.internal_errors: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp: Path | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> GraphEmulator:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self._tmp = Path(tempfile.mkdtemp(prefix="graph-emulator-"))
        ca.cert_pem.write_to_path(str(self._tmp / "ca.pem"))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        server = _Server(("127.0.0.1", 0), _Handler)
        server.emulator = self
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> GraphEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def authority_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def authority(self) -> str:
        return f"https://{self.authority_host}/{self.tenant_id}"

    @property
    def ca_path(self) -> str:
        if self._tmp is None:
            raise RuntimeError("GraphEmulator.start() first: the CA is made when it starts")
        return str(self._tmp / "ca.pem")

    @property
    def tenant_id(self) -> str:
        return self.auth.tenant_id

    @tenant_id.setter
    def tenant_id(self, value: str) -> None:
        self.auth.tenant_id = value

    @property
    def token_lifetime(self) -> int:
        return self.auth.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, value: int) -> None:
        self.auth.token_lifetime = value

    def reset(self) -> None:
        with self.lock:
            self.auth.reset()
            self.mail.reset()
            self.drive.reset()
            self.workbooks.reset()
            self.faults.clear()
            self.requests.clear()
            self.internal_errors.clear()
            self.latency = 0.0

    # --- apps and tokens ----------------------------------------------------------------------

    def add_app(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        certificate_pem: str | bytes | None = None,
        permissions: Iterable[str] = DEFAULT_PERMISSIONS,
        grant_all_sites: bool = True,
        mailboxes: Iterable[str] | None = None,
    ) -> App:
        return self.auth.add_app(
            client_id,
            secret=secret,
            certificate_pem=certificate_pem,
            permissions=permissions,
            grant_all_sites=grant_all_sites,
            mailboxes=mailboxes,
        )

    def set_permissions(self, client_id: str, permissions: Iterable[str]) -> None:
        """Change an app's consented permissions (empty = consent revoked: Graph answers 401)."""
        with self.lock:
            self.auth.apps[client_id].permissions = set(permissions)

    def expire_secret(self, client_id: str) -> None:
        """The app's client secret has passed its end date (AADSTS7000222)."""
        with self.lock:
            self.auth.apps[client_id].secret_expired = True

    def grant_site(self, client_id: str, host: str, site_path: str, role: str = "write") -> None:
        """`POST /sites/{id}/permissions {"roles": [role], "grantedTo": …}` for a Sites.Selected
        app; `role` is read, write, manage or fullcontrol."""
        with self.lock:
            site = self.drive.site_by_path(host, site_path)
            self.auth.apps[client_id].site_grants[site.id] = role

    def expire_tokens(self) -> None:
        self.auth.expire_tokens()

    # --- mail ---------------------------------------------------------------------------------

    def add_mailbox(self, address: str) -> str:
        return self.mail.add_mailbox(address)

    def add_folder(self, address: str, display_name: str, parent: str = "msgfolderroot") -> str:
        return self.mail.add_folder(address, display_name, parent)

    def deliver(self, address: str, raw: bytes, folder: str = "inbox") -> str:
        return self.mail.deliver(address, raw, folder)

    def folder_messages(self, address: str, folder_name: str) -> list[dict[str, Any]]:
        return self.mail.folder_messages(address, folder_name)

    def sent_messages(self, address: str) -> list[dict[str, Any]]:
        return self.mail.folder_messages(address, "sentitems")

    def outbox(self, address: str | None = None) -> list[OutgoingMail]:
        """Every message that was sent (sendMail or a sent draft), saved to Sent Items or not."""
        with self.lock:
            return [
                m
                for m in self.mail.outgoing
                if address is None or m.sender.lower() == address.lower()
            ]

    def lose_delta_tokens(self) -> None:
        self.mail.lose_delta_tokens()

    # --- files and workbooks ------------------------------------------------------------------

    def add_site(self, host: str, site_path: str) -> str:
        return self.drive.add_site(host, site_path)

    def put_file(self, host: str, site_path: str, file_path: str, data: bytes) -> str:
        return self.drive.put_file(host, site_path, file_path, data)

    def get_file(self, host: str, site_path: str, file_path: str) -> bytes:
        return self.drive.get_file(host, site_path, file_path)

    def file_item(self, host: str, site_path: str, file_path: str) -> dict[str, Any]:
        """The driveItem JSON (id, eTag, cTag, size, …) as Graph would return it."""
        return self.drive.file_item(host, site_path, file_path, self.url)

    def set_file_locked(self, host: str, site_path: str, file_path: str, locked: bool) -> None:
        self.drive.set_file_locked(host, site_path, file_path, locked)

    def refuse_workbook_api(self, refuse: bool = True) -> None:
        with self.lock:
            self.workbooks.refused = refuse

    @property
    def workbook_session_idle(self) -> float:
        """Seconds a workbook session may sit idle before Graph drops it (default 300)."""
        return self.workbooks.session_idle

    @workbook_session_idle.setter
    def workbook_session_idle(self, value: float) -> None:
        self.workbooks.session_idle = value

    def expire_workbook_sessions(self) -> None:
        self.workbooks.expire_sessions()

    # --- faults and the request log -----------------------------------------------------------

    def add_fault(
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
        self.faults.add(
            method,
            path_regex,
            status,
            times=times,
            headers=headers,
            body=body,
            after_commit=after_commit,
            delay=delay,
        )

    def clear_faults(self) -> None:
        self.faults.clear()

    def record(self, recorded: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(recorded)

    @property
    def round_trips(self) -> list[RecordedRequest]:
        """+ The HTTP requests that reached the server (a $batch is one; its requests are not)."""
        with self.lock:
            return [r for r in self.requests if r.batch is None]

    def count_requests(self, method: str | None = None, path_regex: str = "") -> int:
        pattern = re.compile(path_regex)
        with self.lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method.upper()) and pattern.search(r.path)
            )

    # --- dispatch -----------------------------------------------------------------------------

    def dispatch(self, req: Request) -> Response:
        segments = [s for s in req.path.split("/") if s]
        if not segments:
            raise GraphError(400, "BadRequest", "Invalid request.")
        if (
            req.method == "GET"
            and len(segments) == 4
            and [s.lower() for s in segments[1:]] == ["v2.0", ".well-known", "openid-configuration"]
        ):
            return self.auth.openid_configuration(req, segments[0])
        if (
            req.method == "POST"
            and len(segments) == 4
            and [s.lower() for s in segments[1:]] == ["oauth2", "v2.0", "token"]
        ):
            return self.auth.token(req, segments[0])
        if segments[0] == "_download" and len(segments) == 2:
            return self.drive.download(req, segments[1])
        if segments[0] == "_upload" and len(segments) == 2:
            return self.drive.upload_chunk(req, segments[1])
        if segments[0].lower() != "v1.0":
            raise GraphError(404, "NotFound", f"No such endpoint on the emulator: {req.raw_path}")
        req.app = self.auth.authenticate(req)
        rest = segments[1:]
        response: Response | None = None
        head = rest[0].lower() if rest else ""
        if head == "users" and len(rest) >= 3:
            response = self.mail.handle(req, rest[1], rest[2:])
        elif head in ("sites", "drives"):
            response = self.drive.handle(req, req.path.split("/", 2)[2])
        if response is None:
            segment = rest[-1] if rest else ""
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
        return response


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: GraphEmulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that drop the connection (timeouts, injected drops) are not errors here."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms ACK stall

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is `emulator.requests`."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        emu = self.server.emulator
        body = self._read_body()
        split = urlsplit(self.path)
        raw_path = re.sub(r"/{2,}", "/", unquote(split.path))
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = {k: v for k, v in self.headers.items()}
        req = Request(
            method=self.command,
            path=odata_keys_to_segments(raw_path),
            raw_path=raw_path,
            query=query,
            headers=headers,
            body=body,
            base_url=emu.url,
        )
        with emu.lock:
            emu.requests.append(
                RecordedRequest(self.command, raw_path, dict(query), headers, req.json, body)
            )
        if emu.latency:
            time.sleep(emu.latency)
        fault = emu.faults.take(req)
        try:
            if fault is not None and not fault.after_commit:
                response = fault.response(req)
            else:
                response = self._run(emu, req)
                if fault is not None:
                    response = fault.response(req)
        except DropConnection:  # a status-0 fault on a request inside a $batch
            fault = Fault("*", re.compile(""), 0, 0, None, None, False, 0.0)
            response = Response(0)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status == 0:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(req, response)

    def _run(self, emu: GraphEmulator, req: Request) -> Response:
        try:
            if req.method == "POST" and req.raw_path.lower() == "/v1.0/$batch":
                req.app = emu.auth.authenticate(req)
                return handle_batch(
                    req, lambda sub: self._run(emu, sub), emu.faults.take, emu.record
                )
            return emu.dispatch(req)
        except DropConnection:
            raise
        except GraphError as exc:
            return exc.to_response(req)
        except Exception:  # an emulator bug: answer 500 and keep the traceback for the tests
            trace = traceback.format_exc()
            with emu.lock:
                emu.internal_errors.append(f"{req.method} {req.raw_path}\n{trace}")
            return json_response(
                500,
                {"error": {"code": "emulatorBug", "message": trace.splitlines()[-1]}},
            )

    def _send(self, req: Request, response: Response) -> None:
        self.send_response(response.status)
        headers = dict(response.headers)
        headers.setdefault("request-id", req.request_id)
        headers.setdefault("client-request-id", req.header("client-request-id") or req.request_id)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)
