"""App-only sign-in against the emulator's token endpoint: real msal, real O365, HTTPS."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import load_pem_x509_certificate

from connectors.graph_http import connect
from service.errors import ConfigError, PermanentError
from tests.connectors.harness_graph import (
    CLIENT_ID,
    MAILBOX,
    SECRET_ENV,
    GraphSetup,
    graph_config,
    graph_setup,
    m365_section,
)
from tests.connectors.test_mailbox_contract import make_raw
from tests.connectors.test_sender_contract import message
from tests.graph_emulator import make_certificate

TOKEN_PATH = r"/oauth2/v2\.0/token"


@pytest.fixture
def setup(tmp_path: Path, request: pytest.FixtureRequest) -> GraphSetup:
    return graph_setup(tmp_path, request)


def _with_m365(setup: GraphSetup, tmp_path: Path, **changes: Any) -> GraphSetup:
    config = graph_config(setup.emu, tmp_path, m365=m365_section(setup.emu, **changes))
    return GraphSetup(setup.emu, config, setup.ledger, setup.sleeps)


def test_a_secret_gets_a_token_and_every_call_asks_for_immutable_ids(setup: GraphSetup) -> None:
    setup.emu.deliver(MAILBOX, make_raw("Concern", "Text", message_id="<a1@example.org>"))

    items = list(setup.mailbox().fetch_new())

    assert len(items) == 1
    graph_calls = [r for r in setup.emu.requests if r.path.startswith("/v1.0/")]
    assert graph_calls
    for recorded in graph_calls:
        headers = {k.lower(): v for k, v in recorded.headers.items()}
        assert headers["authorization"].startswith("Bearer ")
        assert 'IdType="ImmutableId"' in headers["prefer"]


def test_the_token_comes_from_msals_cache_until_it_ages(setup: GraphSetup) -> None:
    box = setup.mailbox()

    for _ in range(5):
        box.http.ensure_token()  # what each job does first

    assert setup.emu.count_requests("POST", TOKEN_PATH) == 1


def test_token_expiry_mid_run_carries_on_indefinitely(setup: GraphSetup) -> None:
    box = setup.mailbox()
    box.http.ensure_token()
    seen: list[str] = []
    for round_ in range(4):
        setup.emu.deliver(
            MAILBOX, make_raw(f"C{round_}", "Text", message_id=f"<e{round_}@example.org>")
        )
        # The server forgets every token it issued; msal still holds one it thinks is fresh.
        setup.emu.expire_tokens()
        seen += [item.item_id for item in box.fetch_new()]

    assert len(seen) == len(set(seen)) == 4
    assert setup.emu.count_requests("POST", TOKEN_PATH) == 1 + 4


def test_tokens_that_expire_naturally_are_renewed(setup: GraphSetup) -> None:
    # Under msal's five-minute margin every acquire fetches a new token, as at natural expiry.
    setup.emu.token_lifetime = 2
    box = setup.mailbox()
    for round_ in range(3):
        setup.emu.deliver(
            MAILBOX, make_raw(f"N{round_}", "Text", message_id=f"<n{round_}@example.org>")
        )
        assert len(list(box.fetch_new())) == 1

    assert setup.emu.count_requests("POST", TOKEN_PATH) >= 3


def test_a_wrong_secret_is_a_permanent_error_that_says_what_to_do(
    setup: GraphSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "not-the-secret")

    with pytest.raises(PermanentError) as info:
        list(setup.mailbox().fetch_new())

    message = str(info.value)
    assert "AADSTS7000215" in message
    assert "Value (not its Secret ID)" in message
    assert "not-the-secret" not in message
    assert SECRET_ENV in message


def test_an_expired_secret_is_named(setup: GraphSetup) -> None:
    setup.emu.expire_secret(CLIENT_ID)

    with pytest.raises(PermanentError, match=r"expired \(AADSTS7000222\).*new client secret"):
        setup.mailbox().http.ensure_token()


def test_a_missing_secret_variable_is_a_config_error(
    setup: GraphSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV)

    with pytest.raises(ConfigError, match=f"m365.client_secret_env.*{SECRET_ENV}"):
        setup.mailbox()


def _pem_file(tmp_path: Path, cert: Any, name: str = "app.pem") -> Path:
    path = tmp_path / name
    path.write_text(cert.private_key_pem + cert.certificate_pem)
    return path


def test_a_certificate_pem_signs_in(setup: GraphSetup, tmp_path: Path) -> None:
    cert = make_certificate()
    setup.emu.add_app(CLIENT_ID, certificate_pem=cert.certificate_pem)
    with_cert = _with_m365(
        setup, tmp_path, client_secret_env=None, certificate_path=str(_pem_file(tmp_path, cert))
    )

    with_cert.mailbox().http.ensure_token()

    (token_request,) = [r for r in setup.emu.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert b"client_assertion=" in token_request.body
    assert b"client_secret" not in token_request.body


def test_a_password_protected_pfx_signs_in(
    setup: GraphSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = make_certificate()
    setup.emu.add_app(CLIENT_ID, certificate_pem=cert.certificate_pem)
    key = serialization.load_pem_private_key(cert.private_key_pem.encode(), password=None)
    pfx = pkcs12.serialize_key_and_certificates(
        b"prevent-service",
        key,  # type: ignore[arg-type]
        load_pem_x509_certificate(cert.certificate_pem.encode()),
        None,
        serialization.BestAvailableEncryption(b"pfx-pass"),
    )
    (tmp_path / "app.pfx").write_bytes(pfx)
    monkeypatch.setenv("PREVENT_TEST_PFX_PASSWORD", "pfx-pass")
    with_cert = _with_m365(
        setup,
        tmp_path,
        client_secret_env=None,
        certificate_path=str(tmp_path / "app.pfx"),
        certificate_password_env="PREVENT_TEST_PFX_PASSWORD",
    )

    with_cert.mailbox().http.ensure_token()

    assert setup.emu.count_requests("POST", TOKEN_PATH) == 1


def test_a_certificate_the_app_does_not_know_is_named(setup: GraphSetup, tmp_path: Path) -> None:
    setup.emu.add_app(CLIENT_ID, certificate_pem=make_certificate().certificate_pem)
    other = make_certificate("someone-else")
    with_cert = _with_m365(
        setup, tmp_path, client_secret_env=None, certificate_path=str(_pem_file(tmp_path, other))
    )

    with pytest.raises(PermanentError, match=r"AADSTS700027.*upload the public certificate"):
        with_cert.mailbox().http.ensure_token()


def test_a_wrong_tenant_is_named(setup: GraphSetup, tmp_path: Path) -> None:
    wrong = _with_m365(setup, tmp_path, tenant_id="99999999-0000-0000-0000-000000000009")

    with pytest.raises(PermanentError, match=r"m365\.tenant_id"):
        wrong.mailbox().http.ensure_token()


def test_an_untrusted_certificate_says_to_set_the_ca_bundle(
    setup: GraphSetup, tmp_path: Path
) -> None:
    no_ca = _with_m365(setup, tmp_path, ca_bundle=None)

    with pytest.raises(PermanentError, match=r"m365\.ca_bundle"):
        no_ca.mailbox().http.ensure_token()


def test_revoked_consent_is_a_permanent_error_after_one_renewal(setup: GraphSetup) -> None:
    box = setup.mailbox()
    box.http.ensure_token()
    setup.emu.set_permissions(CLIENT_ID, [])

    with pytest.raises(PermanentError, match="admin consent"):
        list(box.fetch_new())
    assert setup.emu.count_requests("POST", TOKEN_PATH) == 2  # the first, then one renewal


def test_graph_needs_an_m365_section() -> None:
    with pytest.raises(ConfigError, match=r"^m365: .*\[m365\]"):
        connect(None)


def test_o365_debug_logging_never_shows_the_token(
    setup: GraphSetup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    box = setup.mailbox()

    list(box.fetch_new())

    token = box.http.con.session.headers["Authorization"].split()[1]
    assert token
    assert token not in caplog.text
    assert "Client Error" not in caplog.text


@pytest.mark.parametrize(("days", "ok"), [(10, False), (200, True)])
def test_check_warns_weeks_before_the_certificate_expires(
    setup: GraphSetup, tmp_path: Path, days: int, ok: bool
) -> None:
    cert = make_certificate(days=days)
    setup.emu.add_app(CLIENT_ID, certificate_pem=cert.certificate_pem)
    with_cert = _with_m365(
        setup, tmp_path, client_secret_env=None, certificate_path=str(_pem_file(tmp_path, cert))
    )
    mailbox = with_cert.mailbox()
    [line] = [r for r in mailbox.checks() if r.name == "certificate"]
    assert line.ok is ok and f"({days - 1} days)" in line.detail
    expires = mailbox.credential_expires_at()
    assert (
        expires is not None
        and 0
        < (
            expires - load_pem_x509_certificate(cert.certificate_pem.encode()).not_valid_before_utc
        ).days
        <= days + 1
    )


def test_every_graph_backend_of_one_config_shares_one_token(
    setup: GraphSetup, tmp_path: Path
) -> None:
    setup.emu.add_site("example.sharepoint.com", "/sites/Safeguarding")
    backends = [setup.mailbox(), setup.sender(), setup.workbook(), setup.workbook()]

    for backend in backends:
        backend.http.ensure_token()

    assert setup.emu.count_requests("POST", TOKEN_PATH) == 1
    assert setup.emu.count_requests("GET", r"/openid-configuration$") == 1
    other = _with_m365(setup, tmp_path)  # another loaded config: its own sign-in
    other.mailbox().http.ensure_token()
    assert setup.emu.count_requests("POST", TOKEN_PATH) == 2


def test_a_shared_token_refused_with_401_is_renewed_for_every_backend(setup: GraphSetup) -> None:
    box, sender = setup.mailbox(), setup.sender()
    box.http.ensure_token()
    setup.emu.expire_tokens()  # Graph now refuses the token msal still thinks fresh

    assert list(box.fetch_new()) == []  # 401 → renewed once → carries on
    sender.send(message())  # the sender uses the renewed token from the shared cache

    assert setup.emu.count_requests("POST", TOKEN_PATH) == 2
