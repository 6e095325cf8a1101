"""What the IMAP mailbox and the SMTP sender share: TLS, XOAUTH2, the Microsoft 365 token and
turning a config section's ``password_env`` / ``oauth2`` into credentials.

Both backends log in the same ways (a password from the environment, or XOAUTH2 with an
app-only token from msal for Exchange Online), so the rules and their error texts live here once;
``key`` names the section (``intake.mailbox`` or ``sending.sender``) in every error.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.config import secret_from_env
from service.errors import ConfigError, PermanentError, TransientError

if TYPE_CHECKING:
    from service.config import M365, Config, ImapMailboxConfig, SmtpSenderConfig

TokenProvider = Callable[[], str]

# Microsoft 365: the resource that IMAP, POP and SMTP AUTH tokens are for (app-only flow).
OUTLOOK_SCOPE = "https://outlook.office365.com/.default"


def tls_context(ca_bundle: Path | str | None) -> ssl.SSLContext:
    """Verifying TLS context (certificate and host name), with an extra CA bundle if given."""
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise ConfigError(f"CA bundle not found: {ca_bundle}", key="ca_bundle")
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine, where a clear-text login does not cross the network."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def xoauth2_string(username: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64, which imaplib/smtplib add):
    ``user=<name>^Aauth=Bearer <token>^A^A`` (Google and Microsoft document this form)."""
    return f"user={username}\x01auth=Bearer {token}\x01\x01"


def m365_token_provider(m365: M365, *, scope: str = OUTLOOK_SCOPE) -> TokenProvider:
    """App-only tokens for Exchange Online IMAP/SMTP from msal (client credentials flow).

    msal caches the token in memory and renews it before expiry, so calling this before each
    login is cheap. The credential (certificate or secret) is read as for Graph.
    """
    import msal
    import requests

    from connectors.graph_auth import (
        PinnedSession,
        client_credential,
        is_microsoft_authority,
        token_error,
    )

    credential, hint = client_credential(m365)
    host = m365.authority_host.strip().rstrip("/")
    # Pinned: a configured CA bundle must win over REQUESTS_CA_BUNDLE in the environment.
    session = PinnedSession(str(m365.ca_bundle) if m365.ca_bundle else True, m365.timeout_seconds)
    app: Any = None

    def provider() -> str:
        nonlocal app
        try:
            if app is None:
                app = msal.ConfidentialClientApplication(
                    client_id=m365.client_id,
                    client_credential=credential,
                    authority=f"https://{host}/{m365.tenant_id}",
                    http_client=session,
                    instance_discovery=None if is_microsoft_authority(host) else False,
                    timeout=m365.timeout_seconds,
                )
            result = app.acquire_token_for_client(scopes=[scope])
        except requests.exceptions.RequestException as exc:
            raise TransientError(
                f"could not reach the sign-in host {host} for a mail token "
                f"({type(exc).__name__}); will retry"
            ) from exc
        except ValueError as exc:
            raise PermanentError(
                f"msal refused the sign-in settings ({str(exc).splitlines()[0][:200]}): check "
                "m365.tenant_id, m365.authority_host and the certificate"
            ) from exc
        if "access_token" not in result:
            error = token_error(result, credential=hint)
            raise type(error)(str(error).replace("a Graph token", "a mail (IMAP/SMTP) token"))
        return str(result["access_token"])

    return provider


@dataclass(frozen=True)
class MailCredentials:
    """At most one of ``password`` / ``token_provider`` (neither: SMTP without AUTH); ``hint``
    is what a refused login tells the admin to check."""

    password: str | None
    token_provider: TokenProvider | None
    hint: str


def credentials_from_config(
    section: ImapMailboxConfig | SmtpSenderConfig,
    config: Config,
    *,
    key: str,
    username_optional: bool = False,
) -> MailCredentials:
    """``password_env`` or ``oauth2 = true`` of ``section`` (at ``key``) as credentials.

    ``username_optional`` (SMTP): no username means no AUTH, so neither is needed then, and
    XOAUTH2 needs the username it signs in as.
    """
    hint = f"the password in ${section.password_env}" if section.password_env else "the OAuth token"
    if section.oauth2:
        if config.m365 is None:
            raise ConfigError(
                "oauth2 = true takes its token from the [m365] app registration, and there "
                "is no [m365] section (for Google Workspace use an app password instead)",
                key=f"{key}.oauth2",
            )
        if username_optional and not section.username:
            raise ConfigError(
                "oauth2 needs username (the mailbox to send as)", key=f"{key}.username"
            )
        return MailCredentials(None, m365_token_provider(config.m365), hint)
    if section.password_env:
        return MailCredentials(
            secret_from_env(section.password_env, key=f"{key}.password_env"), None, hint
        )
    if not username_optional:
        raise ConfigError(
            "set password_env (the environment variable holding the password) or oauth2 = true",
            key=f"{key}.password_env",
        )
    if section.username:
        raise ConfigError(
            "set password_env (the environment variable holding the password) or "
            "oauth2 = true, or remove username to send without AUTH",
            key=f"{key}.password_env",
        )
    return MailCredentials(None, None, hint)
