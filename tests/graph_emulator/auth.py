"""The Microsoft identity platform side: OpenID configuration, the client-credentials token
endpoint (secret or certificate-signed client assertion), bearer checks and app permissions."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .common import GraphError, Request, Response, json_response, utcnow

DEFAULT_PERMISSIONS = ("Mail.ReadWrite", "Mail.Send", "Sites.Selected")

# Which application permissions satisfy each kind of call.
MAIL_READ = {"Mail.Read", "Mail.ReadWrite"}
MAIL_WRITE = {"Mail.ReadWrite"}
MAIL_SEND = {"Mail.Send"}
SITES_READ_ALL = {
    "Sites.Read.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
    "Files.Read.All",
    "Files.ReadWrite.All",
}
SITES_WRITE_ALL = {
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
    "Files.ReadWrite.All",
}
GRANT_ROLES = {"read": 1, "write": 2, "manage": 3, "fullcontrol": 4}


@dataclass
class App:
    client_id: str
    secret: str | None
    certificate: x509.Certificate | None
    permissions: set[str]
    grant_all_sites: bool = True
    site_grants: dict[str, str] = field(default_factory=dict)  # site id -> role
    mailboxes: set[str] | None = None  # Exchange RBAC scope; None = every mailbox
    secret_expired: bool = False


@dataclass
class IssuedToken:
    client_id: str
    expires_at: float


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class AuthService:
    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.apps: dict[str, App] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.token_lifetime = 3600
        self.tenant_id = "00000000-0000-0000-0000-000000000001"

    def reset(self) -> None:
        self.apps.clear()
        self.tokens.clear()
        self.token_lifetime = 3600

    # --- set-up -------------------------------------------------------------------------------

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
        cert = None
        if certificate_pem is not None:
            pem = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
            cert = x509.load_pem_x509_certificate(pem)
        app = App(
            client_id,
            secret,
            cert,
            set(permissions),
            grant_all_sites=grant_all_sites,
            mailboxes={m.lower() for m in mailboxes} if mailboxes is not None else None,
        )
        with self.lock:
            self.apps[client_id] = app
        return app

    def expire_tokens(self) -> None:
        with self.lock:
            for token in self.tokens.values():
                token.expires_at = 0.0

    # --- OpenID configuration -----------------------------------------------------------------

    def openid_configuration(self, req: Request, tenant: str) -> Response:
        """msal reads `token_endpoint` and `authorization_endpoint` (msal/authority.py).

        Sample (login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration):
        {"token_endpoint": "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
         "issuer": "https://login.microsoftonline.com/{tenant}/v2.0", "jwks_uri": "…", …}
        """
        if tenant.lower() not in (self.tenant_id, "organizations", "common"):
            return self._aad_error(
                req, 400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found."
            )
        base = f"{req.base_url}/{tenant}"
        return json_response(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{req.base_url}/{tenant}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{req.base_url}/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid"],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
            },
            {"Content-Type": "application/json; charset=utf-8"},
        )

    # --- token endpoint -----------------------------------------------------------------------

    def token(self, req: Request, tenant: str) -> Response:
        """Client credentials grant.

        Success: {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                  "access_token": "eyJ0eXAi…"}
        Failure: 401 {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid
                  client secret provided. …", "error_codes": [7000215], "timestamp": "…",
                  "trace_id": "…", "correlation_id": "…", "error_uri": "…"}
        """
        if tenant.lower() != self.tenant_id:
            return self._aad_error(
                req, 400, "invalid_request", 90002, f"Tenant '{tenant}' not found."
            )
        form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != "client_credentials":
            return self._aad_error(
                req,
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{form.get('grant_type', '')}'.",
            )
        client_id = form.get("client_id", "")
        with self.lock:
            app = self.apps.get(client_id)
        if app is None:
            return self._aad_error(
                req,
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant.",
            )
        scopes = form.get("scope", "").split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return self._aad_error(
                req,
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {form.get('scope', '')} is not valid. Client "
                "credential flows must have a scope value with /.default suffixed to the "
                "resource identifier (application ID URI).",
            )
        failure = self._check_credential(req, app, form, tenant)
        if failure is not None:
            return failure
        access_token = "emu." + secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[access_token] = IssuedToken(client_id, time.time() + self.token_lifetime)
        return json_response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": access_token,
            },
            {"Content-Type": "application/json; charset=utf-8"},
        )

    def _check_credential(
        self, req: Request, app: App, form: dict[str, str], tenant: str
    ) -> Response | None:
        if form.get("client_secret"):
            if app.secret is None or not secrets.compare_digest(form["client_secret"], app.secret):
                return self._aad_error(
                    req,
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request "
                    f"is the client secret value, not the client secret ID, for a secret added "
                    f"to app '{app.client_id}'.",
                )
            if app.secret_expired:
                return self._aad_error(
                    req,
                    401,
                    "invalid_client",
                    7000222,
                    f"The provided client secret keys for app '{app.client_id}' are expired. "
                    "Visit the Azure portal to create new keys for your app.",
                )
            return None
        assertion = form.get("client_assertion")
        if not assertion:
            return self._aad_error(
                req,
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
            )
        if form.get("client_assertion_type") != (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return self._aad_error(
                req, 400, "invalid_request", 50027, "Invalid client_assertion_type."
            )
        token_endpoint = f"{req.base_url}/{tenant}/oauth2/v2.0/token"
        problem = verify_client_assertion(assertion, app, token_endpoint)
        if problem is not None:
            status, code, text = problem
            return self._aad_error(req, status, "invalid_client", code, text)
        return None

    def _aad_error(self, req: Request, status: int, error: str, code: int, text: str) -> Response:
        now = utcnow()
        trace = req.request_id
        correlation = req.header("client-request-id") or str(uuid.uuid4())
        description = (
            f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation} "
            f"Timestamp: {now.strftime('%Y-%m-%d %H:%M:%SZ')}"
        )
        return json_response(
            status,
            {
                "error": error,
                "error_description": description,
                "error_codes": [code],
                "timestamp": now.strftime("%Y-%m-%d %H:%M:%SZ"),
                "trace_id": trace,
                "correlation_id": correlation,
                "error_uri": f"{req.base_url}/error?code={code}",
            },
            {"Content-Type": "application/json; charset=utf-8"},
        )

    # --- bearer tokens on Graph calls ---------------------------------------------------------

    def authenticate(self, req: Request) -> App:
        """401 InvalidAuthenticationToken, as Graph answers, when the bearer is absent or bad."""
        value = req.header("Authorization") or ""
        scheme, _, token = value.partition(" ")
        www = {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token is empty.", headers=www
            )
        with self.lock:
            issued = self.tokens.get(token.strip())
            app = self.apps.get(issued.client_id) if issued else None
        if issued is None or app is None:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed, there are no dots (.).",
                headers=www,
            )
        if issued.expires_at <= time.time():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
                headers=www,
            )
        if not app.permissions:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "The token contains no permissions, or permissions can not be understood.",
                headers=www,
            )
        return app


def verify_client_assertion(
    assertion: str, app: App, token_endpoint: str
) -> tuple[int, int, str] | None:
    """Check a private_key_jwt client assertion as Entra does: the header thumbprint names the
    registered certificate, the signature verifies with its key (RS256 or PS256, which msal uses
    with a SHA-256 thumbprint), aud is the token endpoint, iss = sub = client id, and it is
    within its validity time. Returns (status, AADSTS code, text) on failure."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return 400, 50027, "JWT token is invalid or malformed."
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except ValueError:
        return 400, 50027, "JWT token is invalid or malformed."
    cert = app.certificate
    if cert is None:
        return (
            401,
            700027,
            "Client assertion contains an invalid signature. [Reason - The key was not found.]",
        )
    sha256 = _b64url(cert.fingerprint(hashes.SHA256()))
    sha1 = _b64url(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - x5t is SHA-1 by definition
    sent = str(header.get("x5t#S256") or header.get("x5t") or "")
    if sent.rstrip("=") not in (sha256, sha1):  # msal keeps base64 padding; JOSE drops it
        return (
            401,
            700027,
            "Client assertion contains an invalid signature. [Reason - The key was not found., "
            f"Thumbprint of key used by client: '{sent}']",
        )
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        return 401, 700027, "Client assertion contains an invalid signature. [Reason - key type]"
    signed = f"{parts[0]}.{parts[1]}".encode()
    alg = header.get("alg")
    try:
        if alg == "RS256":
            public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "PS256":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            public_key.verify(signature, signed, pss, hashes.SHA256())
        else:
            return 401, 700027, f"Client assertion uses an unsupported algorithm '{alg}'."
    except InvalidSignature:
        return (
            401,
            700027,
            "Client assertion failed signature validation. [Reason - The provided signature value "
            "did not match the expected signature value.]",
        )
    if claims.get("aud") != token_endpoint:
        return 400, 700023, "Client assertion audience claim does not match Realm issuer."
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        return (
            400,
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        )
    now = time.time()
    exp = claims.get("exp")
    nbf = claims.get("nbf", now)
    if not isinstance(exp, int | float) or exp < now - 300 or nbf > now + 300:
        return 400, 700024, "Client assertion is not within its valid time range."
    return None


def grant_allows(app: App, site_id: str, write: bool) -> bool:
    """Sites.Selected gives nothing by itself: a per-site grant (read/write/…) must exist."""
    needed = SITES_WRITE_ALL if write else SITES_READ_ALL
    if app.permissions & needed:
        return True
    if "Sites.Selected" not in app.permissions:
        return False
    if app.grant_all_sites:
        return True
    role = app.site_grants.get(site_id)
    return role is not None and GRANT_ROLES[role] >= (2 if write else 1)


def require_mail(app: App, mailbox: str, kind: set[str]) -> None:
    """403 ErrorAccessDenied as Exchange answers when the role or the RBAC scope is missing."""
    if not (app.permissions & kind):
        raise GraphError(
            403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
        )
    if app.mailboxes is not None and mailbox.lower() not in app.mailboxes:
        raise GraphError(403, "ErrorAccessDenied", "Access to OData is disabled.")
