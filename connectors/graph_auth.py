"""App-only sign-in to Microsoft Graph with msal, through O365's Account and Connection.

Why the subclasses (see ``docs/microsoft-365.md`` and the m365 notes):

* O365 2.1 cannot renew an expired app-only token (python-o365 issue 1195): its
  ``Connection.refresh_token`` asks msal for ``scopes=None``. ``AppOnlyConnection`` asks for the
  Graph ``.default`` scope every time, so a worker keeps working past expiry indefinitely.
* msal needs ``https`` and, for a login host it does not know (a national cloud mirror, the
  test emulator), ``instance_discovery=False``; O365 builds the msal client itself, so the
  subclass builds it with our authority, CA bundle and timeout.
* O365's own urllib3 retry is turned off (``request_retries=0``): it does not retry POST, and a
  fractional ``Retry-After`` such as ``2.128`` makes it raise. ``connectors.graph_http`` holds
  the one retry policy for every Graph call.

Tokens live in memory only (``MemoryTokenBackend``): app-only has no refresh token, so there is
nothing worth persisting; msal's cache makes ``ensure_token`` a cheap call before each job.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import msal
import requests
from cryptography import x509
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from O365 import Account
from O365.connection import Connection, MSGraphProtocol
from O365.utils.token import MemoryTokenBackend

from service.config import M365, secret_from_env
from service.errors import ConfigError, ConnectorError, PermanentError, TransientError

log = logging.getLogger("prevent_service.graph")

# Every Graph call opts in to immutable ids: an id that survives moves between folders, so the
# ledger's item id stays valid after ``mark_processed``
# (learn.microsoft.com/graph/outlook-immutable-id).
IMMUTABLE_ID_HEADERS = {"Prefer": 'IdType="ImmutableId"'}


class _QuietO365(logging.Filter):
    """O365 logs bearer tokens at DEBUG and every 4xx at ERROR (404s we expect, too).

    We translate and log errors ourselves, without URLs' secrets, so drop both kinds here.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return False
        return not str(record.msg).startswith(("Client Error", "Server Error"))


logging.getLogger("O365.connection").addFilter(_QuietO365())


def graph_scope(graph_url: str) -> str:
    """The app-only scope for a Graph host: ``https://graph.microsoft.com/.default``."""
    return graph_url.rstrip("/") + "/.default"


class GraphProtocol(MSGraphProtocol):
    """O365's Graph protocol pointed at the configured Graph host (global cloud by default)."""

    def __init__(self, graph_url: str, **kwargs: Any) -> None:
        # MSGraphProtocol reads these class attributes through ``self``; an instance value wins.
        self._protocol_url = graph_url.rstrip("/") + "/"
        self._oauth_scope_prefix = self._protocol_url
        super().__init__(api_version="v1.0", **kwargs)


class PinnedSession(requests.Session):
    """A Session whose ``verify`` and timeout apply to every request.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` from the environment override a
    session's ``verify`` (psf/requests#3829), so a configured ``m365.ca_bundle`` would be
    ignored on machines that set them; passing it per request makes it stick.
    """

    def __init__(self, verify: bool | str, timeout: Any = None) -> None:
        super().__init__()
        self.verify = verify
        self.default_timeout = timeout

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if isinstance(self.verify, str):
            kwargs.setdefault("verify", self.verify)
        if self.default_timeout is not None and kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


class SharedSignIn:
    """One msal app and token cache for every Graph backend built from one ``[m365]`` section:
    one token request per process instead of one per backend (mailbox, sender, each
    workbook). msal's cache is thread-safe and serves the token until 5 minutes before expiry."""

    def __init__(self) -> None:
        self.token_backend = MemoryTokenBackend()
        self.msal_client: msal.ConfidentialClientApplication | None = None
        self.lock = threading.Lock()
        # Small reads other backends want answered in the mailbox's next round trip (see
        # GraphHttp.want): key → path; and their answers: key → (monotonic time, outcome).
        self.wanted: dict[str, str] = {}
        self.fetched: dict[str, tuple[float, Any]] = {}
        self.remembered = False  # the ledger's remembered ride-alongs were added


# Keyed by the identity of the loaded M365 section (a config loaded again, or another test's
# config, gets its own); the section is kept with it so its id is never reused meanwhile.
_SIGN_INS: dict[int, tuple[M365, SharedSignIn]] = {}
_SIGN_INS_GUARD = threading.Lock()


def shared_sign_in(m365: M365) -> SharedSignIn:
    with _SIGN_INS_GUARD:
        entry = _SIGN_INS.get(id(m365))
        if entry is None or entry[0] is not m365:
            entry = (m365, SharedSignIn())
            _SIGN_INS[id(m365)] = entry
        return entry[1]


class AppOnlyConnection(Connection):
    """A Connection that renews app-only tokens and builds msal for our authority."""

    _msal_client: msal.ConfidentialClientApplication | None
    session: requests.Session | None

    def __init__(
        self,
        credentials: tuple[str, Any],
        *,
        graph_scope: str,
        authority_url: str,
        instance_discovery: bool,
        shared: SharedSignIn | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(credentials, **kwargs)
        self.graph_scope = graph_scope
        self._msal_authority = authority_url
        self._instance_discovery = instance_discovery
        self.shared = shared

    def get_session(self, load_token: bool = False) -> requests.Session:
        session = super().get_session(load_token=load_token)
        return self._pinned(session)

    def get_naive_session(self) -> requests.Session:
        return self._pinned(super().get_naive_session())

    def _pinned(self, session: requests.Session) -> requests.Session:
        pinned = PinnedSession(self.verify_ssl, self.timeout)
        pinned.headers.update(session.headers)
        pinned.proxies = session.proxies
        session.close()
        return pinned

    @property
    def msal_client(self) -> msal.ConfidentialClientApplication:
        if self._msal_client is None and self.shared is not None:
            with self.shared.lock:
                if self.shared.msal_client is None:
                    self.shared.msal_client = self._build_msal_client()
                self._msal_client = self.shared.msal_client
        return self._build_msal_client() if self._msal_client is None else self._msal_client

    def _build_msal_client(self) -> msal.ConfidentialClientApplication:
        if self._msal_client is None:
            try:
                self._msal_client = msal.ConfidentialClientApplication(
                    client_id=self.auth[0],
                    client_credential=self.auth[1],
                    authority=self._msal_authority,
                    token_cache=self.token_backend,
                    http_client=self._pinned(requests.Session()),
                    # None: msal asks login.microsoftonline.com about hosts it does not know;
                    # False: trust the configured host (national cloud mirror, emulator).
                    instance_discovery=None if self._instance_discovery else False,
                )
            except requests.exceptions.RequestException as exc:
                raise _network_error(exc, f"reach the sign-in host {self._msal_authority}") from exc
            except ValueError as exc:
                raise PermanentError(
                    f"msal refused the sign-in settings ({_first_line(exc)}): check "
                    "m365.tenant_id, m365.authority_host and the certificate file"
                ) from exc
        return self._msal_client

    def refresh_token(self) -> bool:
        """Get a token for the Graph ``.default`` scope (from msal's cache while it is fresh).

        O365 calls this after a 401 with an expired token; we call it before each job.
        """
        if self.session is None:
            self.session = self.get_session(load_token=True)
        try:
            result = self.msal_client.acquire_token_for_client(scopes=[self.graph_scope])
        except requests.exceptions.RequestException as exc:
            raise _network_error(exc, "get a token from the sign-in host") from exc
        except ValueError as exc:  # e.g. a certificate msal cannot load
            raise PermanentError(
                f"could not build the sign-in request ({_first_line(exc)}): check "
                "m365.certificate_path and its password"
            ) from exc
        if "access_token" not in result:
            raise token_error(result, credential=self.credential_hint)
        self.update_session_auth_header(access_token=result["access_token"])
        return True

    def renew_token(self) -> None:
        """Drop cached access tokens and fetch a new one (after Graph said 401 to a token
        that msal still thought was fresh: revoked, or the clock is off)."""
        for entry in list(self.token_backend.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            self.token_backend.remove_at(entry)
        self.refresh_token()

    credential_hint: str = "the client credential"


class AppOnlyAccount(Account):
    connection_constructor = AppOnlyConnection
    con: AppOnlyConnection


def is_microsoft_authority(host: str) -> bool:
    return host.lower() in WELL_KNOWN_AUTHORITY_HOSTS


def client_credential(m365: M365) -> tuple[Any, str]:
    """msal's ``client_credential`` from config: a certificate (preferred) or a secret.

    Returns the credential and a hint for error messages naming where it came from.
    """
    if m365.certificate_path is not None:
        path = Path(m365.certificate_path)
        password = secret_from_env(
            m365.certificate_password_env, key="m365.certificate_password_env"
        )
        if not path.is_file():
            raise ConfigError(f"certificate file not found: {path}", key="m365.certificate_path")
        if path.suffix.lower() in {".pfx", ".p12"}:
            cred: dict[str, Any] = {"private_key_pfx_path": str(path)}
        else:
            cred = _pem_credential(path)
        if password:
            cred["passphrase"] = password
        if m365.certificate_thumbprint:
            # A configured SHA-1 thumbprint (as the portal shows it) wins over computing one.
            cred["thumbprint"] = m365.certificate_thumbprint.replace(":", "").strip()
            cred.pop("public_certificate", None)
        return cred, f"the certificate {path.name}"
    if m365.client_secret_env:
        secret = secret_from_env(m365.client_secret_env, key="m365.client_secret_env")
        return secret, f"the client secret in ${m365.client_secret_env}"
    raise ConfigError(
        "set certificate_path (preferred) or client_secret_env for the app registration",
        key="m365",
    )


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)


def _pem_credential(path: Path) -> dict[str, Any]:
    """A PEM file holding the private key and the certificate (``openssl`` output)."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read certificate file {path}: {exc}", key="m365.certificate_path"
        ) from exc
    blocks = [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(text)]
    key = next((block for kind, block in blocks if kind.endswith("PRIVATE KEY")), None)
    if key is None:
        raise ConfigError(
            f"{path.name} holds no private key: use a PEM with the key and the certificate, "
            "or a .pfx",
            key="m365.certificate_path",
        )
    cred: dict[str, Any] = {"private_key": key}
    # Only the first (leaf) certificate: a chain in x5c is a cause of AADSTS700027.
    leaf = next((block for kind, block in blocks if kind == "CERTIFICATE"), None)
    if leaf is not None:
        cred["public_certificate"] = leaf
    return cred


def build_account(m365: M365) -> AppOnlyAccount:
    """An O365 Account for app-only Graph calls as configured in ``[m365]``. No network yet."""
    credential, hint = client_credential(m365)
    host = m365.authority_host.strip().rstrip("/")
    if "://" in host:
        raise ConfigError(
            "give the host name only, e.g. login.microsoftonline.com", key="m365.authority_host"
        )
    if not m365.graph_url.startswith("https://"):
        raise ConfigError("must start with https://", key="m365.graph_url")
    verify: bool | str = str(m365.ca_bundle) if m365.ca_bundle else True
    if m365.ca_bundle and not Path(m365.ca_bundle).is_file():
        raise ConfigError(f"CA bundle not found: {m365.ca_bundle}", key="m365.ca_bundle")
    read = float(m365.timeout_seconds)
    shared = shared_sign_in(m365)
    account = AppOnlyAccount(
        (m365.client_id, credential),
        protocol=GraphProtocol(m365.graph_url),
        auth_flow_type="credentials",
        tenant_id=m365.tenant_id,
        token_backend=shared.token_backend,
        timeout=(min(10.0, read), read),  # (connect, read); O365's default is no timeout at all
        request_retries=0,  # our policy in graph_http is the only retry
        requests_delay=0,  # our policy paces on 429/Retry-After instead of a fixed gap
        raise_http_errors=True,
        verify_ssl=verify,
        default_headers=dict(IMMUTABLE_ID_HEADERS),
        graph_scope=graph_scope(m365.graph_url),
        authority_url=f"https://{host}/{m365.tenant_id}",
        instance_discovery=is_microsoft_authority(host),
        shared=shared,
    )
    account.con.credential_hint = hint
    return account


# ---------------------------------------------------------------------------- errors

# AADSTS code → what the admin should do. Codes from learn.microsoft.com/entra/identity-platform/
# reference-error-codes; the message names the credential without showing it.
_AADSTS: dict[str, str] = {
    "7000215": "{cred} is not valid (AADSTS7000215): copy the secret's Value (not its Secret ID) "
    "from the app registration > Certificates & secrets",
    "7000222": "{cred} has expired (AADSTS7000222): create a new client secret in the app "
    "registration > Certificates & secrets (or move to a certificate) and update the environment",
    "700027": "{cred} does not match a certificate on the app registration (AADSTS700027): upload "
    "the public certificate (.cer) under Certificates & secrets, and make sure the key file holds "
    "that certificate's private key and only the leaf certificate",
    "700016": "the app (m365.client_id) is not found in the tenant (AADSTS700016): check "
    "m365.client_id and m365.tenant_id, and that an admin consented in this tenant",
    "90002": "the tenant (m365.tenant_id) was not found (AADSTS90002): check m365.tenant_id",
    "900023": "m365.tenant_id is not a valid tenant id or domain (AADSTS900023)",
    "7000112": "the app registration is disabled (AADSTS7000112): an admin must enable it",
    "700024": "the certificate's signed assertion is outside its valid time (AADSTS700024): "
    "check this machine's clock",
    "1002012": "the requested scope is invalid (AADSTS1002012): check m365.graph_url",
    "500011": "the Graph resource is not in this tenant (AADSTS500011): check m365.graph_url",
    "65001": "admin consent is missing or was revoked (AADSTS65001): grant admin consent for the "
    "app's application permissions in Entra ID",
}


def token_error(
    result: Mapping[str, Any], *, credential: str = "the client credential"
) -> ConnectorError:
    """An msal error result → our error, saying what to fix. Never includes the credential."""
    error = str(result.get("error") or "unknown_error")
    description = str(result.get("error_description") or "")
    for code in re.findall(r"AADSTS(\d+)", description):
        if code in _AADSTS:
            return PermanentError(
                "could not get a Graph token: " + _AADSTS[code].format(cred=credential)
            )
    if error in {"temporarily_unavailable", "server_error"} or "AADSTS50196" in description:
        return TransientError(
            f"could not get a Graph token: the sign-in service said {error}; will retry"
        )
    if error == "invalid_client":
        return PermanentError(
            f"could not get a Graph token: {credential} was refused (invalid_client: "
            f"{_first_line(description)}): check m365.client_id and the credential"
        )
    return PermanentError(
        f"could not get a Graph token ({error}: {_first_line(description)}): check the [m365] "
        "settings and the app registration"
    )


def _network_error(exc: requests.exceptions.RequestException, action: str) -> ConnectorError:
    if isinstance(exc, requests.exceptions.SSLError):
        return PermanentError(
            f"could not {action}: the TLS certificate was not trusted ({type(exc).__name__}); "
            "behind a TLS-inspecting proxy set m365.ca_bundle to its CA certificate file"
        )
    return TransientError(f"could not {action}: {type(exc).__name__}; will retry")


def _first_line(value: object) -> str:
    text = str(value).strip().splitlines()
    return (text[0] if text else "")[:200]


def certificate_expiry(m365: M365) -> datetime | None:
    """When the app's certificate stops working (``None`` with a secret, or unreadable).

    Azure shows a secret's expiry only in the portal; a certificate's is in the file, so the
    service can warn weeks ahead instead of failing on the day."""
    if m365.certificate_path is None:
        return None
    path = Path(m365.certificate_path)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        if path.suffix.lower() in {".pfx", ".p12"}:
            from cryptography.hazmat.primitives.serialization import pkcs12

            password = os.environ.get(m365.certificate_password_env or "", "") or None
            _, cert, _ = pkcs12.load_key_and_certificates(
                data, password.encode() if password else None
            )
            if cert is None:
                return None
        else:
            cert = x509.load_pem_x509_certificate(data)
    except (ValueError, TypeError):
        return None
    return cert.not_valid_after_utc
